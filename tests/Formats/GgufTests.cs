using System.Buffers.Binary;
using System.Text;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Cli;
using QwenSharp.Tests.Model;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>
/// GGUF files: the fixtures written as llama.cpp lays them out run against their float64 references (a llama model
/// with its q/k rows reordered as llama.cpp's converter does), and every kind of corrupt header is one clear error.
/// </summary>
public sealed class GgufTests
{
    public static TheoryData<string, string> FixturesAndDevices()
    {
        var data = new TheoryData<string, string>();
        foreach (string fixture in new[] { "stories260K", "stories260K-qwen2-bf16", "tiny-qwen2", "tiny-qwen2-f16-sharded" })
        {
            foreach (string backend in TestBackends.CpuAndGpu)
            {
                data.Add(fixture, backend);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(FixturesAndDevices))]
    public void Fixture_AsGguf_LogitsAndGreedyIdsMatchReference(string fixture, string backendName)
    {
        Reference reference = Reference.Load(fixture);
        string gguf = GgufFixture.Write(Fixtures.ModelDirectory(fixture));
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);

        ReferenceModelTests.AssertFullLogitsMatch(model, reference);
        GenerationResult result = Generator.Greedy(model, [reference.PromptIds],
            new GenerationOptions { MaxNewTokens = reference.GreedyNewIds.Length, IgnoreEos = true });
        Assert.Equal(reference.GreedyNewIds, result.Sequences[0].Ids);
    }

    [Fact]
    public void Open_TinyQwen2_ReadsTheConfigFromTheMetadata()
    {
        using GgufCheckpoint gguf = GgufCheckpoint.Open(GgufFixture.Write(Fixtures.Directory("tiny-qwen2")));
        Qwen2Config expected = Qwen2Config.Load(Fixtures.File("tiny-qwen2", "config.json"));

        Assert.Equal(expected.HiddenSize, gguf.Config.HiddenSize);
        Assert.Equal(expected.NumHiddenLayers, gguf.Config.NumHiddenLayers);
        Assert.Equal(expected.NumKeyValueHeads, gguf.Config.NumKeyValueHeads);
        Assert.Equal(expected.VocabSize, gguf.Config.VocabSize);
        Assert.Equal(expected.RopeTheta, gguf.Config.RopeTheta, 1e-3);
        Assert.True(gguf.Config.TieWordEmbeddings);
        Assert.True(gguf.Config.QkvBias);
        Assert.Equal(3, gguf.File.Version);
    }

