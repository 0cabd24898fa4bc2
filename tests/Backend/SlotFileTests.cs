using System.Buffers.Binary;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Backend;

/// <summary>
/// <see cref="SlotFile"/>: a slot written and read back holds the same tokens, scales and rows; a file that does not fit the
/// cache it goes into (another shape, another cache type, more positions than a slot holds, a token past the vocabulary,
/// cut short or longer) is refused whole, naming the field, before any row is written.
/// </summary>
public sealed class SlotFileTests
{
    private const int Positions = 12;

    /// <summary>tiny-qwen2 with <see cref="Positions"/> prompt positions in slot 0 of a two-slot cache of <paramref name="type"/>.</summary>
    private static (Qwen2Model Model, KvCache Cache, int[] Tokens) Filled(IBackend backend, DType type = DType.F32, int capacity = 32)
    {
        Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory("tiny-qwen2"), backend);
        model.KvCacheType = type;
        KvCache cache = model.CreateKvCache(2, capacity);
        int[] tokens = [.. Enumerable.Range(0, Positions).Select(i => 5 + (i * 11))];
        using ForwardState state = model.CreateState(Positions, 1);
        var batch = new TokenBatch(Positions);
        for (int p = 0; p < Positions; p++)
        {
            batch.Add(tokens[p], p, 0, wantLogits: p == Positions - 1);
        }

