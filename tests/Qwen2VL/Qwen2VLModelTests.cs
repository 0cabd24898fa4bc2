using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Qwen2VL;

/// <summary>The whole Qwen2-VL model against the float64 reference, from the reference's pixel_values and prompt ids.</summary>
public sealed class Qwen2VLModelTests
{
    public static TheoryData<string, string> CasesOnBackends()
    {
        var data = new TheoryData<string, string>();
        foreach (string name in VisionFixture.Cases)
        {
            data.Add(name, "cpu");

            // A case takes lavapipe 20 s: the GPU runs one picture and several; the text-only case is the text model's path.
            if (name is "1_image_a" or "3_images_c_d")
            {
                data.Add(name, TestBackends.Gpu);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Position_ids_and_rope_deltas_equal_get_rope_index(string name)
    {
        Qwen2Config config = Qwen2Config.Load(Path.Combine(VisionFixture.ModelDirectory, "config.json"));
        using JsonDocument json = VisionFixture.Case(name);
        JsonElement root = json.RootElement;
        int[] ids = VisionFixture.Ints(root.GetProperty("prompt_ids"));
        var grids = root.GetProperty("image_grid_thw").EnumerateArray().Select(g => VisionFixture.Ints(g)).Select(g => (g[0], g[1], g[2])).ToList();
        MRopePositions positions = MRopePositions.For(ids, grids, config.ImageTokenId!.Value, config.VisionStartTokenId!.Value, config.Vision!.SpatialMergeSize);
        int[][] expected = [.. root.GetProperty("position_ids_3d").EnumerateArray().Select(VisionFixture.Ints)];
        Assert.Equal(expected[0], positions.T);
        Assert.Equal(expected[1], positions.H);
        Assert.Equal(expected[2], positions.W);
        Assert.Equal(root.GetProperty("rope_deltas").GetInt32(), positions.RopeDelta);
    }

    public static TheoryData<string> AllCases() => [.. VisionFixture.Cases];

    [SkippableTheory]
    [MemberData(nameof(CasesOnBackends))]
    public void Log_probs_nll_and_greedy_ids_match_the_reference(string name, string device)
    {
        using IBackend backend = TestBackends.Create(device);
        using Qwen2Model model = Load(backend);
        using JsonDocument json = VisionFixture.Case(name);
        JsonElement root = json.RootElement;
        int[] ids = VisionFixture.Ints(root.GetProperty("prompt_ids"));
        VisionPrompt? vision = Prompt(model, root, ids);

        // Every position's log-probs; the last against all 151936 of the reference, the mean NLL over text targets.
        ScoreResult score = Scorer.Score(model, ids, top: 10, vision: vision);
        float[] last = VisionFixture.Floats(Path.Combine("ref", root.GetProperty("last_logprobs_file").GetString()!));
        PositionScore final = score.Positions[^1];
        using (Qwen2Model again = Load(backend))
        {
            // The full last row comes from a one-row forward pass (the scorer keeps only the top entries).
            float[] logprobs = LastLogprobs(again, ids, vision is null ? null : Prompt(again, root, ids));
            VisionTowerTests.AssertClose(last, logprobs, 1e-3, "last-position log-probs");
        }

        Assert.Equal(root.GetProperty("top10_last")[0][0].GetInt32(), final.Top[0].Id);
        Assert.Equal(root.GetProperty("prompt_mean_nll").GetDouble(), score.MeanNll!.Value, 1e-3);

        // Greedy ids, compared up to the first step whose top-2 margin is a near-tie.
        int[] expected = VisionFixture.Ints(root.GetProperty("greedy_new_ids"));
        double[] margins = [.. root.GetProperty("greedy_top2_margins").EnumerateArray().Select(e => e.GetDouble())];
        GenerationResult result = Generator.Generate(model, [ids], new GenerationOptions { MaxNewTokens = expected.Length, IgnoreEos = true },
            vision: [vision]);
        int exact = Array.FindIndex(margins, m => m < 1e-3);
        int compare = exact < 0 ? expected.Length : exact + 1;
        Assert.Equal(expected[..compare], result.Sequences[0].Ids.Take(compare));
    }

    [Fact]
    public void A_batch_of_picture_and_text_prompts_equals_each_run_alone()
    {
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Load(backend);
        var prompts = new List<IReadOnlyList<int>>();
        var vision = new List<VisionPrompt?>();
        foreach (string name in new[] { "3_images_c_d", "4_text_only", "1_image_a", "2_image_b" })
        {
            using JsonDocument json = VisionFixture.Case(name);
            int[] ids = VisionFixture.Ints(json.RootElement.GetProperty("prompt_ids"));
            prompts.Add(ids);
            vision.Add(Prompt(model, json.RootElement, ids));
        }

        var options = new GenerationOptions { MaxNewTokens = 8, IgnoreEos = true, PrefillChunk = 16 };
        GenerationResult together = Generator.Generate(model, prompts, options, vision: vision);
        for (int i = 0; i < prompts.Count; i++)
        {
            GenerationResult alone = Generator.Generate(model, [prompts[i]], options with { PrefillChunk = 512 }, vision: [vision[i]]);
            Assert.Equal(alone.Sequences[0].Ids, together.Sequences[i].Ids);
        }
    }

    [Fact]
    public void M_rope_with_three_equal_rows_is_plain_rope()
    {
        double[] inverse = RopeAngles.InverseFrequencies(16, 100.0);
        int[] positions = [0, 1, 7, 300, 32767];
        var cos = new float[positions.Length * 8];
        var sin = new float[positions.Length * 8];
        MRopePositions.Angles(positions, positions, positions, [2, 3, 3], inverse, cos, sin);
        for (int r = 0; r < positions.Length; r++)
        {
            var c = new float[8];
            var s = new float[8];
            RopeAngles.Compute(positions[r], inverse, c, s);
            Assert.Equal(c, cos[(r * 8)..((r + 1) * 8)]);
            Assert.Equal(s, sin[(r * 8)..((r + 1) * 8)]);
        }
    }

    /// <summary>The fixture model on <paramref name="backend"/>, vision tower included.</summary>
    internal static Qwen2Model Load(IBackend backend) => Qwen2Model.Load(VisionFixture.ModelDirectory, backend);

    /// <summary>The vision prompt of a reference case, from its pixel_values; null for the text-only case.</summary>
    internal static VisionPrompt? Prompt(Qwen2Model model, JsonElement root, int[] ids) =>
        root.GetProperty("image_grid_thw").GetArrayLength() == 0
            ? null
            : VisionPrompt.Create(model, ids, VisionTowerTests.ReferencePatches(root, model.Config.Vision!));

    private static float[] LastLogprobs(Qwen2Model model, int[] ids, VisionPrompt? vision)
    {
        using KvCache cache = model.CreateKvCache(1, ids.Length);
        using ForwardState state = model.CreateState(ids.Length, 1);
        var batch = new TokenBatch(ids.Length);
        for (int i = 0; i < ids.Length; i++)
        {
            if (vision is null)
            {
                batch.Add(ids[i], i, 0, i == ids.Length - 1);
            }
            else
            {
                vision.AddToBatch(batch, i, 0, i == ids.Length - 1);
            }
        }

        model.Forward(batch, cache, state);
        float[] logits = state.LogitsOf(0).ToArray();
        double lse = LogProbs.LogSumExp(logits);
        return [.. logits.Select(l => (float)(l - lse))];
    }
}