    [Fact]
    public void Generate_GgufFileAsModel_RunsFromTokenIds()
    {
        Reference reference = Reference.Load("tiny-qwen2");
        string gguf = GgufFixture.Write(Fixtures.Directory("tiny-qwen2"));

        CliRunner.Result ids = CliRunner.Run("generate", "--model", gguf, "--prompt-ids", string.Join(",", reference.PromptIds), "--greedy",
            "--ignore-eos", "--max-new-tokens", reference.GreedyNewIds.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json");
        CliRunner.Result text = CliRunner.Run("generate", "--model", gguf, "--prompt", "hello");

        Assert.True(ids.ExitCode == 0, ids.Stderr);
        Assert.Equal(reference.GreedyNewIds, ids.Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(2, text.ExitCode);
        Assert.Contains("no tokenizer.ggml.model (the file carries no tokenizer)", Assert.Single(text.ErrorLines));
    }

    [Fact]
    public void Tokenizer_FromGgufMetadata_GivesHuggingFacesIdsOnTheQwenCases()
    {
        string gguf = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer);
        QwenSharp.Tokenization.Tokenizer tokenizer = GgufTokenizer.Load(gguf);

        using var cases = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Fixtures.File("tokenizer", "qwen2.5-cases.json")));
        int checkedCases = 0;
        foreach (System.Text.Json.JsonElement item in cases.RootElement.EnumerateArray())
        {
            int[] expected = [.. item.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())];
            Assert.Equal(expected, tokenizer.Encode(item.GetProperty("text").GetString()!));
            checkedCases++;
        }

        Assert.Equal(115, checkedCases);
        Assert.Equal(TestTokenizers.Qwen.EosTokenId, tokenizer.EosTokenId);
        Assert.True(tokenizer.HasChatTemplate);
    }

    [Fact]
    public void Chat_GgufFileWithTokenizer_AnswersAsTheFolderDoes()
    {
        string gguf = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer);
        string[] args = ["generate", "--chat", "Name a prime.", "--greedy", "--max-new-tokens", "8", "--json"];

        CliRunner.Result fromFile = CliRunner.Run([.. args, "--model", gguf]);
        CliRunner.Result fromFolder = CliRunner.Run([.. args, "--model", TestTokenizers.TinyQwenWithTokenizer]);

        Assert.True(fromFile.ExitCode == 0, fromFile.Stderr);
        Assert.Equal(fromFolder.Json.GetProperty("sequences")[0].GetProperty("ids").GetRawText(), fromFile.Json.GetProperty("sequences")[0].GetProperty("ids").GetRawText());
    }

    public static TheoryData<string, string> Corruptions() => new()
    {
        { "magic", "not a GGUF file (it starts with 0x" },
        { "version", "GGUF version 1; QwenSharp reads versions 2 and 3" },
        { "truncated header", "while reading" },
        { "huge tensor count", "the tensor count is 1152921504606846976, more than the" },
        { "huge string", "more than the" },
        { "duplicate key", "metadata key 'general.architecture' is given twice" },
        { "nested array", "is an array of arrays" },
        { "bad bool", "is a bool of value 7, expected 0 or 1" },
        { "bad alignment", "general.alignment is the integer 24, expected a power of two" },
        { "offset outside", "ends past the file's" },
        { "overlap", "overlap" },
        { "misaligned", "not a multiple of the alignment 32" },
        { "partial block", "has rows of 20 values, not whole Q8_0 blocks of 32" },
        { "unknown type", "has GGUF type 99, which QwenSharp does not read" },
        { "zero dimension", "has dimension 0 of 0" },
        { "truncated data", "ends past the file's" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void Open_CorruptFile_OneErrorNamingWhatIsWrong(string corruption, string expected)
    {
        string path = Path.Combine(Fixtures.TempDirectory(), "bad.gguf");
        File.WriteAllBytes(path, Corrupt(corruption));

        Exception e = Assert.ThrowsAny<Exception>(() => GgufFile.Open(path).Dispose());

        Assert.True(e is InvalidDataException or NotSupportedException, $"{e.GetType().Name}: {e.Message}");
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.StartsWith("bad.gguf", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cli_QuantizedTensor_OneLineNamingTensorAndType()
    {
        string path = Path.Combine(Fixtures.TempDirectory(), "q8.gguf");
        File.WriteAllBytes(path, Header(("blk.0.attn_q.weight", [32, 2], (int)GgmlType.Q8_0, 0, 68)));

        CliRunner.Result result = CliRunner.Run("generate", "--model", path, "--prompt-ids", "1");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("q8.gguf", Assert.Single(result.ErrorLines));
    }

    /// <summary>A small valid file, then the corruption named.</summary>
    private static byte[] Corrupt(string corruption)
    {
        byte[] good = Header(("a", [32, 2], (int)GgmlType.F32, 0, 256), ("b", [32], (int)GgmlType.F32, 256, 128));
        switch (corruption)
        {
            case "magic": good[0] = (byte)'X'; return good;
            case "version": BinaryPrimitives.WriteUInt32LittleEndian(good.AsSpan(4), 1); return good;
            case "truncated header": return Header([Kv("general.architecture", "qwen2")])[..60];
            case "huge tensor count": BinaryPrimitives.WriteUInt64LittleEndian(good.AsSpan(8), 1UL << 60); return good;
            case "huge string":
                // The first key's length.
                BinaryPrimitives.WriteUInt64LittleEndian(good.AsSpan(24), 1UL << 40);
                return good;
            case "duplicate key": return Header(metadata: [Kv("general.architecture", "llama"), Kv("general.architecture", "qwen2")]);
            case "nested array": return Header(metadata: [[.. Str("x"), .. U32((uint)GgufValueType.Array), .. U32((uint)GgufValueType.Array), .. U64(0)]]);
            case "bad bool": return Header(metadata: [[.. Str("flag"), .. U32((uint)GgufValueType.Bool), 7]]);
            case "bad alignment": return Header(metadata: [[.. Str("general.alignment"), .. U32((uint)GgufValueType.UInt32), .. U32(24)]]);
            case "offset outside": return Header(("a", [32, 2], (int)GgmlType.F32, 1 << 20, 256));
            case "overlap": return Header(("a", [32, 2], (int)GgmlType.F32, 0, 256), ("b", [32], (int)GgmlType.F32, 128, 128));
            case "misaligned": return Header(("a", [32], (int)GgmlType.F32, 4, 132));
            case "partial block": return Header(("a", [20, 2], (int)GgmlType.Q8_0, 0, 68));
            case "unknown type": return Header(("a", [32], 99, 0, 128));
            case "zero dimension": return Header(("a", [0], (int)GgmlType.F32, 0, 0));
            case "truncated data": return good[..^64];
            default: throw new ArgumentException(corruption);
        }
    }

    /// <summary>A GGUF v3 file with the given metadata entries (raw bytes each) and tensors, and data bytes to cover them.</summary>
    private static byte[] Header(params (string Name, long[] Dimensions, int Type, long Offset, long DataBytes)[] tensors) =>
        Header([Kv("general.architecture", "qwen2")], tensors);

    private static byte[] Header(byte[][] metadata, params (string Name, long[] Dimensions, int Type, long Offset, long DataBytes)[] tensors)
    {
        var bytes = new List<byte>();
        bytes.AddRange(U32(GgufFile.Magic));
        bytes.AddRange(U32(3));
        bytes.AddRange(U64((ulong)tensors.Length));
        bytes.AddRange(U64((ulong)metadata.Length));
        foreach (byte[] entry in metadata)
        {
            bytes.AddRange(entry);
        }

        foreach ((string name, long[] dimensions, int type, long offset, _) in tensors)
        {
            bytes.AddRange(Str(name));
            bytes.AddRange(U32((uint)dimensions.Length));
            foreach (long d in dimensions)
            {
                bytes.AddRange(U64((ulong)d));
            }

            bytes.AddRange(U32((uint)type));
            bytes.AddRange(U64((ulong)offset));
        }

        while (bytes.Count % 32 != 0)
        {
            bytes.Add(0);
        }

        long data = tensors.Length == 0 ? 0 : tensors.Max(t => t.DataBytes);
        bytes.AddRange(new byte[Math.Min(data, 4096)]);
        return [.. bytes];
    }

    private static byte[] Kv(string key, string value) => [.. Str(key), .. U32((uint)GgufValueType.String), .. Str(value)];

    private static byte[] Str(string text) => [.. U64((ulong)Encoding.UTF8.GetByteCount(text)), .. Encoding.UTF8.GetBytes(text)];

    private static byte[] U32(uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        return b;
    }

    private static byte[] U64(ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        return b;
    }
}
