using System.Runtime.InteropServices;
using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Lora;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// LoRA adapters against llama.cpp's <c>--lora</c>: random updates of a fixture model's projections, written by this test
/// both as a PEFT folder (adapter_config.json, adapter_model.safetensors with PEFT's names and [r, in] / [out, r] shapes)
/// and as a GGUF adapter the way llama.cpp's convert_lora_to_gguf.py writes one (blk.N.attn_q.weight.lora_a, alpha in
/// adapter.lora.alpha, q and k rows permuted for a llama model). llama.cpp runs the base model's GGUF with the GGUF
/// adapter; ours must give its logits from either form, on the CPU and the GPU, prefill and decode.
/// </summary>
public sealed class LoraAdapterTests
{
    private const int Positions = 24;

    /// <summary>The demo model (llama, F32: q and k are permuted in its GGUF files) and a Qwen2 fixture (BF16, q/k/v biases).</summary>
    public static TheoryData<string> Models() => ["stories260K", "stories260K-qwen2-bf16"];

    [Theory]
    [MemberData(nameof(Models))]
    public void Adapter_LogitsEqualLlamaCppsWithTheSameAdapter(string fixture)
    {
        (string folder, Qwen2Config config) = Fixture(fixture);
        var adapter = RandomLoraAdapter.Make(config, rank: 4, alpha: 8, seed: 1, LoraTargets.All, layers: null);
        string dir = Fixtures.TempDirectory();
        string peft = adapter.WritePeft(Path.Combine(dir, "peft"));
        string ggufAdapter = adapter.WriteGguf(Path.Combine(dir, "adapter.gguf"), config);
        string gguf = BaseGguf(folder);
        int[] ids = Prompt();

        float[][] theirs = LlamaCpp.Logits(gguf, ids, [(ggufAdapter, 1f)]);
        float[][] plain = LlamaCpp.Logits(gguf, ids);
        Assert.True(LogitComparison.LargestRelativeError(plain, theirs) > 1e-2, $"the adapter moves llama.cpp's logits by only {LogitComparison.LargestRelativeError(plain, theirs):E2}");

        float[][] fromPeft = Logits(folder, "cpu", ids, (peft, 1f));
        LogitComparison.AssertClose(fromPeft, theirs, 1e-4, $"{fixture}: ours with the PEFT folder against llama.cpp");
        LogitComparison.AssertClose(Logits(gguf, "cpu", ids, (ggufAdapter, 1f)), theirs, 1e-4, $"{fixture}: ours with the GGUF adapter on the GGUF file against llama.cpp");
        LogitComparison.AssertClose(Logits(folder, "cpu", ids, (ggufAdapter, 1f)), theirs, 1e-4, $"{fixture}: ours with the GGUF adapter on the folder against llama.cpp");
        LogitComparison.AssertClose(DecodeLogits(folder, "cpu", ids, (peft, 1f)), theirs, 1e-4, $"{fixture}: ours decoding a token a step against llama.cpp");

        TestBackends.RequireGpu();
        LogitComparison.AssertClose(Logits(folder, TestBackends.Gpu, ids, (peft, 1f)), fromPeft, 1e-4, $"{fixture}: the GPU's prefill against the CPU");
        LogitComparison.AssertClose(DecodeLogits(folder, TestBackends.Gpu, ids, (peft, 1f)), fromPeft, 1e-4, $"{fixture}: the GPU's decode against the CPU");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void MergedIntoAGgufFile_LlamaCppGivesItsLogitsWithTheAdapter(string fixture)
    {
        // quantize --lora: W + scale · B · A written into the file (after which a llama model's q and k are permuted).
        (string folder, Qwen2Config config) = Fixture(fixture);
        var adapter = RandomLoraAdapter.Make(config, rank: 4, alpha: 8, seed: 9, LoraTargets.All, layers: null);
        string dir = Fixtures.TempDirectory();
        string peft = adapter.WritePeft(Path.Combine(dir, "peft"));
        int[] ids = Prompt();
        float[][] theirs = LlamaCpp.Logits(BaseGguf(folder), ids, [(adapter.WriteGguf(Path.Combine(dir, "adapter.gguf"), config), 0.5f)]);

        string merged = Path.Combine(dir, "merged.gguf");
        using (LoraAdapter loaded = LoraAdapter.Load(peft, 0.5f))
        {
            GgufExport.Write(TestTokenizers.WithTokenizer(folder, Fixtures.DemoModel), merged, QuantizationMix.Pure(DType.F32), [loaded]);
        }

        LogitComparison.AssertClose(LlamaCpp.Logits(merged, ids), theirs, 1e-4, $"{fixture}: llama.cpp on the merged file against llama.cpp applying the adapter");
    }

    [Fact]
    public void TwoAdaptersAtTheirScales_AddUpAsInLlamaCpp()
    {
        (string folder, Qwen2Config config) = Fixture("stories260K-qwen2-bf16");
        var attention = RandomLoraAdapter.Make(config, rank: 4, alpha: 16, seed: 2, [LoraTarget.Q, LoraTarget.V, LoraTarget.O], layers: [0, 2, 4]);
        var mlp = RandomLoraAdapter.Make(config, rank: 2, alpha: 1, seed: 3, [LoraTarget.Gate, LoraTarget.Down], layers: [1, 2]);
        string dir = Fixtures.TempDirectory();
        string gguf = BaseGguf(folder);
        int[] ids = Prompt();
        float[][] theirs = LlamaCpp.Logits(gguf, ids, [(attention.WriteGguf(Path.Combine(dir, "a.gguf"), config), 0.5f), (mlp.WriteGguf(Path.Combine(dir, "m.gguf"), config), 1.5f)]);

        float[][] ours = Logits(folder, "cpu", ids, (attention.WritePeft(Path.Combine(dir, "a")), 0.5f), (mlp.WritePeft(Path.Combine(dir, "m")), 1.5f));
        LogitComparison.AssertClose(ours, theirs, 1e-4, "two adapters at 0.5 and 1.5");
        float[][] one = Logits(folder, "cpu", ids, (Path.Combine(dir, "a"), 0.5f));
        Assert.True(LogitComparison.LargestRelativeError(one, theirs) > 1e-3, "the second adapter changes nothing: the comparison cannot see it");
    }

    [Fact]
    public void RankAndAlphaPatternsAndRsLora_ScaleEachModuleAsPeftDoes()
    {
        // PEFT: module m's scaling is alpha_m / r_m (alpha_m / sqrt(r_m) with use_rslora), r_m and alpha_m from the first
        // rank_pattern / alpha_pattern key matching the end of its name at a dot. llama.cpp's file has one alpha, so the
        // expected scalings are put into its B (alpha 0 there means a scale of 1).
        (string folder, Qwen2Config config) = Fixture("stories260K-qwen2-bf16");
        var adapter = RandomLoraAdapter.Make(config, rank: 4, alpha: 8, seed: 4, LoraTargets.All, layers: null,
            rankOf: (layer, target) => target == LoraTarget.V ? 2 : layer == 3 && target == LoraTarget.Down ? 6 : 4);
        string dir = Fixtures.TempDirectory();
        string peft = adapter.WritePeft(Path.Combine(dir, "peft"), extraConfig: new Dictionary<string, object>
        {
            ["use_rslora"] = true,
            ["rank_pattern"] = new Dictionary<string, int> { ["v_proj"] = 2, ["layers.3.mlp.down_proj"] = 6 },
            ["alpha_pattern"] = new Dictionary<string, double> { ["o_proj"] = 2.0, [@"model\.layers\.1\.mlp\.up_proj"] = 32.0 },
        });
        double ScaleOf(int layer, LoraTarget target, int rank)
        {
            double alpha = target == LoraTarget.O ? 2.0 : layer == 1 && target == LoraTarget.Up ? 32.0 : 8.0;
            return alpha / Math.Sqrt(rank);
        }

        string ggufAdapter = adapter.WriteGguf(Path.Combine(dir, "adapter.gguf"), config, ScaleOf);
        int[] ids = Prompt();
        float[][] theirs = LlamaCpp.Logits(BaseGguf(folder), ids, [(ggufAdapter, 1f)]);
        LogitComparison.AssertClose(Logits(folder, "cpu", ids, (peft, 1f)), theirs, 1e-4, "rank_pattern, alpha_pattern and use_rslora");
    }

    /// <summary>
    /// A server's sequences, each with its own adapter scales, in the same steps (prefill rows of three prompts, then decode
    /// rows of the three): each sequence's logits are llama.cpp's with the adapters at its scales. The second adapter is
    /// loaded at 0 (off unless a sequence turns it on), the first at 1; one sequence keeps those, one runs both at other
    /// scales, one runs neither.
    /// </summary>
    /// <summary>The CPU, the GPU, and the model split between them (the factors table on both) or between two CPU backends.</summary>
    public static TheoryData<string> Placements() => ["cpu", TestBackends.Gpu, "cpu+gpu:3", "cpu+cpu:2"];

    [SkippableTheory]
    [MemberData(nameof(Placements))]
    public void SequencesWithTheirOwnScales_InOneBatch_EachGivesLlamaCppsLogitsAtItsScales(string backendName)
    {
        TestBackends.RequireDevice(backendName);
        (string folder, Qwen2Config config) = Fixture("stories260K-qwen2-bf16");
        var attention = RandomLoraAdapter.Make(config, rank: 4, alpha: 16, seed: 11, [LoraTarget.Q, LoraTarget.V, LoraTarget.O], layers: [0, 2, 4]);
        var mlp = RandomLoraAdapter.Make(config, rank: 2, alpha: 4, seed: 12, [LoraTarget.Gate, LoraTarget.Up, LoraTarget.Down], layers: [1, 2]);
        string dir = Fixtures.TempDirectory();
        string gguf = BaseGguf(folder);
        string a = attention.WriteGguf(Path.Combine(dir, "a.gguf"), config), m = mlp.WriteGguf(Path.Combine(dir, "m.gguf"), config);
        int[] ids = Prompt();
        float[]?[] scales = [null, [0.5f, 1.5f], [0f, 0f]];
        float[][][] theirs =
        [
            LlamaCpp.Logits(gguf, ids, [(a, 1f)]),
            LlamaCpp.Logits(gguf, ids, [(a, 0.5f), (m, 1.5f)]),
            LlamaCpp.Logits(gguf, ids),
        ];
        Assert.True(LogitComparison.LargestRelativeError(theirs[0], theirs[1]) > 1e-2, "the scales change too little for the test to see");

        (IBackend backend, LayerOffload? offload) = TestBackends.CreatePlacement(backendName);
        using IBackend host = backend;
        using Qwen2Model model = Load(folder, backend, [(attention.WritePeft(Path.Combine(dir, "a")), 1f), (mlp.WritePeft(Path.Combine(dir, "m")), 0f)], offload);
        const int Prefill = 20;
        using KvCache cache = model.CreateKvCache(scales.Length, ids.Length);
        using ForwardState state = model.CreateState(scales.Length * Prefill, scales.Length * Prefill);
        var ours = scales.Select(_ => new float[ids.Length][]).ToArray();
        var batch = new TokenBatch(scales.Length * Prefill);
        for (int s = 0; s < scales.Length; s++)
        {
            for (int p = 0; p < Prefill; p++)
            {
                batch.Add(ids[p], p, s, wantLogits: true, scales[s]);
            }
        }

        model.Forward(batch, cache, state);
        for (int row = 0; row < batch.Count; row++)
        {
            ours[row / Prefill][row % Prefill] = state.LogitsOf(row).ToArray();
        }

        for (int p = Prefill; p < ids.Length; p++)
        {
            batch.Clear();
            for (int s = 0; s < scales.Length; s++)
            {
                batch.Add(ids[p], p, s, wantLogits: true, scales[s]);
            }

            model.Forward(batch, cache, state);
            for (int s = 0; s < scales.Length; s++)
            {
                ours[s][p] = state.LogitsOf(s).ToArray();
            }
        }

        for (int s = 0; s < scales.Length; s++)
        {
            LogitComparison.AssertClose(ours[s], theirs[s], 1e-4, $"{backendName}: sequence {s} at scales [{string.Join(", ", scales[s] ?? [1f, 0f])}] against llama.cpp");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.CpuAndGpuData), MemberType = typeof(TestBackends))]
    public void F16Adapter_GivesLlamaCppsLogitsWithIt(string backendName)
    {
        // convert_lora_to_gguf.py's default: A and B in f16. Ours widens them to f32 once (kept in halves they read no faster
        // on a Zen 1: bench/results/amd-epyc-zen1-2core-avx2/lora-2026-12-04.md).
        TestBackends.RequireDevice(backendName);
        (string folder, Qwen2Config config) = Fixture("stories260K-qwen2-bf16");
        var adapter = RandomLoraAdapter.Make(config, rank: 4, alpha: 8, seed: 13, LoraTargets.All, layers: null);
        string dir = Fixtures.TempDirectory();
        string halves = adapter.WriteGguf(Path.Combine(dir, "f16.gguf"), config, f16: true);
        int[] ids = Prompt();
        float[][] theirs = LlamaCpp.Logits(BaseGguf(folder), ids, [(halves, 1f)]);
        float[][] exact = LlamaCpp.Logits(BaseGguf(folder), ids, [(adapter.WriteGguf(Path.Combine(dir, "f16-values.gguf"), config, f16Values: true), 1f)]);

        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Load(folder, backend, [(halves, 1f)]);
        float[][] ours = ReferenceModelTests.AllPositionLogits(model, ids);
        // Against the same values in f32 llama.cpp's products are exact (4e-6 from ours here); its own f16 products round
        // each activation to f16 and are 2e-3 from those.
        LogitComparison.AssertClose(ours, exact, 1e-4, $"{backendName}: the f16 adapter against llama.cpp's with its values in f32");
        LogitComparison.AssertClose(ours, theirs, 5e-3, $"{backendName}: the f16 adapter against llama.cpp's");
        float[][] plain = LlamaCpp.Logits(BaseGguf(folder), ids);
        Assert.True(LogitComparison.LargestRelativeError(plain, theirs) > 1e-2, "the adapter moves llama.cpp's logits too little to be seen");
    }

