using System.Text;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;
using QwenSharp.Tokenization.Unicode;

namespace QwenSharp.Tests.Text;

/// <summary>
/// Properties on generated text: decode(encode(x)) is NFC(x), and streaming decode equals full decode
/// without ever printing a replacement character the full text does not have.
/// </summary>
public class RoundTripTests
{
    private static readonly string[] s_pieces =
    [
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>", "<|im_start", "im_end|>", "<|", "|>", "<s>", "</s>",
        "'s", "'LL", "'ve", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00A0", "\u3000", "\u2028",
        "hello", "World", "123", "4567", "3.14", "e\u0301", "\u00E9", "ñ", "你好", "世界", "日本語", "한국어", "\u1100\u1161\u11A8",
        "🤗", "👩‍👩‍👧‍👦", "🚀", "𝐀𝐁", "𠀀𠀁", "\u0627\u0644\u0639\u0631\u0628\u064A\u0629", "ℌ", "Ⅻ", "²", "x²", "def f(x):", "{}", "\"", "\\",
    ];

    public static TheoryData<int> Seeds() => [.. Enumerable.Range(0, 8)];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void QwenDecodeOfEncodeIsTheNfcText(int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < 60; i++)
        {
            string text = RandomText(random);
            int[] ids = TestTokenizers.Qwen.Encode(text);
            Assert.Equal(Nfc.Normalize(text), TestTokenizers.Qwen.Decode(ids));
            AssertStreamsLikeFullDecode(TestTokenizers.Qwen, ids);
        }
    }

    [Theory]
    [MemberData(nameof(Seeds))]
    public void StoriesDecodeOfEncodeIsTheText(int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < 60; i++)
        {
            // Without special-token look-alikes: the Llama 2 tokenizer prepends ▁ after each special token, as HF does.
            string text = RandomText(random).Replace("<s>", "", StringComparison.Ordinal).Replace("</s>", "", StringComparison.Ordinal);
            int[] ids = TestTokenizers.Stories.Encode(text);
            Assert.Equal(text, TestTokenizers.Stories.Decode(ids));
            AssertStreamsLikeFullDecode(TestTokenizers.Stories, ids);
        }
    }

    [Fact]
    public void StreamingHoldsBackSplitCharacters()
    {
        // " 🤗" is three byte-level tokens (11162, 97, 245, from the Hugging Face cases): the first two are partial bytes.
        int[] ids = TestTokenizers.Qwen.Encode("emoji 🤗 ok");
        Assert.Equal([37523, 11162, 97, 245], ids[..4]);
        var stream = TestTokenizers.Qwen.CreateStreamingDecoder();
        var pieces = ids.Select(stream.Append).ToList();
        pieces.Add(stream.Finish());
        Assert.Equal(["emoji", " ", "", "🤗"], pieces[..4]);
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD', StringComparison.Ordinal));
        Assert.Equal("emoji 🤗 ok", string.Concat(pieces));
    }

    [Fact]
    public void StreamingOfRandomIdsEqualsFullDecode()
    {
        // Random ids split characters anywhere, including invalid UTF-8; both decoders must agree exactly.
        var random = new Random(7);
        foreach (Tokenizer tokenizer in (Tokenizer[])[TestTokenizers.Qwen, TestTokenizers.Stories])
        {
            for (int i = 0; i < 200; i++)
            {
                int[] ids = [.. Enumerable.Range(0, random.Next(1, 12)).Select(_ => random.Next(tokenizer.VocabularySize))];
                AssertStreamsLikeFullDecode(tokenizer, ids);
            }
        }
    }

    [Fact]
    public void SpecialTokensCanBeTreatedAsText()
    {
        const string text = "<|im_start|>user";
        Assert.Equal([151644, 872], TestTokenizers.Qwen.Encode(text));
        int[] asText = TestTokenizers.Qwen.Encode(text, parseSpecialTokens: false);
        Assert.DoesNotContain(151644, asText);
        Assert.Equal(text, TestTokenizers.Qwen.Decode(asText));
    }

    [Fact]
    public void SkipSpecialTokensDropsThemFromText()
    {
        int[] ids = TestTokenizers.Qwen.Encode("<|im_start|>assistant\nHi<|im_end|>");
        Assert.Equal("assistant\nHi", TestTokenizers.Qwen.Decode(ids, skipSpecialTokens: true));
        var stream = TestTokenizers.Qwen.CreateStreamingDecoder(skipSpecialTokens: true);
        Assert.Equal("assistant\nHi", string.Concat(ids.Select(stream.Append)) + stream.Finish());
    }

    [Fact]
    public void AnIdOutsideTheVocabularyIsAClearError()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => TestTokenizers.Qwen.Decode([9707, 151936]));
        Assert.Contains("151936", error.Message, StringComparison.Ordinal);
        Assert.Contains("tokenizer.json", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => TestTokenizers.Stories.Decode([-1]));
    }

    private static void AssertStreamsLikeFullDecode(Tokenizer tokenizer, int[] ids)
    {
        foreach (bool skip in (bool[])[false, true])
        {
            string full = tokenizer.Decode(ids, skip);
            var stream = tokenizer.CreateStreamingDecoder(skip);
            var streamed = new StringBuilder();
            foreach (int id in ids)
            {
                streamed.Append(stream.Append(id));
            }

            streamed.Append(stream.Finish());
            Assert.Equal(full, streamed.ToString());
        }
    }

    private static string RandomText(Random random)
    {
        var text = new StringBuilder();
        int parts = random.Next(0, 14);
        for (int p = 0; p < parts; p++)
        {
            if (random.Next(3) == 0)
            {
                // Any Unicode scalar value, from every plane.
                int codePoint;
                do
                {
                    codePoint = random.Next(4) == 0 ? random.Next(0x80) : random.Next(0x110000);
                }
                while (codePoint is >= 0xD800 and <= 0xDFFF);
                text.Append(char.ConvertFromUtf32(codePoint));
            }
            else
            {
                text.Append(s_pieces[random.Next(s_pieces.Length)]);
            }
        }

        return text.ToString();
    }
}