        model.Forward(batch, cache, state);
        return (model, cache, tokens);
    }

    private static byte[] Saved(KvCache cache, int[] tokens, float[]? scales = null)
    {
        using var stream = new MemoryStream();
        long written = SlotFile.Write(stream, cache, 0, tokens, scales);
        Assert.Equal(stream.Length, written);
        return stream.ToArray();
    }

    [Fact]
    public void Written_ReadsBackTheSameTokensScalesAndRows()
    {
        using IBackend backend = TestBackends.Create("cpu");
        (Qwen2Model model, KvCache cache, int[] tokens) = Filled(backend, DType.BF16);
        using (model)
        using (cache)
        {
            byte[] file = Saved(cache, tokens, [0.5f, 1f]);
            using var stream = new MemoryStream(file);
            SlotFile.Header header = SlotFile.ReadHeader(stream, "slot.bin", cache, model.Config.VocabSize, adapters: 2);
            Assert.Equal(tokens, header.Tokens);
            Assert.Equal([0.5f, 1f], header.AdapterScales!);
            Assert.Equal(file.Length, SlotFile.ReadRows(stream, "slot.bin", header, cache, 1));

            // Saved with two adapters' scales: a model with none (or another count) refuses it.
            using var again = new MemoryStream(file);
            Assert.Contains("saved with 2 LoRA adapters; the model here has 0",
                Assert.Throws<InvalidDataException>(() => SlotFile.ReadHeader(again, "slot.bin", cache, model.Config.VocabSize, adapters: 0)).Message, StringComparison.Ordinal);
            cache.Hold(1, Positions);

            AssertSameRows(cache, Positions);
        }
    }

    /// <summary>Every layer's keys and values of slots 0 and 1, positions [0, <paramref name="count"/>), byte for byte alike.</summary>
    private static void AssertSameRows(KvCache cache, int count)
    {
        int bytes = count * cache.RowBytes;
        for (int layer = 0; layer < cache.Layers; layer++)
        {
            byte[] keys = new byte[bytes], values = new byte[bytes], keysBack = new byte[bytes], valuesBack = new byte[bytes];
            cache.ReadRows(layer, 0, 0, count, keys, values);
            cache.ReadRows(layer, 1, 0, count, keysBack, valuesBack);
            Assert.True(keys.AsSpan().SequenceEqual(keysBack), $"layer {layer}'s keys came back otherwise");
            Assert.True(values.AsSpan().SequenceEqual(valuesBack), $"layer {layer}'s values came back otherwise");
        }
    }

    [Fact]
    public void ASlotLongerThanAChunk_ReadsBackTheSameRows()
    {
        // 1100 positions: three chunks of rows (512 at a time), the last a short one, in each layer.
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory("tiny-qwen2"), backend);
        const int Long = 1100;
        using KvCache cache = model.CreateKvCache(2, Long);
        int[] tokens = [.. Enumerable.Range(0, Long).Select(i => 5 + (i * 7 % 200))];
        using (ForwardState state = model.CreateState(Long, 1))
        {
            var batch = new TokenBatch(Long);
            for (int p = 0; p < Long; p++)
            {
                batch.Add(tokens[p], p, 0, wantLogits: p == Long - 1);
            }

            model.Forward(batch, cache, state);
        }

        byte[] file = Saved(cache, tokens);
        Assert.Equal(32 + (4L * Long) + (2L * cache.Layers * Long * cache.RowBytes), file.Length);
        using var stream = new MemoryStream(file);
        SlotFile.Header header = SlotFile.ReadHeader(stream, "long.bin", cache, model.Config.VocabSize, adapters: 0);
        SlotFile.ReadRows(stream, "long.bin", header, cache, 1);
        cache.Hold(1, Long);
        AssertSameRows(cache, Long);
    }

    public static TheoryData<string, string> Corruptions() => new()
    {
        { "magic", "not a slot file" },
        { "version", "slot file version 2; this build reads version 1" },
        { "layers", "layers is 3; this model's KV cache has 2" },
        { "kvDim", "kvDim is 17; this model's KV cache has 16" },
        { "type", "its keys and values are stored as f16; the cache here stores f32 (--kv-cache-type, QwenModelOptions.KvCacheType)" },
        { "positions", "it holds 33 positions; at most 32 fit here" },
        { "token", "token 3 is {vocab}, not in this model's vocabulary of {vocab}" },
        { "truncated", "bytes; a slot file of 12 positions of 2 layers of 16 f32 values is" },
        { "longer", "bytes; a slot file of 12 positions of 2 layers of 16 f32 values is" },
        { "header", "ends inside its header" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void ForeignOrDamagedFile_IsRefusedNamingWhy(string damage, string message)
    {
        using IBackend backend = TestBackends.Create("cpu");
        (Qwen2Model model, KvCache cache, int[] tokens) = Filled(backend);
        using (model)
        using (cache)
        {
            byte[] file = Saved(cache, tokens);
            Assert.Equal(2, cache.Layers);
            Assert.Equal(16, cache.KvDim);

            // Header: magic 0, version 8, layers 12, kvDim 16, type name 20 (length) 21.. ("f32"), scales count 24, tokens 28.
            byte[] damaged = damage switch
            {
                "magic" => Patched(file, 0, 0x58),
                "version" => Patched(file, 8, 2),
                "layers" => Patched(file, 12, 3),
                "kvDim" => Patched(file, 16, 17),
                "type" => [.. file[..20], 3, .. "f16"u8, .. file[24..]],
                "positions" => Patched(file, 28, 33),
                "token" => Patched(file, 32 + (3 * 4), model.Config.VocabSize),
                "truncated" => file[..^1],
                "longer" => [.. file, 0],
                _ => file[..10],
            };
            using var stream = new MemoryStream(damaged);
            var error = Assert.Throws<InvalidDataException>(() => SlotFile.ReadHeader(stream, "slot.bin", cache, model.Config.VocabSize, adapters: 0));
            Assert.StartsWith("slot.bin: ", error.Message, StringComparison.Ordinal);
            Assert.Contains(message.Replace("{vocab}", $"{model.Config.VocabSize}", StringComparison.Ordinal), error.Message, StringComparison.Ordinal);
        }
    }

    private static byte[] Patched(byte[] file, int at, int value)
    {
        byte[] copy = [.. file];
        if (at == 0)
        {
            copy[0] = (byte)value;
            return copy;
        }

        BinaryPrimitives.WriteInt32LittleEndian(copy.AsSpan(at), value);
        return copy;
    }

    [Fact]
    public void Distance_IsZeroForTheSameRow_AndAboutRootTwoForUnrelatedOnes()
    {
        using IBackend backend = TestBackends.Create("cpu");
        (Qwen2Model model, KvCache cache, int[] tokens) = Filled(backend);
        using (model)
        using (cache)
        {
            byte[] keys = new byte[Positions * cache.RowBytes], values = new byte[keys.Length];
            cache.ReadRows(1, 0, 0, Positions, keys, values);
            Assert.Equal(0, SlotFile.Distance(cache, keys.AsSpan(0, cache.RowBytes), keys.AsSpan(0, cache.RowBytes)));

            // Two random rows of the same size: |a - b| / |a| is near sqrt(2).
            var random = new Random(3);
            float[] a = [.. Enumerable.Range(0, cache.KvDim).Select(_ => (float)random.NextDouble() - 0.5f)];
            float[] b = [.. Enumerable.Range(0, cache.KvDim).Select(_ => (float)random.NextDouble() - 0.5f)];
            double distance = SlotFile.Distance(cache, System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan()), System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.AsSpan()));
            Assert.InRange(distance, 0.9, 2.0);
            Assert.Equal(Positions, tokens.Length);
        }
    }
}
