using System.Text.Json;
using QwenSharp.Tests.Support;
using QwenSharp.Tests.Text;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Fill in the middle (Qwen2.5-Coder's FIM tokens, which Qwen2.5's vocabulary holds): the prompt's ids as llama-server
/// writes them, built here from Hugging Face tokenizers' ids of each piece and tokenizer.json's ids of the FIM tokens;
/// llama-server's <c>/infill</c> (as llama.vim calls it) and OpenAI's <c>suffix</c> answering from those ids; its code
/// completion stops (<c>n_indent</c>, <c>t_max_predict_ms</c>) and <c>response_fields</c>.
/// </summary>
public sealed class InfillTests : IAsyncLifetime
{
    private const string Prefix = "def add(a, b):\n    ";
    private const string Suffix = "\n\nprint(add(1, 2))\n";

    private TestServer _server = null!;

    // A context past llama-server's batch of 2048, so that the files before the gap are kept (as llama-server keeps them).
    public async Task InitializeAsync() => _server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { Context = 4096 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [SkippableFact]
    public void InfillIdsAreTheFimTokensAroundHuggingFacesIdsOfEachPiece()
    {
        HuggingFaceEqualityTests.RequireHuggingFaceRuntime();
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json")));
        int Special(string content) => json.RootElement.GetProperty("added_tokens").EnumerateArray().First(t => t.GetProperty("content").GetString() == content).GetProperty("id").GetInt32();
        int[] Text(string text) => [.. reference.Encode(text).Select(id => (int)id)];

        int[] fileLevel = _server.Model.EncodeInfill(Prefix, Suffix);
        int[] repositoryLevel = _server.Model.EncodeInfill(Prefix, Suffix, "return", [new InfillFile("util.py", "X = 1\n")]);

        Assert.Equal([Special("<|fim_prefix|>"), .. Text(Prefix), Special("<|fim_suffix|>"), .. Text(Suffix), Special("<|fim_middle|>")], fileLevel);
        Assert.Equal(
            [
                Special("<|repo_name|>"), .. Text("myproject\n"), Special("<|file_sep|>"), .. Text("util.py\n"), .. Text("X = 1\n"), Special("<|file_sep|>"), .. Text("filename\n"),
                Special("<|fim_prefix|>"), .. Text(Prefix), .. Text("return"), Special("<|fim_suffix|>"), .. Text(Suffix), Special("<|fim_middle|>"),
            ],
            repositoryLevel);
    }

    [Fact]
    public async Task InfillAndOpenAisSuffixAnswerFromTheFimPrompt()
    {
        int[] repository = _server.Model.EncodeInfill(Prefix, Suffix, "", []);
        int[] file = _server.Model.EncodeInfill(Prefix, Suffix);
        JsonElement expected = await _server.PostOkAsync("/completion", $"{{\"prompt\": {JsonSerializer.Serialize(repository)}, \"n_predict\": 8, \"temperature\": 0}}");
        JsonElement expectedFile = await _server.PostOkAsync("/completion", $"{{\"prompt\": {JsonSerializer.Serialize(file)}, \"n_predict\": 8, \"temperature\": 0}}");

        JsonElement infill = await _server.PostOkAsync("/infill",
            $"{{\"input_prefix\": {JsonSerializer.Serialize(Prefix)}, \"input_suffix\": {JsonSerializer.Serialize(Suffix)}, \"input_extra\": [], \"n_predict\": 8, "
            + "\"temperature\": 0, \"samplers\": [\"top_k\", \"top_p\", \"infill\"], \"cache_prompt\": true, \"t_max_prompt_ms\": 500, \"id_slot\": 0}");
        JsonElement openAi = await _server.PostOkAsync("/v1/completions",
            $"{{\"prompt\": {JsonSerializer.Serialize(Prefix)}, \"suffix\": {JsonSerializer.Serialize(Suffix)}, \"max_tokens\": 8, \"temperature\": 0}}");

        Assert.Equal(repository.Length, infill.GetProperty("tokens_evaluated").GetInt32());
        Assert.Equal(expected.GetProperty("content").GetString(), infill.GetProperty("content").GetString());
        Assert.Equal(expectedFile.GetProperty("content").GetString(), openAi.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    /// <summary>
    /// The infill sampler where the request names it and draws (its choices are checked against llama.cpp's in
    /// InfillFilterTests): tiny-qwen2's random weights spread the next token thinly, no text token reaches the sampler's
    /// 20%, so it ends the answer at once, as llama.cpp's does; without it the same request answers its 8 tokens.
    /// </summary>
    [Fact]
    public async Task TheInfillSampler_RunsWhereTheSamplersNameIt()
    {
        string request = $"{{\"input_prefix\": {JsonSerializer.Serialize(Prefix)}, \"input_suffix\": {JsonSerializer.Serialize(Suffix)}, \"n_predict\": 8, "
            + "\"temperature\": 0.8, \"seed\": 5, \"top_k\": 40, \"samplers\": [\"top_k\", \"top_p\"";

        JsonElement infill = await _server.PostOkAsync("/infill", request + ", \"infill\"]}");
        JsonElement plain = await _server.PostOkAsync("/infill", request + "]}");

        Assert.Equal(0, infill.GetProperty("tokens_predicted").GetInt32());
        Assert.Equal("eos", infill.GetProperty("stop_type").GetString());
        Assert.Equal(8, plain.GetProperty("tokens_predicted").GetInt32());
    }

    [Fact]
    public async Task ALineIndentedLessThanNIndentEndsTheAnswerBeforeIt()
    {
        // The grammar makes the answer "a\n  b\nc"; its third line starts at column 0, less than 1.
        const string Grammar = "root ::= \\\"a\\\\n  b\\\\nc\\\"";
        JsonElement whole = await _server.PostOkAsync("/infill", $"{{\"input_prefix\": \"x\", \"n_predict\": 16, \"temperature\": 0, \"grammar\": \"{Grammar}\"}}");
        JsonElement cut = await _server.PostOkAsync("/infill", $"{{\"input_prefix\": \"x\", \"n_predict\": 16, \"temperature\": 0, \"grammar\": \"{Grammar}\", \"n_indent\": 1}}");

        Assert.Equal("a\n  b\nc", whole.GetProperty("content").GetString());
        Assert.Equal("eos", whole.GetProperty("stop_type").GetString());
        Assert.Equal("a\n  b\n", cut.GetProperty("content").GetString());
        Assert.Equal("limit", cut.GetProperty("stop_type").GetString());
    }

    [Fact]
    public void PastTheTimeLimitTheAnswerEndsAtANewline()
    {
        var text = new StopStrings(TestTokenizers.Qwen, [], 1, new CodeCompletionStops(0, TimeSpan.Zero));
        int[] tokens = [.. TestTokenizers.Qwen.Encode("ab"), .. TestTokenizers.Qwen.Encode("\n"), .. TestTokenizers.Qwen.Encode("cd")];
        List<int> ids = [];
        bool[] stops = [.. tokens.Select(id => { ids.Add(id); return text.ShouldStop(0, ids); })];

        // Every token from the newline on says stop; the text ends with the newline.
        Assert.Equal(TestTokenizers.Qwen.Encode("ab").Length, Array.IndexOf(stops, true));
        Assert.Equal("ab\n", text.FinalText(0));
    }

    [Fact]
    public async Task ResponseFieldsGiveTheFieldsListedByPathAndNothingAsksForNothing()
    {
        JsonElement result = await _server.PostOkAsync("/infill",
            "{\"input_prefix\": \"x\", \"n_predict\": 0, \"response_fields\": [\"content\", \"timings/prompt_n\", \"generation_settings/n_predict\", \"stop_type\", \"no/such\"]}");

        Assert.Equal(["content", "timings/prompt_n", "generation_settings/n_predict", "stop_type"], result.EnumerateObject().Select(p => p.Name));
        Assert.Equal("", result.GetProperty("content").GetString());
        Assert.Equal(0, result.GetProperty("generation_settings/n_predict").GetInt32());
        Assert.Equal(_server.Model.EncodeInfill("x", "", "", []).Length, result.GetProperty("timings/prompt_n").GetInt32());
    }

    [Theory]
    [InlineData("/infill", "\"input_prefix\": \"x\", \"samplers\": [\"magic\"]", "samplers", "sampler names")]
    [InlineData("/infill", "\"input_prefix\": \"x\", \"input_extra\": [{\"text\": 5}]", "input_extra[0].text", "must be a string")]
    [InlineData("/infill", "\"input_prefix\": \"x\", \"input_extra\": [{\"path\": \"a\"}]", "input_extra[0].path", "unknown field")]
    [InlineData("/v1/completions", "\"prompt\": [1, 2], \"suffix\": \"x\"", "suffix", "one text prompt")]
    public async Task BadInfillFieldsAreRefusedByName(string path, string fields, string param, string message) =>
        await _server.AssertRefusedAsync(path, $"{{{fields}}}", param, message);

    [Fact]
    public async Task AModelWithoutFimTokensSaysSo()
    {
        await using TestServer demo = await TestServer.StartAsync(Fixtures.DemoModel, null);

        await demo.AssertRefusedAsync("/infill", "{\"input_prefix\": \"x\"}", "input_prefix", "no fill-in-the-middle tokens");
        await demo.AssertRefusedAsync("/v1/completions", "{\"prompt\": \"x\", \"suffix\": \"y\"}", "suffix", "no fill-in-the-middle tokens");
    }
}
