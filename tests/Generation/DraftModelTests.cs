using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;
using QwenSharp.Tests.Cli;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// Speculative decoding with a draft model gives exactly the tokens of plain decoding (greedy, sampled, batched, several
/// sequences a prompt, a conversation's turns), on the CPU and the GPU, whether its guesses are mostly taken (the same
/// model) or often not (its Q4_0 copy); and a draft with another tokenizer, or beside prompt lookup, is refused.
/// </summary>
public sealed class DraftModelTests
{
    private static readonly Lazy<string> s_q4 = new(() => GgufFixture.Write(Fixtures.DemoModel, DType.Q4_0));

    public static TheoryData<string, string, bool> Cases()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (string device in TestBackends.CpuAndGpu)
        {
            foreach (string draft in (string[])["same", "q4_0"])
            {
                if (device == TestBackends.Gpu)
                {
                    // On lavapipe a case takes half a minute: the GPU checks one draft, sampled; the CPU both drafts both ways.
                    data.Add(device, draft, false);
                    break;
                }

                data.Add(device, draft, true);
                data.Add(device, draft, false);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Tokens_AreThoseOfPlainDecoding(string device, string draft, bool greedy)
    {
        TestBackends.RequireDevice(device);
        using IBackend backend = TestBackends.Create(device);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        using Qwen2Model draftWeights = Qwen2Model.Load(draft == "same" ? Fixtures.DemoModel : s_q4.Value, backend);
        using var drafter = new DraftModel(draftWeights);
        int[][] prompts = [.. new[] { "Once upon a time", "Lily and Tom went to the park. They saw a big" }.Select(t => TestTokenizers.Stories.Encode(t))];
        var plain = new GenerationOptions
        {
            MaxNewTokens = 60,
            Sampling = greedy ? SamplingOptions.Greedy : new SamplingOptions { DoSample = true, Temperature = 0.9, TopK = 40, Seed = 7 },
            NumReturnSequences = greedy ? 1 : 2,
        };

        GenerationResult expected = Generator.Generate(model, prompts, plain);
        GenerationResult drafted = Generator.Generate(model, prompts, plain with { PromptLookup = new PromptLookup(4), DraftModel = drafter });
        Assert.Equal(expected.Sequences.Select(s => s.Ids), drafted.Sequences.Select(s => s.Ids));
        Assert.Equal(expected.Sequences.Select(s => s.StopReason), drafted.Sequences.Select(s => s.StopReason));

        // The guesses were made and checked: the same model's greedy guesses are nearly all taken.
        (int guessed, int taken) = drafted.LookupTokens;
        Assert.True(guessed > 20 && taken > 0, $"{taken} of {guessed} guesses taken");
        if (draft == "same" && greedy)
        {
            Assert.True(taken >= guessed * 0.9, $"{taken} of {guessed} of the model's own guesses taken");
        }

        // Again with the draft's cache from the first run: it keeps what still matches and reads the rest.
        GenerationResult again = Generator.Generate(model, [prompts[1]], plain with { NumReturnSequences = 1, PromptLookup = new PromptLookup(3), DraftModel = drafter });
        Assert.Equal(Generator.Generate(model, [prompts[1]], plain with { NumReturnSequences = 1 }).Sequences[0].Ids, again.Sequences[0].Ids);
    }

    [Fact]
    public async Task Engine_ChatTurnsWithADraft_AreTheTurnsWithout()
    {
        using QwenModel plain = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using QwenModel drafted = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer, new QwenModelOptions { DraftModel = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer, DType.Q8_0) });
        var options = new TextGenerationOptions { MaxNewTokens = 24, Sampling = new() { Temperature = 0.8, Seed = 3 }, IgnoreEos = true };
        var history = new List<(string Role, string Content)> { ("user", "Name three primes.") };
        for (int turn = 0; turn < 2; turn++)
        {
            string a = await Text(plain.GenerateAsync(history, options)), b = await Text(drafted.GenerateAsync(history, options));
            Assert.Equal(a, b);
            history.Add(("assistant", a));
            history.Add(("user", "And three more."));
        }

        static async Task<string> Text(IAsyncEnumerable<GenerationUpdate> updates)
        {
            var text = new System.Text.StringBuilder();
            await foreach (GenerationUpdate update in updates)
            {
                text.Append(update.Text);
            }

            return text.ToString();
        }
    }

    [Fact]
    public void DraftWithAnotherTokenizer_IsRefusedNamingTheFirstDifferentId()
    {
        var e = Assert.Throws<ArgumentException>(() => QwenModel.Load(TestTokenizers.TinyQwenWithTokenizer, new QwenModelOptions { DraftModel = Fixtures.DemoModel }));
        Assert.StartsWith($"draft model {Fixtures.DemoModel}: its tokenizer has '<unk>' at id 0 where the model's has '!'; a draft model needs the model's tokenizer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cli_DraftModel_GivesThePlainTokens_AndIsRefusedBesidePromptLookupOrBeams()
    {
        string[] generate = ["generate", "--prompt", "Once upon a time", "--max-new-tokens", "40", "--temperature", "0.8", "--seed", "5", "--json"];
        CliRunner.Result plain = CliRunner.Run(generate);
        CliRunner.Result drafted = CliRunner.Run([.. generate, "--draft-model", s_q4.Value, "--draft-tokens", "5"]);
        Assert.True(drafted.ExitCode == 0, drafted.Stderr);
        Assert.Equal(plain.Json.GetProperty("sequences")[0].GetProperty("ids").GetRawText(), drafted.Json.GetProperty("sequences")[0].GetProperty("ids").GetRawText());
        Assert.True(drafted.Json.GetProperty("lookup_drafted").GetInt32() > 0);

        CliRunner.Result both = CliRunner.Run([.. generate, "--draft-model", s_q4.Value, "--prompt-lookup", "3"]);
        Assert.Equal(2, both.ExitCode);
        Assert.Equal("qwensharp generate: error: --draft-model and --prompt-lookup are two sources of guesses; give one (--draft-tokens sets the draft's guesses a step)", both.ErrorLines.Single());
        CliRunner.Result beams = CliRunner.Run(["generate", "--prompt", "Once", "--num-beams", "2", "--draft-model", s_q4.Value]);
        Assert.Equal("qwensharp generate: error: --draft-model guesses for sampled or greedy text: not with --num-beams or pictures", beams.ErrorLines.Single());
        CliRunner.Result bench = CliRunner.Run(["bench", "--prompt-tokens", "16", "--new-tokens", "24", "--draft-model", s_q4.Value, "--json"]);
        Assert.True(bench.ExitCode == 0, bench.Stderr);
        Assert.True(bench.Json.GetProperty("lookup_drafted").GetInt32() > 0, bench.Stdout);
        Assert.Equal("qwensharp bench: error: --draft-model does not apply to --serve (bench the server with serve --draft-model)",
            CliRunner.Run(["bench", "--serve", "1", "--draft-model", s_q4.Value]).ErrorLines.Single());
        CliRunner.Result missing = CliRunner.Run(["generate", "--prompt", "Once", "--draft-model", "/no/such/draft"]);
        Assert.Equal("qwensharp generate: error: --draft-model /no/such/draft: no such folder or file", missing.ErrorLines.Single());
    }
}
