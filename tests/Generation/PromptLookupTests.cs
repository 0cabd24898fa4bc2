using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// Prompt lookup: the guesses (hand-worked texts), and generation with them giving the tokens, log-probs and stops of
/// generation without them, on every CPU kernel path and the GPU, for stored and block-quantized weights (on a batch-invariant
/// CPU backend; the default one, whose repacked panels change the last bits, up to near-ties).
/// </summary>
public sealed class PromptLookupTests
{
    // Token names for the hand-worked texts.
    private const int A = 10, B = 11, C = 12, X = 20, Y = 21;

    [Fact]
    public void Pace_GrowsOnTakenGuessesAndWaitsLongerAfterEachMiss()
    {
        var pace = new LookupPace(new PromptLookup(6));
        Assert.Equal(6, pace.Next());
        pace.Taken(6, 6);
        Assert.Equal(6, pace.Next());                   // all taken: two more, at most 6
        pace.Taken(4, 2);
        Assert.Equal(3, pace.Next());                   // some taken: one more than were
        pace.Taken(3, 3);
        Assert.Equal(5, pace.Next());
        pace.Taken(0, 0);                               // no match: nothing learned
        Assert.Equal(5, pace.Next());
        foreach (int wait in (int[])[1, 2, 4, 4])
        {
            pace.Taken(pace.Next() > 1 ? 5 : 1, 0);     // none taken: wait, then one guess
            for (int i = 0; i < wait; i++)
            {
                Assert.Equal(0, pace.Next());
            }

            Assert.Equal(1, pace.Next());
        }

        pace.Taken(1, 1);
        Assert.Equal(3, pace.Next());                   // a taken guess ends the waits
        pace.Taken(3, 0);
        Assert.Equal(0, pace.Next());
        Assert.Equal(1, pace.Next());
    }

    [Fact]
    public void Draft_PrefersTheLongestRunOverALaterShorterOne()
    {
        // a b c X | b c Y | a b c: the three last tokens stood at the start (then X); "b c" alone stood later (then Y).
        int[] draft = new int[4];
        int count = new PromptLookup(4).Draft([A, B, C, X, B, C, Y], [A, B, C], draft);

        Assert.Equal(4, count);
        Assert.Equal([X, B, C, Y], draft);
    }

    [Fact]
    public void Draft_TakesTheLatestPlaceAndRepeatsPastTheTextsEnd()
    {
        // a b X a b Y a b: "a b" stood twice before; the later one (then Y a b) wins, and the guess goes on repeating.
        int[] draft = new int[5];
        int count = new PromptLookup(5).Draft([A, B, X, A, B], [Y, A, B], draft);

        Assert.Equal(5, count);
        Assert.Equal([Y, A, B, Y, A], draft);
    }

    [Fact]
    public void Draft_RunShorterThanTheLeastGuessesNothing()
    {
        int[] draft = new int[3];

        Assert.Equal(0, new PromptLookup(3).Draft([A, X], [A], draft));
        Assert.Equal(0, new PromptLookup(3).Draft([A, B, C], [X], draft));
        Assert.Equal(3, new PromptLookup(3, MaxNgram: 3, MinNgram: 1).Draft([A, X], [A], draft));
        Assert.Equal([X, A, X], draft);
    }

