using System.Text.Json.Nodes;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;

namespace QwenSharp.Tests.Text;

/// <summary>
/// A pair of texts (a cross-encoder's query and document) encoded as transformers' <c>tokenizer(a, text_pair=b)</c>:
/// each text's ids from Hugging Face tokenizers itself, with the special tokens the tokenizer's pair template puts
/// before, between and after them (none for Qwen2's ByteLevel post-processor); a TemplateProcessing without a pair
/// template reads each text through the single one, as Hugging Face's does; a pair template out of order is refused.
/// </summary>
public sealed class PairEncodingTests
{
    private const string Query = "What is a panda?";
    private const string Document = "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China. 大熊猫";

    [SkippableFact]
    public void QwensTokenizer_PutsNothingBetweenTheTexts()
    {
        HuggingFaceEqualityTests.RequireHuggingFaceRuntime();
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));

        Assert.Equal([.. reference.Encode(Query).Select(id => (int)id), .. reference.Encode(Document).Select(id => (int)id)],
            TestTokenizers.Qwen.EncodePair(Query, Document));
    }

    [SkippableFact]
    public void TheDemoTokenizer_PutsItsBosBeforeEachText_AsItsPairTemplateSays()
    {
        HuggingFaceEqualityTests.RequireHuggingFaceRuntime();
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(Fixtures.DemoModel, "tokenizer.json"));
        Tokenizer ours = Tokenizer.FromDirectory(Fixtures.DemoModel);

        // tokenizer.json: single "<s> $A", pair "<s> $A <s> $B" (and tokenizer_config.json's add_bos_token says the same).
        uint[] query = reference.Encode(Query), document = reference.Encode(Document);
        Assert.Equal(1u, query[0]);
        Assert.Equal(1u, document[0]);
        Assert.Equal([.. query.Select(id => (int)id), .. document.Select(id => (int)id)], ours.EncodePair(Query, Document));
        Assert.Equal([.. query.Skip(1).Select(id => (int)id), .. document.Skip(1).Select(id => (int)id)], ours.EncodePair(Query, Document, addSpecialTokens: false));
    }

    [SkippableFact]
    public void ATemplateProcessingPair_PutsItsSpecialTokensBeforeBetweenAndAfter_AndWithoutOne_EachTextGoesThroughTheSingle()
    {
        HuggingFaceEqualityTests.RequireHuggingFaceRuntime();
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));
        int[] query = [.. reference.Encode(Query).Select(id => (int)id)], document = [.. reference.Encode(Document).Select(id => (int)id)];
        const int Start = 151644, End = 151645, Text = 151643; // <|im_start|>, <|im_end|>, <|endoftext|>
        const string Specials = """
            "special_tokens": {"S": {"id": "S", "ids": [151644], "tokens": ["<|im_start|>"]},
                               "E": {"id": "E", "ids": [151645], "tokens": ["<|im_end|>"]},
                               "T": {"id": "T", "ids": [151643, 151645], "tokens": ["<|endoftext|>", "<|im_end|>"]}}
            """;

        Tokenizer paired = QwenWith($$$"""
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "S", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "E", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "S", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "T", "type_id": 0}},
                      {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "E", "type_id": 1}}],
             {{{Specials}}}}
            """);
        Assert.Equal([Start, .. query, Text, End, .. document, End], paired.EncodePair(Query, Document));
        Assert.Equal([Start, .. query, End], paired.Encode(Query, addSpecialTokens: true));

        Tokenizer single = QwenWith($$$"""
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "S", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "E", "type_id": 0}}],
             {{{Specials}}}}
            """);
        Assert.Equal([Start, .. query, End, Start, .. document, End], single.EncodePair(Query, Document));
    }

    [Theory]
    [InlineData("""[{"Sequence": {"id": "B", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 1}}]""", "post_processor.pair: sequence $B where $A was expected")]
    [InlineData("""[{"Sequence": {"id": "A", "type_id": 0}}]""", "post_processor.pair: has 1 of its 2 sequence(s)")]
    [InlineData("""[{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}]""", "post_processor.pair: sequence $B where no more sequences was expected")]
    [InlineData("""[{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "X", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]""", "post_processor.pair: special token 'X' is used but not defined")]
    public void APairTemplateThatDoesNotReadAThenB_IsALoadErrorNamingIt(string pair, string expected)
    {
        Exception error = Record.Exception(() => QwenWith($$$"""
            {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}], "pair": {{{pair}}}, "special_tokens": {}}
            """))!;
        Assert.True(error is InvalidDataException or NotSupportedException, error.ToString());
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Contains("tokenizer.json", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Qwen2.5's tokenizer.json with another post-processor (no tokenizer_config.json, so nothing rebuilds it).</summary>
    private static Tokenizer QwenWith(string postProcessor)
    {
        JsonNode json = JsonNode.Parse(File.ReadAllText(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json")))!;
        json["post_processor"] = JsonNode.Parse(postProcessor);
        string directory = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), json.ToJsonString());
        return Tokenizer.FromDirectory(directory);
    }
}
