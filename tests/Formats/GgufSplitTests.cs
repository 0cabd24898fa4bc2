using LLama.Native;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Model;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>
/// Models split across GGUF files (llama-gguf-split's parts): a set written by ggml's own GGUF writer reads as the whole
/// file does, ours loads in llama.cpp as the whole file does, the parts' names are llama.cpp's, and a set that is not
/// whole or not consistent is one clear error naming the file.
/// </summary>
public sealed class GgufSplitTests
{
    private static readonly int[] s_ids = [1, 2, 3, 4, 5, 6];

    [Theory]
    [InlineData("/models/ggml-model-q4_0", 1, 4)]
    [InlineData("qwen2.5-7b-instruct-q4_k_m", 0, 2)]
    [InlineData("a", 99_999, 100_000)]
    public void PartNames_AreLlamaCpps(string prefix, int index, int count)
    {
        string theirs = NativeApi.llama_split_path(prefix, index, count, 4096);
        Assert.Equal(theirs, GgufSplit.PathOf(prefix, index, count));
        Assert.Equal(NativeApi.llama_split_prefix(theirs, index, count, 4096), GgufSplit.PrefixOf(theirs, index, count));
        Assert.Null(GgufSplit.PrefixOf(theirs, index + 1, count + 1));
        Assert.Null(GgufSplit.PrefixOf(GgufSplit.PathOf("", index, count), index, count));
    }

    [Theory]
    [InlineData("qwen2.5-7b-instruct-q4_k_m-00001-of-00002", "qwen2.5-7b-instruct-q4_k_m")]
    [InlineData("m-00003-of-00012", "m")]
    [InlineData("qwen2.5-7b-instruct-q4_k_m", "qwen2.5-7b-instruct-q4_k_m")]
    [InlineData("-00001-of-00002", "-00001-of-00002")]
    [InlineData("m-0000a-of-00002", "m-0000a-of-00002")]
    [InlineData("m-00001-xf-00002", "m-00001-xf-00002")]
    public void ModelName_LeavesOutThePart(string name, string model) => Assert.Equal(model, GgufSplit.WithoutPart(name));

    [Fact]
    public void SplitByGgufsOwnWriter_ReadsAsTheWholeFile_TensorForTensor_AndGivesItsLogits()
    {
        string whole = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer);
        string[] parts = Ggml.SplitAsGgufSplit(whole, Path.Combine(Fixtures.TempDirectory(), "tiny"), tensorsPerPart: 5);
        Assert.True(parts.Length > 2);

        using (GgufFile one = GgufFile.Open(whole))
        using (GgufFile split = GgufFile.Open(parts[0]))
        {
            Assert.Equal(parts, split.PartPaths);
            Assert.Equal(one.TensorOrder.Select(t => t.Name), split.TensorOrder.Select(t => t.Name));
            Assert.Equal(Enumerable.Range(0, one.TensorOrder.Count).Select(i => i / 5), split.TensorOrder.Select(t => t.Part));
            foreach (GgufTensorInfo tensor in one.TensorOrder)
            {
                GgufTensorInfo part = split.Tensors[tensor.Name];
                Assert.Equal(tensor.Dimensions, part.Dimensions);
                Assert.Equal(tensor.Type, part.Type);
                Assert.True(Bytes(one, tensor).SequenceEqual(Bytes(split, part)), tensor.Name);
            }

            Assert.Equal(one.Metadata.Keys.Order(StringComparer.Ordinal), split.Metadata.Keys.Where(k => !GgufSplit.IsSplitKey(k)).Order(StringComparer.Ordinal));
        }

