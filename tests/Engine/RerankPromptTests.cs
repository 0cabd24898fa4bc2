using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// A rerank template filled as llama.cpp's <c>{query}</c>/<c>{document}</c> convention means it, in one pass: what the
/// query or document holds is never read as a place, a lone brace stays, a template missing a place is refused naming it.
/// </summary>
public sealed class RerankPromptTests
{
    [Theory]
    [InlineData("Query: {query}\nDocument: {document}\nRelevant:", "a", "b", "Query: a\nDocument: b\nRelevant:")]
    [InlineData("{document}|{query}|{document}", "q", "d", "d|q|d")]
    [InlineData("{{query}} {x} {document}}", "q", "d", "{q} {x} d}")]
    [InlineData("{query} {document}", "find {document}", "text {query}", "find {document} text {query}")]
    [InlineData("{query}{document}", "", "", "")]
    public void Fill_ReplacesEachPlaceOnce_LeftToRight(string template, string query, string document, string expected) =>
        Assert.Equal(expected, RerankPrompt.Fill(template, query, document));

    [Theory]
    [InlineData("Query: {query}", "{document}")]
    [InlineData("Document: {document}", "{query}")]
    [InlineData("{Query} {Document}", "{query}")]
    public void ATemplateWithoutBothPlaces_IsRefusedNamingTheMissingOne(string template, string missing)
    {
        var error = Assert.Throws<ArgumentException>(() => RerankPrompt.Check(template, "--rerank-template"));
        Assert.StartsWith($"--rerank-template: the rerank template has no {missing}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Ids_WithATemplate_ParseSpecialTokensAndAddNone_AndWithoutOne_AreThePair()
    {
        Tokenization.Tokenizer qwen = TestTokenizers.Qwen;
        Assert.Equal(qwen.Encode("<|im_start|>user\nq: a d: b<|im_end|>"),
            RerankPrompt.Ids(qwen, "a", "b", "<|im_start|>user\nq: {query} d: {document}<|im_end|>"));
        Assert.Equal(151644, RerankPrompt.Ids(qwen, "a", "b", "<|im_start|>{query}{document}")[0]);
        Assert.Equal(qwen.EncodePair("a query", "a document"), RerankPrompt.Ids(qwen, "a query", "a document"));

        var demo = Tokenization.Tokenizer.FromDirectory(Fixtures.DemoModel);
        Assert.NotEqual(1, RerankPrompt.Ids(demo, "a", "b", "{query} {document}")[0]);
    }
}
