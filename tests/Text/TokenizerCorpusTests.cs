using System.Text.Json;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;
using QwenSharp.Tokenization.Unicode;

namespace QwenSharp.Tests.Text;

/// <summary>
/// Our ids against the independent references in tests/fixtures/tokenizer: Hugging Face tokenizers'
/// ids for the real Qwen2.5 and stories260K tokenizers, and llama.cpp's Qwen2 vocabulary test.
/// </summary>
public class TokenizerCorpusTests
{
    public sealed record Case(string Text, int[] Ids, bool DecodedOk)
    {
        public override string ToString() => JsonSerializer.Serialize(Text.Length > 40 ? Text[..40] + "..." : Text);
    }

    public static TheoryData<Case> QwenCases() => Load("qwen2.5-cases.json");

    public static TheoryData<Case> StoriesCases() => Load("stories260K-cases.json");

    public static TheoryData<Case> LlamaCppCases()
    {
        string[] inputs = File.ReadAllText(Fixtures.File("tokenizer", "ggml-vocab-qwen2.gguf.inp"))
            .Split("\n__ggml_vocab_test__\n");
        string[] outputs = File.ReadAllLines(Fixtures.File("tokenizer", "ggml-vocab-qwen2.gguf.out"));
        // The .inp file ends with a separator line, so the last split is empty.
        var data = new TheoryData<Case>();
        for (int i = 0; i < outputs.Length; i++)
        {
            int[] ids = [.. outputs[i].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)];
            data.Add(new Case(inputs[i], ids, true));
        }

        return data;
    }

    [Fact]
    public void LlamaCppCorpusHasOneOutputPerInput()
    {
        string[] inputs = File.ReadAllText(Fixtures.File("tokenizer", "ggml-vocab-qwen2.gguf.inp")).Split("\n__ggml_vocab_test__\n");
        int outputs = File.ReadAllLines(Fixtures.File("tokenizer", "ggml-vocab-qwen2.gguf.out")).Length;
        Assert.True(outputs > 30);
        Assert.Equal(outputs, inputs.Length - 1);
    }

    [Theory]
    [MemberData(nameof(QwenCases))]
    [MemberData(nameof(LlamaCppCases))]
    public void QwenEncodesAsHuggingFace(Case c) => Assert.Equal(c.Ids, TestTokenizers.Qwen.Encode(c.Text));

    [Theory]
    [MemberData(nameof(StoriesCases))]
    public void StoriesEncodesAsHuggingFace(Case c) => Assert.Equal(c.Ids, TestTokenizers.Stories.Encode(c.Text));

    [Theory]
    [MemberData(nameof(QwenCases))]
    [MemberData(nameof(LlamaCppCases))]
    public void QwenDecodesToTheNormalizedText(Case c) => AssertDecodes(TestTokenizers.Qwen, c);

    [Theory]
    [MemberData(nameof(StoriesCases))]
    public void StoriesDecodesToTheText(Case c) => AssertDecodes(TestTokenizers.Stories, c);

    [Fact]
    public void StoriesAddsBosWithSpecialTokens()
    {
        Assert.Equal([1, 403, 407], TestTokenizers.Stories.Encode("Once upon", addSpecialTokens: true)[..3]);
        Assert.DoesNotContain(151643, TestTokenizers.Qwen.Encode("Hello", addSpecialTokens: true));
        Assert.Equal([9707], TestTokenizers.Qwen.Encode("Hello", addSpecialTokens: true));
    }

    private static void AssertDecodes(Tokenizer tokenizer, Case c)
    {
        string decoded = tokenizer.Decode(c.Ids);
        if (c.DecodedOk)
        {
            Assert.Equal(c.Text, decoded);
        }
        else
        {
            // The NFC normalizer changed the text; decoding gives the normalized form (checked against Python's NFC).
            Assert.NotEqual(c.Text, decoded);
            Assert.Equal(decoded, Nfc.Normalize(decoded));
        }

        // Streaming gives the same text, piece by piece.
        var stream = tokenizer.CreateStreamingDecoder(skipSpecialTokens: false);
        string streamed = string.Concat(c.Ids.Select(stream.Append)) + stream.Finish();
        Assert.Equal(decoded, streamed);
    }

    private static TheoryData<Case> Load(string file)
    {
        using JsonDocument document = Fixtures.Json("tokenizer", file);
        var data = new TheoryData<Case>();
        foreach (JsonElement item in document.RootElement.EnumerateArray())
        {
            data.Add(new Case(
                item.GetProperty("text").GetString()!,
                [.. item.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())],
                item.GetProperty("decoded_ok").GetBoolean()));
        }

        return data;
    }
}