        Assert.Equal(LogitsOf(whole), LogitsOf(parts[0]));
    }

    [Fact]
    public void OurSplit_LoadsInLlamaCpp_AsTheWholeFileDoes_AndPartsFollowGgufSplitsRules()
    {
        string model = TestTokenizers.TinyQwenWithTokenizer;
        string prefix = Path.Combine(Fixtures.TempDirectory(), "tiny-q8_0");
        IReadOnlyList<string> parts = GgufExport.Write(model, prefix + ".gguf", QuantizationMix.Pure(DType.Q8_0), GgufSplitLimit.Tensors(4));
        string single = GgufFixture.Write(model, DType.Q8_0);

        using (GgufFile one = GgufFile.Open(single))
        using (GgufFile split = GgufFile.Open(parts[0]))
        {
            // --split-max-tensors 4: parts of 4 tensors, the last the rest, the tensors in the file's order.
            int expectedParts = (one.TensorOrder.Count + 3) / 4;
            Assert.Equal(Enumerable.Range(0, expectedParts).Select(i => $"{prefix}-{i + 1:D5}-of-{expectedParts:D5}.gguf"), parts);
            Assert.Equal(one.TensorOrder.Select(t => t.Name), split.TensorOrder.Select(t => t.Name));
            Assert.Equal(Enumerable.Range(0, one.TensorOrder.Count).Select(i => i / 4), split.TensorOrder.Select(t => t.Part));
            Assert.Equal(one.Metadata.Keys.Order(StringComparer.Ordinal), split.Metadata.Keys.Where(k => !GgufSplit.IsSplitKey(k)).Order(StringComparer.Ordinal));
        }

        float[][] theirs = LlamaCpp.Logits(parts[0], s_ids);
        Assert.Equal(LlamaCpp.Logits(single, s_ids), theirs);
        Assert.Equal(LogitsOf(single), LogitsOf(parts[0]));
    }

    [Fact]
    public void OurSplitBySize_FollowsGgufSplitsRule_OnTheFilesTensors_AndLoadsInLlamaCpp()
    {
        string model = TestTokenizers.TinyQwenWithTokenizer;
        string single = GgufFixture.Write(model, DType.Q8_0);
        string folder = Fixtures.TempDirectory();
        long limit;
        using (GgufFile one = GgufFile.Open(single))
        {
            // A limit no tensor passes alone (where llama-gguf-split would stop), about a quarter of the model.
            long[] padded = [.. one.TensorOrder.Select(t => (t.ByteLength + 31) / 32 * 32)];
            limit = Math.Max(padded.Max(), padded.Sum() / 4);
        }

        IReadOnlyList<string> parts = GgufExport.Write(model, Path.Combine(folder, "tiny.gguf"), QuantizationMix.Pure(DType.Q8_0), GgufSplitLimit.Bytes(limit));

        using (GgufFile one = GgufFile.Open(single))
        using (GgufFile split = GgufFile.Open(parts[0]))
        {
            // llama-gguf-split --split-max-size: a new part where the part's tensors, each padded to 32 bytes, would pass the limit.
            var expected = new List<int>();
            long current = 0;
            int part = 0;
            foreach (GgufTensorInfo tensor in one.TensorOrder)
            {
                long padded = (tensor.ByteLength + 31) / 32 * 32;
                if (current + padded > limit)
                {
                    part++;
                    current = 0;
                }

                current += padded;
                expected.Add(part);
            }

            Assert.True(part >= 1);
            Assert.Equal(part + 1, parts.Count);
            Assert.Equal(expected, split.TensorOrder.Select(t => t.Part));
        }

        Assert.Equal(LlamaCpp.Logits(single, s_ids), LlamaCpp.Logits(parts[0], s_ids));
        Assert.Equal(parts.Order(StringComparer.Ordinal), Directory.GetFiles(folder).Order(StringComparer.Ordinal));   // no spool or partial file left
    }

    [Fact]
    public void AFailedWrite_LeavesNoFileBehind_WholeOrSplit()
    {
        string folder = Fixtures.TempDirectory();
        GgufWriter Failing()
        {
            var writer = new GgufWriter().Add("general.architecture", "qwen2");
            writer.AddTensor("a", GgmlType.F32, [8], new byte[32]);
            return writer.AddTensor("b", [8], () => throw new InvalidOperationException("no b"));
        }

        Assert.Equal("no b", Assert.Throws<InvalidOperationException>(() => Failing().WriteNew(Path.Combine(folder, "whole.gguf"))).Message);
        Assert.Equal("no b", Assert.Throws<InvalidOperationException>(() => Failing().WriteNewSplit(Path.Combine(folder, "count"), GgufSplitLimit.Tensors(1))).Message);
        Assert.Equal("no b", Assert.Throws<InvalidOperationException>(() => Failing().WriteNewSplit(Path.Combine(folder, "size"), GgufSplitLimit.Bytes(1))).Message);
        Assert.Empty(Directory.GetFileSystemEntries(folder));

        // An encoder whose bytes are not its shape's in its type fails naming the tensor.
        var wrong = new GgufWriter().AddTensor("c", GgmlType.Q8_0, [2, 32], new byte[34]);
        Assert.Equal("tensor 'c': 34 bytes, but [2, 32] in Q8_0 is 68", Assert.Throws<InvalidOperationException>(() => wrong.WriteNew(Path.Combine(folder, "wrong.gguf"))).Message);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void SplitBySize_StartsAPartBeforeATensorThatWouldPassTheLimit_AndGivesABigTensorItsOwn()
    {
        long[] sizes = [100, 40, 200, 10, 10, 1000, 5];   // padded to 32: 128, 64, 224, 32, 32, 1024, 32
        long[][] bySize = [[100, 40], [200, 10], [10], [1000], [5]];
        Assert.Equal(bySize, GgufSplitLimit.Bytes(256).Partition(sizes, s => s).Select(p => p.ToArray()));
        long[][] byCount = [[100, 40, 200], [10, 10, 1000], [5]];
        Assert.Equal(byCount, GgufSplitLimit.Tensors(3).Partition(sizes, s => s).Select(p => p.ToArray()));

        // llama-gguf-split stops at a first tensor larger than the limit ("one of splits have 0 tensors"); it takes a part of its own.
        long[][] bigFirst = [[1000], [5]];
        Assert.Equal(bigFirst, GgufSplitLimit.Bytes(256).Partition([1000L, 5L], s => s).Select(p => p.ToArray()));
    }

    [Fact]
    public void APartGivenFirst_AMissingPart_AndInconsistentParts_AreOneClearError()
    {
        string whole = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer);
        string folder = Fixtures.TempDirectory();
        string[] parts = Ggml.SplitAsGgufSplit(whole, Path.Combine(folder, "m"), tensorsPerPart: 10);
        int count = parts.Length;

        string second = Assert.Throws<InvalidDataException>(() => GgufFile.Open(parts[1])).Message;
        Assert.Equal($"m-00002-of-{count:D5}.gguf is part 2 of {count} of a split model; give the first part, m-00001-of-{count:D5}.gguf", second);

        string renamed = Path.Combine(folder, "renamed.gguf");
        File.Copy(parts[0], renamed);
        Assert.StartsWith($"renamed.gguf is part 1 of {count} of a split model, but its name does not end in -00001-of-{count:D5}.gguf",
            Assert.Throws<InvalidDataException>(() => GgufFile.Open(renamed)).Message);

        File.Move(parts[^1], parts[^1] + ".away");
        Assert.Equal($"m-{count:D5}-of-{count:D5}.gguf: file not found (part {count} of {count} of the split model m-00001-of-{count:D5}.gguf; all parts go in one folder)",
            Assert.Throws<FileNotFoundException>(() => GgufFile.Open(parts[0])).Message);

        // Another set's part in its place: it says it is part 1.
        File.Copy(parts[0], parts[^1]);
        Assert.Equal($"m-{count:D5}-of-{count:D5}.gguf: says it is part 1 of {count}, expected part {count} of {count} of the split model m-00001-of-{count:D5}.gguf",
            Assert.Throws<InvalidDataException>(() => GgufFile.Open(parts[0])).Message);

        // A whole file in its place: no split keys, and its tensors are the first part's too.
        File.Delete(parts[^1]);
        File.Copy(whole, parts[^1]);
        Assert.Equal($"m-{count:D5}-of-{count:D5}.gguf: no split.no and split.count, so it is not part {count} of {count} of the split model m-00001-of-{count:D5}.gguf",
            Assert.Throws<InvalidDataException>(() => GgufFile.Open(parts[0])).Message);
    }

    [Fact]
    public void ATensorInTwoParts_OrATensorCountThatDiffers_IsRefused()
    {
        string folder = Fixtures.TempDirectory();
        static GgufWriter Model(int part, int count, int tensors, params string[] names)
        {
            var writer = new GgufWriter();
            if (part == 0)
            {
                writer.Add("general.architecture", "qwen2");
            }

            foreach (string name in names)
            {
                writer.AddTensor(name, GgmlType.F32, [8], new byte[32]);
            }

            return writer.Add(GgufSplit.NumberKey, (ushort)part).Add(GgufSplit.CountKey, (ushort)count).Add(GgufSplit.TensorsKey, tensors);
        }

        Model(0, 2, 3, "a", "b").Write(Path.Combine(folder, "twice-00001-of-00002.gguf"));
        Model(1, 2, 3, "b").Write(Path.Combine(folder, "twice-00002-of-00002.gguf"));
        Assert.Equal("twice-00002-of-00002.gguf: tensor 'b' is also in twice-00001-of-00002.gguf (a split model holds each tensor once)",
            Assert.Throws<InvalidDataException>(() => GgufFile.Open(Path.Combine(folder, "twice-00001-of-00002.gguf"))).Message);

        Model(0, 2, 4, "a", "b").Write(Path.Combine(folder, "count-00001-of-00002.gguf"));
        Model(1, 2, 4, "c").Write(Path.Combine(folder, "count-00002-of-00002.gguf"));
        Assert.Equal("count-00001-of-00002.gguf: split.tensors.count says the 2 parts hold 4 tensors; they hold 3",
            Assert.Throws<InvalidDataException>(() => GgufFile.Open(Path.Combine(folder, "count-00001-of-00002.gguf"))).Message);
    }

    private static unsafe ReadOnlySpan<byte> Bytes(GgufFile file, GgufTensorInfo tensor) =>
        new((void*)file.DataOf(tensor), checked((int)tensor.ByteLength));

    private static float[][] LogitsOf(string gguf)
    {
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        return ReferenceModelTests.AllPositionLogits(model, s_ids);
    }
}