    [Theory]
    [InlineData(0, 3, 2, "DraftTokens")]
    [InlineData(7, 3, 2, "DraftTokens")]
    [InlineData(4, 1, 2, "MinNgram")]
    [InlineData(4, 3, 0, "MinNgram")]
    public void Validate_OutOfRange_NamesTheField(int draftTokens, int maxNgram, int minNgram, string field)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new PromptLookup(draftTokens, maxNgram, minNgram).Validate());
        Assert.Equal(field, e.ParamName);
    }

    public static TheoryData<string, string, string> Models()
    {
        var data = new TheoryData<string, string, string>();
        foreach (string backend in TestBackends.All)
        {
            // As stored (f32; tiny-qwen2's bf16 on the CPU, whose 151936-row vocabulary takes lavapipe a minute), and
            // block-quantized at load: Q8_0, Q4_0 and Q4_K (repacked into panels) and Q6_K, on a model whose rows are
            // whole k-quant super-blocks.
            data.Add("stories260K", "stored", backend);
            if (backend != TestBackends.Gpu)
            {
                data.Add("tiny-qwen2", "stored", backend);
            }

            // Every block type on the CPU paths; one of each family on the GPU (lavapipe takes half a minute a type), whose
            // quantized kernels other GPU tests check type by type.
            foreach (string type in backend == TestBackends.Gpu ? ["Q4_0", "Q6_K"] : new[] { "Q8_0", "Q4_0", "Q4_K", "Q6_K" })
            {
                data.Add("random-256", type, backend);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Greedy_WithLookup_GivesTheTokensWithout(string fixture, string weights, string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName, batchInvariant: true);
        using Qwen2Model model = Qwen2Model.Load(fixture == "random-256" ? RandomKQuantModel.Folder.Value : Fixtures.ModelDirectory(fixture), backend,
            weights == "stored" ? null : Enum.Parse<DType>(weights));
        // Prompts that repeat themselves, so that guesses are made, and some are taken and some are not.
        int[][] prompts = fixture == "random-256"
            ? [[1, 17, 300, 42, 7, 17, 300, 42, 7, 17, 300], [1, 5, 6, 5, 6, 5], [1, 100, 200, 100, 200]]
            : [[1, 403, 407, 261, 378, 403, 407, 261, 378, 403, 407], [1, 300, 22, 401, 300, 22], [1, 5, 6, 5, 6, 5]];
        var options = new GenerationOptions { MaxNewTokens = 48, IgnoreEos = true };
        int drafted = 0, accepted = 0;
        foreach (int[] prompt in prompts)
        {
            GenerationResult plain = Generator.Greedy(model, [prompt], options);
            foreach (int draftTokens in new[] { 1, 3, PromptLookup.MaxDraftTokens })
            {
                GenerationResult looked = Generator.Greedy(model, [prompt], options with { PromptLookup = new PromptLookup(draftTokens, MinNgram: 1) });

                Assert.Equal(plain.Sequences[0].Ids, looked.Sequences[0].Ids);
                Assert.Equal(plain.Sequences[0].Ids.Count - 1, looked.DecodeTokens);
                drafted += looked.LookupTokens.Drafted;
                accepted += looked.LookupTokens.Accepted;
            }
        }

        // Steps that took guesses and steps that dropped some, or the test checked less than it says.
        Assert.True(accepted > 0, $"none of {drafted} guesses taken");
        Assert.True(accepted < drafted, $"all {drafted} guesses taken");
    }

    /// <summary>
    /// On the default CPU backend, where a step of 2 or more rows multiplies the repacked Q8_0, Q4_0 and Q4_K matrices
    /// through their panels: the tokens are those without lookup up to the first near-tie, where the two best log-probs
    /// without lookup were less than 0.01 apart. A last bit that differs can move an activation across a rounding edge of its
    /// 8-bit code in the next layer, so a near-tie is wider than the last bits: a Q8_0 sequence here parted where its best two
    /// were 0.0066 apart (its median gap 0.18, a tenth of its gaps under 0.015).
    /// </summary>
    [Theory]
    [InlineData("Q8_0")]
    [InlineData("Q4_0")]
    [InlineData("Q4_K")]
    public void Greedy_WithLookupOnRepackedPanels_GivesTheTokensWithoutUpToNearTies(string weights)
    {
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(RandomKQuantModel.Folder.Value, backend, Enum.Parse<DType>(weights));
        int[][] prompts = [[1, 17, 300, 42, 7, 17, 300, 42, 7, 17, 300], [1, 5, 6, 5, 6, 5], [1, 100, 200, 100, 200]];
        var options = new GenerationOptions { MaxNewTokens = 48, IgnoreEos = true, Logprobs = 2 };
        int accepted = 0, same = 0;
        foreach (int[] prompt in prompts)
        {
            GeneratedSequence plain = Generator.Greedy(model, [prompt], options).Sequences[0];
            GenerationResult looked = Generator.Greedy(model, [prompt], options with { PromptLookup = new PromptLookup(PromptLookup.MaxDraftTokens, MinNgram: 1) });
            accepted += looked.LookupTokens.Accepted;
            IReadOnlyList<int> ids = looked.Sequences[0].Ids;
            int i = 0;
            while (i < ids.Count && ids[i] == plain.Ids[i])
            {
                i++;
            }

            same += i;
            if (i < ids.Count)
            {
                var top = plain.Logprobs![i].Top;
                double gap = top[0].Logprob - top[1].Logprob;
                Assert.True(gap < 0.01, $"{weights}: token {i} of [{string.Join(", ", prompt)}] differs with lookup ({ids[i]} against {plain.Ids[i]}) where the best two log-probs were {gap} apart");
            }
        }

        Assert.True(accepted > 0, "no guess taken");
        Assert.True(same > 48, $"only {same} of {3 * 48} tokens alike before a near-tie");
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.CpuAndGpuData), MemberType = typeof(TestBackends))]
    public void Sampled_WithLogprobsStopsAndSeveralPrompts_GivesWhatItGivesWithout(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        int[][] prompts = [[1, 403, 407, 261, 378, 403, 407], [1, 300, 22, 401, 300, 22]];
        var options = new GenerationOptions
        {
            MaxNewTokens = 40,
            NumReturnSequences = 2,
            Logprobs = 3,
            Sampling = new SamplingOptions { DoSample = true, Temperature = 0.7, TopK = 20, TopP = 0.95, RepetitionPenalty = 1.1, Seed = 11 },
            StopCondition = new StopAfter(260),
        };

        GenerationResult plain = Generator.Generate(model, prompts, options);
        GenerationResult looked = Generator.Generate(model, prompts, options with { PromptLookup = new PromptLookup(4, MinNgram: 1) });

        Assert.True(looked.LookupTokens.Accepted > 0, $"none of {looked.LookupTokens.Drafted} guesses taken");
        for (int s = 0; s < plain.Sequences.Count; s++)
        {
            GeneratedSequence expected = plain.Sequences[s], actual = looked.Sequences[s];
            Assert.Equal(expected.Ids, actual.Ids);
            Assert.Equal(expected.StopReason, actual.StopReason);
            Assert.Equal(expected.Logprobs!.Select(l => (l.Id, l.Logprob)), actual.Logprobs!.Select(l => (l.Id, l.Logprob)));
            Assert.Equal(expected.Logprobs!.SelectMany(l => l.Top), actual.Logprobs!.SelectMany(l => l.Top));
        }

        Assert.Contains(plain.Sequences, s => s.StopReason == StopReason.Stop);
    }

    [Fact]
    public void Conversation_WithLookup_SecondTurnGivesTheTokensWithout()
    {
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        var options = new GenerationOptions { MaxNewTokens = 30, IgnoreEos = true };
        int[] first = [1, 403, 407, 261, 378, 403, 407];

        List<int> Turns(GenerationOptions o)
        {
            using var conversation = new ConversationCache();
            GenerationResult one = Generator.Generate(model, [first], o, conversation: conversation);
            int[] second = [.. first, .. one.Sequences[0].Ids, 300, 22];
            return [.. Generator.Generate(model, [second], o, conversation: conversation).Sequences[0].Ids];
        }

        Assert.Equal(Turns(options), Turns(options with { PromptLookup = new PromptLookup(PromptLookup.MaxDraftTokens) }));
    }

    /// <summary>Stops a sequence once it has produced <paramref name="token"/>.</summary>
    private sealed class StopAfter(int token) : IStopCondition
    {
        public bool ShouldStop(int sequence, IReadOnlyList<int> generated) => generated[^1] == token;
    }
}
