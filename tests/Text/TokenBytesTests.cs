using System.Text;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;

namespace QwenSharp.Tests.Text;

/// <summary>
/// <see cref="Tokenizer.TokenBytes"/>, each token's own bytes, against Hugging Face tokenizers' decode of the whole text
/// (Tokenizers.DotNet): the pieces joined are that text's UTF-8, including characters whose bytes span tokens.
/// </summary>
public class TokenBytesTests
{
    [SkippableFact]
    public void ByteLevelPiecesJoinIntoTheDecodedCorpus()
    {
        HuggingFaceEqualityTests.RequireHuggingFaceRuntime();
        string text = File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "bench", "data", "multilingual.txt"));
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));
        uint[] ids = reference.Encode(text);

        byte[][] pieces = [.. ids.Select(id => TestTokenizers.Qwen.TokenBytes((int)id))];

        Assert.Equal(Encoding.UTF8.GetBytes(reference.Decode(ids)), pieces.SelectMany(p => p));
        // The corpus's Chinese and emoji put parts of characters in tokens: those pieces are not UTF-8 alone.
        Assert.True(pieces.Count(p => !System.Text.Unicode.Utf8.IsValid(p)) > 100);
    }

    [SkippableTheory]
    [InlineData("Once upon a time, there was a little girl.")]
    [InlineData("Lily said: 你好 🤗 x²\n\tok")]
    public void SentencepiecePiecesKeepTheirSpacesAndFallbackBytes(string text)
    {
        HuggingFaceEqualityTests.RequireHuggingFaceRuntime();
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(Fixtures.DemoModel, "tokenizer.json"));
        // Without the BOS Hugging Face adds (its decode skips it; its piece is its own text, "<s>").
        uint[] ids = [.. reference.Encode(text).Where(id => id != TestTokenizers.Stories.BosTokenId)];

        byte[] joined = [.. ids.Select(id => TestTokenizers.Stories.TokenBytes((int)id)).SelectMany(p => p)];

        // A text's decode drops the space its first word's ▁ stands for; mid-text, every piece keeps its own.
        Assert.Equal(Encoding.UTF8.GetBytes(" " + reference.Decode(ids)), joined);
        Assert.Equal(" a"u8.ToArray(), TestTokenizers.Stories.TokenBytes(TestTokenizers.Stories.Encode(" a", addSpecialTokens: false)[^1]));
    }

    [Fact]
    public void SpecialTokensAreTheirTextAndUnknownIdsAreRefused()
    {
        Tokenizer qwen = TestTokenizers.Qwen;

        Assert.Equal("<|im_end|>"u8.ToArray(), qwen.TokenBytes(qwen.TokenToId("<|im_end|>")!.Value));
        Assert.Throws<ArgumentOutOfRangeException>(() => qwen.TokenBytes(qwen.VocabularySize));
        Assert.Throws<ArgumentOutOfRangeException>(() => qwen.TokenBytes(-1));
    }
}
