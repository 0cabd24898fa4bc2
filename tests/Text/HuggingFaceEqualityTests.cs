using System.Text.Json.Nodes;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;

namespace QwenSharp.Tests.Text;

/// <summary>
/// Our ids against Hugging Face tokenizers itself (the Rust library, through Tokenizers.DotNet) on the
/// benchmark's ~1 MB of prose, code, Chinese and mixed scripts: not a sample, every token.
/// </summary>
public class HuggingFaceEqualityTests
{
    /// <summary>Tokenizers.DotNet's native library exists for linux-x64 only (the runtime package is referenced there alone).</summary>
    internal static void RequireHuggingFaceRuntime() =>
        Skip.IfNot(OperatingSystem.IsLinux() && System.Runtime.InteropServices.RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.X64,
            "Hugging Face tokenizers (Tokenizers.DotNet.runtime) ships its native library for linux-x64 only");

    [SkippableFact]
    public void QwenIdsEqualHuggingFaceOnTheBenchmarkCorpus()
    {
        RequireHuggingFaceRuntime();
        string text = File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "bench", "data", "multilingual.txt"));
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));

        uint[] expected = reference.Encode(text);
        int[] actual = TestTokenizers.Qwen.Encode(text);

        Assert.True(expected.Length > 200_000);
        int firstDifference = Enumerable.Range(0, Math.Min(expected.Length, actual.Length)).FirstOrDefault(i => expected[i] != actual[i], -1);
        Assert.True(firstDifference < 0, $"first difference at token {firstDifference}");
        Assert.Equal(expected.Length, actual.Length);
    }

    [SkippableTheory]
    [InlineData("Hello 世界 🤗\r\n\tdef f(x): return x**2  # ok\n\n\n")]
    [InlineData("  leading, trailing  ")]
    public void SmallTextsEqualHuggingFace(string text)
    {
        RequireHuggingFaceRuntime();
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(TestTokenizers.QwenDirectory, "tokenizer.json"));
        Assert.Equal(reference.Encode(text).Select(id => (int)id), TestTokenizers.Qwen.Encode(text));
    }

    private static readonly string[] s_variantTexts =
    [
        "Once upon a time, there was a little girl.", "  spaces  and\ttabs <s> x</s>y", "Hello <|im_start|>user\n hi <|im_end|>  there",
        "The cat's toy isn't here! 123 你好 🤗", "a<mask>b  <mask>  c<mask>", "<mask>", " cat cats concat cat_ 猫cat", "",
        "Ünïcödé e\u0301 \u212B 𝐀𝐁 𠀀 \r\n\r\n\n   x", "'S 'LL 'Ve I'M we'd", "x²³ Ⅻ ½ ١٢٣",
    ];

    /// <summary>Variants of the two real tokenizer.json files, each exercising a setting the real files do not use.</summary>
    public static TheoryData<string> Variants() =>
        ["stories", "stories-merges-as-pairs", "qwen-ignore-merges", "qwen-added-token-flags", "gpt2-byte-level-regex", "metaspace-first", "metaspace-split"];

    /// <summary>Encode, and decode with special tokens skipped (what Tokenizers.DotNet's Decode does), as Hugging Face does.</summary>
    [SkippableTheory]
    [MemberData(nameof(Variants))]
    public void TokenizerJsonVariantsEqualHuggingFace(string variant)
    {
        RequireHuggingFaceRuntime();
        string directory = WriteVariant(variant);
        using var reference = new Tokenizers.DotNet.Tokenizer(Path.Combine(directory, "tokenizer.json"));
        Tokenizer ours = Tokenizer.FromDirectory(directory);
        var random = new Random(variant.Length);
        IEnumerable<string> texts = s_variantTexts.Concat(Enumerable.Range(0, 30).Select(_ => RandomText(random)));
        foreach (string text in texts)
        {
            uint[] expected = reference.Encode(text);
            Assert.Equal(expected.Select(id => (int)id), ours.Encode(text, addSpecialTokens: true));
            Assert.Equal(reference.Decode(expected), ours.Decode([.. expected.Select(id => (int)id)], skipSpecialTokens: true));
        }
    }

    private static string RandomText(Random random) => string.Concat(Enumerable.Range(0, random.Next(1, 12)).Select(_ =>
        random.Next(4) switch
        {
            0 => s_variantTexts[random.Next(s_variantTexts.Length)],
            1 => " ",
            2 => char.ConvertFromUtf32(random.Next(0x20, 0x3000)),
            _ => "<mask>",
        }));

    private static string WriteVariant(string variant)
    {
        bool qwen = variant.StartsWith("qwen", StringComparison.Ordinal) || variant.StartsWith("gpt2", StringComparison.Ordinal);
        JsonNode json = JsonNode.Parse(File.ReadAllText(Path.Combine(qwen ? TestTokenizers.QwenDirectory : Fixtures.DemoModel, "tokenizer.json")))!;
        switch (variant)
        {
            case "stories-merges-as-pairs":
                JsonArray merges = json["model"]!["merges"]!.AsArray();
                for (int i = 0; i < merges.Count; i++)
                {
                    string[] pair = merges[i]!.GetValue<string>().Split(' ');
                    merges[i] = new JsonArray(pair[0], pair[1]);
                }

                break;
            case "qwen-ignore-merges":
                json["model"]!["ignore_merges"] = true;
                break;
            case "qwen-added-token-flags":
                JsonArray added = json["added_tokens"]!.AsArray();
                added.Add(JsonNode.Parse("""{"id":151665,"content":"<mask>","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":true}"""));
                // Already in the vocabulary (as "cat"): Hugging Face gives it the vocabulary's id.
                added.Add(JsonNode.Parse("""{"id":151666,"content":"cat","single_word":true,"lstrip":false,"rstrip":false,"normalized":true,"special":false}"""));
                break;
            case "gpt2-byte-level-regex":
                json["normalizer"] = null;
                json["pre_tokenizer"] = JsonNode.Parse("""{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}""");
                break;
            case "metaspace-first" or "metaspace-split":
                string scheme = variant == "metaspace-first" ? "first" : "always";
                string split = variant == "metaspace-first" ? "false" : "true";
                json["normalizer"] = null;
                json["pre_tokenizer"] = JsonNode.Parse($$"""{"type":"Metaspace","replacement":"▁","prepend_scheme":"{{scheme}}","split":{{split}}}""");
                json["decoder"] = JsonNode.Parse($$"""{"type":"Metaspace","replacement":"▁","prepend_scheme":"{{scheme}}","split":{{split}}}""");
                break;
        }

        string directory = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), json.ToJsonString());
        return directory;
    }
}
