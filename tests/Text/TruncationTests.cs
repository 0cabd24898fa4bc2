using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;

namespace QwenSharp.Tests.Text;

/// <summary>
/// <see cref="Tokenizer.EncodeTruncated"/> as transformers' <c>truncation=True, max_length=N</c>: the text's tokens are cut
/// from the end and the special tokens then go around them, so a BOS before and an EOS after both stay.
/// </summary>
public sealed class TruncationTests
{
    private const string Text = "Once upon a time, there was a little girl named Lily.";

    [Fact]
    public void TheTextIsCut_TheSpecialTokensStay()
    {
        string folder = Fixtures.TempDirectory();
        File.Copy(Path.Combine(Fixtures.DemoModel, "tokenizer.json"), Path.Combine(folder, "tokenizer.json"));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
            """{"add_bos_token": true, "add_eos_token": true, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}""");
        Tokenizer both = Tokenizer.FromDirectory(folder);
        int[] content = both.Encode(Text);
        Assert.True(content.Length > 8);

        int[] cut = both.EncodeTruncated(Text, 6, out bool truncated);
        int[] roomy = both.EncodeTruncated(Text, 1000, out bool untouched);

        Assert.Equal([1, .. content[..4], 2], cut);
        Assert.True(truncated);
        Assert.Equal(both.Encode(Text, addSpecialTokens: true), roomy);
        Assert.False(untouched);
        Assert.Contains("no room for text beside the 2 special tokens", Assert.Throws<ArgumentOutOfRangeException>(() => both.EncodeTruncated(Text, 2, out _)).Message);
    }
}