    [Fact]
    public void ScaleZero_IsTheModelWithoutTheAdapter()
    {
        (string folder, Qwen2Config config) = Fixture("stories260K");
        string peft = RandomLoraAdapter.Make(config, 4, 8, 5, LoraTargets.All, null).WritePeft(Path.Combine(Fixtures.TempDirectory(), "peft"));
        int[] ids = Prompt();
        float[][] plain = Logits(folder, "cpu", ids);
        float[][] off = Logits(folder, "cpu", ids, (peft, 0f));
        for (int p = 0; p < ids.Length; p++)
        {
            Assert.Equal(plain[p], off[p]);
        }

        Assert.NotEqual(plain[^1], Logits(folder, "cpu", ids, (peft, 1f))[^1]);
    }

    [Fact]
    public void BadAdapters_AreRefusedNamingWhatIsWrong()
    {
        (string folder, Qwen2Config config) = Fixture("stories260K");
        var adapter = RandomLoraAdapter.Make(config, 4, 8, 6, [LoraTarget.Q], [0]);
        string dir = Fixtures.TempDirectory();

        string Refusal(string path)
        {
            using IBackend backend = TestBackends.Create("cpu");
            using Qwen2Model model = Qwen2Model.Load(folder, backend);
            Exception e = Record.Exception(() =>
            {
                using LoraAdapter loaded = LoraAdapter.Load(path);
                model.ApplyAdapters([loaded]);
            })!;
            Assert.True(e is InvalidDataException or NotSupportedException or FileNotFoundException or DirectoryNotFoundException, e.ToString());
            return e.Message;
        }

        Assert.Contains("use_dora", Refusal(adapter.WritePeft(Path.Combine(dir, "dora"), new Dictionary<string, object> { ["use_dora"] = true })));
        Assert.Contains("lm_head", Refusal(adapter.WritePeft(Path.Combine(dir, "modules"), new Dictionary<string, object> { ["modules_to_save"] = new[] { "lm_head" } })));

        string head = adapter.WritePeft(Path.Combine(dir, "head"));
        File.Delete(Path.Combine(head, "adapter_model.safetensors"));
        SafeTensorsWriter.Write(Path.Combine(head, "adapter_model.safetensors"),
            new SafeTensorsWriter.Entry("base_model.model.lm_head.lora_A.weight", "F32", [4, 64], new byte[4 * 64 * 4]));
        Assert.Contains("'base_model.model.lm_head.lora_A.weight' adapts the output head", Refusal(head));

        string half = adapter.WritePeft(Path.Combine(dir, "half"));
        File.Delete(Path.Combine(half, "adapter_model.safetensors"));
        SafeTensorsWriter.Write(Path.Combine(half, "adapter_model.safetensors"),
            new SafeTensorsWriter.Entry("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", [4, 64], new byte[4 * 64 * 4]));
        Assert.Contains("model.layers.0.self_attn.q_proj has a lora_A but no lora_B", Refusal(half));

        // An adapter made for another shape of model: the Qwen2 fixture with 32-wide layers.
        Qwen2Config other = Qwen2Config.Load(Fixtures.File("tiny-qwen2", Qwen2Config.FileName));
        string foreign = RandomLoraAdapter.Make(other, 4, 8, 7, [LoraTarget.K], [1]).WritePeft(Path.Combine(dir, "foreign"));
        Assert.Contains("model.layers.1.self_attn.k_proj's A is [4, 32]", Refusal(foreign));

        Assert.Contains("not 'adapter'", Refusal(GgufFixture.Write(folder)));
        Assert.Contains("is for qwen2 models; this model is llama",
            Refusal(RandomLoraAdapter.Make(config, 4, 8, 8, [LoraTarget.V], [0]).WriteGguf(Path.Combine(dir, "qwen2.gguf"), config, architecture: "qwen2")));
        Assert.Contains("not found", Refusal(Path.Combine(dir, "nowhere")));
    }

