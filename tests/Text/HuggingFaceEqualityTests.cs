using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Text;

/// <summary>
/// Our ids against Hugging Face tokenizers itself (the Rust library, through Tokenizers.DotNet) on the
/// benchmark's ~1 MB of prose, code, Chinese and mixed scripts: not a sample, every token.
/// </summary>
public class HuggingFaceEqualityTests
{
    [Fact]
    public void QwenIdsEqualHuggingFaceOnTheBenchmarkCorpus()
    {
        string text = File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "bench", "data", "multilingual.txt"));
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));

        uint[] expected = reference.Encode(text);
        int[] actual = TestTokenizers.Qwen.Encode(text);

        Assert.True(expected.Length > 200_000);
        int firstDifference = Enumerable.Range(0, Math.Min(expected.Length, actual.Length)).FirstOrDefault(i => expected[i] != actual[i], -1);
        Assert.True(firstDifference < 0, $"first difference at token {firstDifference}");
        Assert.Equal(expected.Length, actual.Length);
    }

    [Theory]
    [InlineData("Hello 世界 🤗\r\n\tdef f(x): return x**2  # ok\n\n\n")]
    [InlineData("  leading, trailing  ")]
    public void SmallTextsEqualHuggingFace(string text)
    {
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));
        Assert.Equal(reference.Encode(text).Select(id => (int)id), TestTokenizers.Qwen.Encode(text));
    }
}