    /// <summary>
    /// The model as GGUF in F32 (the same numbers as BF16 weights: llama.cpp would round the activations to BF16 for BF16
    /// weights, ours keeps them in f32), with the demo's tokenizer where the folder has none (llama.cpp needs a vocabulary).
    /// </summary>
    /// <summary>A fixture model's folder and its config.</summary>
    private static (string Folder, Qwen2Config Config) Fixture(string name)
    {
        string folder = Fixtures.ModelDirectory(name);
        return (folder, Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName)));
    }

    private static string BaseGguf(string folder) => GgufFixture.Write(TestTokenizers.WithTokenizer(folder, Fixtures.DemoModel), DType.F32);

    private static int[] Prompt()
    {
        int[] story = TestTokenizers.Stories.Encode("Once upon a time, there was a little girl named Lily. She loved to play outside.");
        return [.. Enumerable.Range(0, Positions).Select(i => story[i % story.Length])];
    }

    private static float[][] Logits(string model, string backendName, int[] ids, params (string Path, float Scale)[] adapters)
    {
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model loaded = Load(model, backend, adapters);
        return ReferenceModelTests.AllPositionLogits(loaded, ids);
    }

    /// <summary>The logits of each position, read a token a step (the decode kernels, not prefill's).</summary>
    private static float[][] DecodeLogits(string model, string backendName, int[] ids, params (string Path, float Scale)[] adapters)
    {
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model loaded = Load(model, backend, adapters);
        return ReferenceModelTests.OneTokenPerStepLogits(loaded, ids);
    }

    private static Qwen2Model Load(string model, IBackend backend, (string Path, float Scale)[] adapters, LayerOffload? offload = null)
    {
        Qwen2Model loaded = Qwen2Model.Load(model, backend, offload: offload);
        var files = adapters.Select(a => LoraAdapter.Load(a.Path, a.Scale)).ToList();
        try
        {
            loaded.ApplyAdapters(files);
        }
        finally
        {
            files.ForEach(f => f.Dispose());
        }

        return loaded;
    }
}
