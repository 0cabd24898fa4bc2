using System.Buffers.Binary;
using LLama.Native;
using QwenSharp.Backend;
using QwenSharp.Tests.Cli;
using QwenSharp.Formats.Gguf;
using QwenSharp.Numerics;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>
/// GGUF's 1-3-bit i-quants (<see cref="IqBlocks"/>): the lattice tables' values, blocks built by hand from the format's
/// definition, IQ3 and IQ1 stored again as Q6_K with every value kept, and llama.cpp (LLamaSharp) as the oracle: its own
/// dequantization of the same files bit for bit, and its logits for models of each type, on the CPU and the GPU.
/// </summary>
public sealed class IqBlocksTests
{
    public static TheoryData<IqType> Types() => [.. Enum.GetValues<IqType>()];

    [Fact]
    public void Grids_HoldTheFormatsValues()
    {
        // The magnitudes each table's points are made of, and the signs' even count of minus signs.
        for (int i = 0; i < 256; i++)
        {
            Assert.All(IqGrids.Iq2Xxs(i).ToArray(), v => Assert.Contains(v, new byte[] { 8, 25, 43 }));
            Assert.All(IqGrids.Iq3Xxs(i).ToArray(), v => Assert.Contains(v, new byte[] { 4, 12, 20, 28, 36, 44, 52, 62 }));
        }

        for (int i = 0; i < 512; i++)
        {
            Assert.All(IqGrids.Iq2Xs(i).ToArray(), v => Assert.Contains(v, new byte[] { 8, 25, 43 }));
            Assert.All(IqGrids.Iq3S(i).ToArray(), v => Assert.True(v % 2 == 1 && v <= 15, $"IQ3_S point {i}: {v}"));
        }

        for (int i = 0; i < 1024; i++)
        {
            Assert.All(IqGrids.Iq2S(i).ToArray(), v => Assert.Contains(v, new byte[] { 8, 25, 43 }));
        }

        for (int i = 0; i < 2048; i++)
        {
            Assert.All(IqGrids.Iq1S(i).ToArray(), v => Assert.InRange(v, -1, 1));
        }

        for (int i = 0; i < 128; i++)
        {
            Assert.Equal(0, int.PopCount(IqGrids.Signs(i)) % 2);
            Assert.Equal(i, IqGrids.Signs(i) & 127);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => IqGrids.Iq3S(512).ToArray());
    }

    [Fact]
    public void Iq3_S_IsScaleTimesPointTimesSign()
    {
        // d = 2, the first 32 values' scale nibble 3 (× 7); group 0 takes points 5 and 300 (ninth bit from qh), the sign
        // byte 0b1000_0001 makes values 0 and 7 negative. The rest zero bytes: point 0, scale 1 + 0.
        byte[] block = new byte[110];
        BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(2f));
        block[2] = 5;
        block[3] = 300 & 255;
        block[2 + 64] = 0b10;                    // qh[0] bit 1: the ninth bit of group 0's second point
        block[2 + 64 + 8] = 0b1000_0001;
        block[2 + 64 + 8 + 32] = 3;
        var values = new float[256];
        IqBlocks.Dequantize(IqType.Iq3S, block, values);

        ReadOnlySpan<byte> first = IqGrids.Iq3S(5), second = IqGrids.Iq3S(300);
        for (int j = 0; j < 4; j++)
        {
            Assert.Equal((j == 0 ? -1 : 1) * 14f * first[j], values[j]);
            Assert.Equal((j == 3 ? -1 : 1) * 14f * second[j], values[4 + j]);
        }

        // Group 8 (the second 32): scale nibble 0, so d × 1; point 0, no signs.
        Assert.Equal(2f * IqGrids.Iq3S(0)[0], values[32]);
    }

    [Fact]
    public void Iq1_M_IsScaleTimesPointPlusDelta_WithTheF16ScaleInTheScalesTopNibbles()
    {
        // d = 0.5 (f16 0x3800) spread over the four 16-bit words' top nibbles; the first 16 values' 3-bit scale 2 (× 5), the
        // next 16's 1 (× 3); group 0 takes point 1 + (1 << 8) (high bits from qh[0]'s low three) with delta -1/8 (bit 3),
        // group 2 point 0 with delta +1/8.
        byte[] block = new byte[56];
        ushort d = HalfBits.FromSingle(0.5f);
        ushort[] words = [(ushort)(((d & 0xF) << 12) | 2 | (1 << 3)), (ushort)(((d >> 4) & 0xF) << 12), (ushort)(((d >> 8) & 0xF) << 12), (ushort)(((d >> 12) & 0xF) << 12)];
        for (int i = 0; i < 4; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(48 + (2 * i)), words[i]);
        }

        block[0] = 1;
        block[32] = 0b1001;
        var values = new float[256];
        IqBlocks.Dequantize(IqType.Iq1M, block, values);

        ReadOnlySpan<sbyte> point = IqGrids.Iq1S(1 + 256), zero = IqGrids.Iq1S(0);
        for (int j = 0; j < 8; j++)
        {
            Assert.Equal(0.5f * 5 * (point[j] - 0.125f), values[j]);
            Assert.Equal(0.5f * 3 * (zero[j] + 0.125f), values[16 + j]);
        }
    }

    [Fact]
    public void Iq2_XXS_IsScaleTimesPointTimesSign()
    {
        // d = 4, the first 32's scale 5: 4 × 5.5 / 4 = 5.5; group 1 takes point 77 and sign bits 0b0000111, the eighth then
        // set for an even count of minus signs: values 8, 9, 10 and 15 negative.
        byte[] block = new byte[66];
        BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(4f));
        block[2 + 1] = 77;
        BinaryPrimitives.WriteUInt32LittleEndian(block.AsSpan(2 + 4), (5u << 28) | (0b0000111u << 7));
        var values = new float[256];
        IqBlocks.Dequantize(IqType.Iq2Xxs, block, values);

        ReadOnlySpan<byte> point = IqGrids.Iq2Xxs(77);
        for (int j = 0; j < 8; j++)
        {
            Assert.Equal((j is 0 or 1 or 2 or 7 ? -1 : 1) * 5.5f * point[j], values[8 + j]);
        }
    }

    [Theory]
    [InlineData(IqType.Iq3Xxs)]
    [InlineData(IqType.Iq3S)]
    [InlineData(IqType.Iq1S)]
    [InlineData(IqType.Iq1M)]
    public void ToQ6_K_KeepsEveryValue(IqType type)
    {
        // Random super-blocks with scales from 2^-11 up (negative ones too): as Q6_K, every value the same bits.
        const int Blocks = 64;
        byte[] blocks = RandomBlocks(type, Blocks, new Random(7), [1f / 2048, -0.75f, 3e-3f, 12f, -1f / 2048]);
        var q6 = new byte[Blocks * 210];
        IqBlocks.ToQ6_K(type, blocks, q6);

        var expected = new float[Blocks * 256];
        var actual = new float[Blocks * 256];
        IqBlocks.Dequantize(type, blocks, expected);
        KQuantBlocks.DequantizeQ6_K(q6, actual);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{type} value {i}: {actual[i]} as Q6_K, {expected[i]} as stored");
        }
    }

    [Fact]
    public void ToQ6_K_ASmallerScale_IsRoundedOnce()
    {
        // An IQ3_XXS scale whose half is not an f16 (the smallest normal f16 and one unit more; its half a subnormal): each
        // value within 2^-10 of its own, relatively (the half has ten bits).
        byte[] blocks = RandomBlocks(IqType.Iq3Xxs, 8, new Random(3), [HalfBits.ToSingle(0x0401), -HalfBits.ToSingle(0x0403)]);
        var q6 = new byte[8 * 210];
        IqBlocks.ToQ6_K(IqType.Iq3Xxs, blocks, q6);
        var expected = new float[8 * 256];
        var actual = new float[8 * 256];
        IqBlocks.Dequantize(IqType.Iq3Xxs, blocks, expected);
        KQuantBlocks.DequantizeQ6_K(q6, actual);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= Math.Abs(expected[i]) / 1024, $"value {i}: {actual[i]} as Q6_K, {expected[i]} as stored");
        }

        Assert.Throws<ArgumentException>(() => IqBlocks.ToQ6_K(IqType.Iq2S, new byte[82], new byte[210]));
    }

    [SkippableTheory]
    [MemberData(nameof(Types))]
    public void RandomBlockFiles_DequantizeAsLlamaCppDoes_AndGiveItsLogits(IqType type)
    {
        // Every matrix but the embedding and LM head (kept F32) random blocks of the type, written by our GGUF writer; llama.cpp
        // (it quantizes IQ2 and IQ1 only with an importance matrix, so they come from no quantizer here) reads the file too.
        GgmlType ggml = GgmlOf(type);
        string gguf = Path.Combine(Fixtures.TempDirectory(), $"random-{ggml}.gguf");
        var random = new Random(11 + (int)type);
        QwenSharp.GgufExport.Write(RandomKQuantModel.Folder.Value, gguf, (name, tensor) => tensor.Shape.Length == 2 && name.StartsWith("blk.", StringComparison.Ordinal)
            ? (ggml, RandomBlocks(type, checked((int)(tensor.Shape[0] * tensor.Shape[1] / 256)), random, ScalesOf(type)))
            : QwenSharp.GgufExport.Encode(tensor, null));

        // llama.cpp's own dequantization (to an F32 file), value for value.
        string dequantized = LlamaCpp.Quantize(gguf, LLamaFtype.ALL_F32);
        using (GgufFile ours = GgufFile.Open(gguf))
        using (GgufFile theirs = GgufFile.Open(dequantized))
        {
            GgufTensorInfo[] iq = [.. ours.Tensors.Values.Where(t => t.Type == (int)ggml)];
            Assert.Equal(2 * 7, iq.Length);
            foreach (GgufTensorInfo tensor in iq)
            {
                long count = tensor.Shape.Aggregate(1L, (a, b) => a * b);
                var values = new float[count];
                unsafe
                {
                    GgmlDequantize.Values(tensor.Type, new ReadOnlySpan<byte>((void*)ours.DataOf(tensor), checked((int)tensor.ByteLength)), values);
                    var expected = new ReadOnlySpan<float>((void*)theirs.DataOf(theirs.Tensors[tensor.Name]), checked((int)count));
                    for (int i = 0; i < count; i++)
                    {
                        Assert.True(BitConverter.SingleToInt32Bits(values[i]) == BitConverter.SingleToInt32Bits(expected[i]),
                            $"{tensor.Name} ({ggml}) value {i}: ours {values[i]}, llama.cpp's {expected[i]}");
                    }
                }
            }
        }

        // The model's logits against llama.cpp's, on the CPU and the GPU; IQ3 and IQ1 stored again without loss, IQ2 quantized again.
        int[] ids = [1, 17, 300, 42, 7, 255, 128, 3];
        float[][] llama = LlamaCpp.Logits(gguf, ids);
        foreach (string backendName in new[] { "cpu", TestBackends.Gpu })
        {
            if (backendName != "cpu")
            {
                TestBackends.RequireGpu();
            }

            using IBackend backend = TestBackends.Create(backendName);
            using Qwen2Model model = Qwen2Model.Load(gguf, backend);
            Assert.Contains(IqBlocks.FitsQ6_K(type) ? $"stored again at load as a type that holds every value (14 {ggml} -> Q6_K)" : $"dequantized at load (14 {ggml} -> Q8_0)",
                model.LoadNote, StringComparison.Ordinal);
            Assert.Contains((ggml.ToString(), 14), model.FileTensorTypes!);
            float[][] mine = Model.ReferenceModelTests.AllPositionLogits(model, ids);
            for (int p = 0; p < ids.Length; p++)
            {
                double scale = mine[p].Max(Math.Abs), error = mine[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
                Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{ggml} on {backendName}, position {p}: llama.cpp's logits differ from ours by {error:E3} (logits up to {scale:F3})");
            }
        }
    }

    /// <summary><c>info</c> names a GGUF file's types as stored, beside those its weights run as.</summary>
    [Fact]
    public void Info_ListsTheTypesStoredInTheFile()
    {
        string gguf = Path.Combine(Fixtures.TempDirectory(), "random-IQ3_S.gguf");
        var random = new Random(5);
        QwenSharp.GgufExport.Write(RandomKQuantModel.Folder.Value, gguf, (name, tensor) => tensor.Shape.Length == 2 && name.StartsWith("blk.", StringComparison.Ordinal)
            ? (GgmlType.IQ3_S, RandomBlocks(IqType.Iq3S, checked((int)(tensor.Shape[0] * tensor.Shape[1] / 256)), random, ScalesOf(IqType.Iq3S)))
            : QwenSharp.GgufExport.Encode(tensor, null));

        CliRunner.Result json = CliRunner.Run("info", "--model", gguf, "--json");
        CliRunner.Result text = CliRunner.Run("info", "--model", gguf);

        Assert.Equal(0, json.ExitCode);
        Assert.Equal(14, json.Json.GetProperty("file_dtypes").GetProperty("IQ3_S").GetInt32());
        Assert.False(json.Json.GetProperty("dtypes").TryGetProperty("IQ3_S", out _));
        Assert.Equal(14, json.Json.GetProperty("dtypes").GetProperty("Q6_K").GetInt32());
        Assert.Contains("IQ3_S (14 tensors)", Assert.Single(text.Stdout.Split('\n'), l => l.StartsWith("in the file", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    private static GgmlType GgmlOf(IqType type) => type switch
    {
        IqType.Iq2Xxs => GgmlType.IQ2_XXS,
        IqType.Iq2Xs => GgmlType.IQ2_XS,
        IqType.Iq2S => GgmlType.IQ2_S,
        IqType.Iq3Xxs => GgmlType.IQ3_XXS,
        IqType.Iq3S => GgmlType.IQ3_S,
        IqType.Iq1S => GgmlType.IQ1_S,
        _ => GgmlType.IQ1_M,
    };

    /// <summary>Super-block scales that make weights of about ±0.05 at most, as a model's.</summary>
    private static float[] ScalesOf(IqType type) => type switch
    {
        IqType.Iq2Xxs or IqType.Iq2Xs or IqType.Iq2S => [3e-4f, -2e-4f],
        IqType.Iq3Xxs or IqType.Iq3S => [1.25e-4f, -2e-4f],
        _ => [3e-3f, -2e-3f],
    };

    /// <summary>Random super-blocks of <paramref name="type"/>, their f16 scales taken in turn from <paramref name="scales"/>.</summary>
    private static byte[] RandomBlocks(IqType type, int count, Random random, float[] scales)
    {
        int bytes = IqBlocks.Bytes(type);
        var blocks = new byte[count * bytes];
        random.NextBytes(blocks);
        for (int b = 0; b < count; b++)
        {
            Span<byte> block = blocks.AsSpan(b * bytes, bytes);
            ushort d = HalfBits.FromSingle(scales[b % scales.Length]);
            if (type == IqType.Iq1M)
            {
                // IQ1_M keeps its scale's f16 bits in the top nibbles of its four scale words.
                for (int i = 0; i < 4; i++)
                {
                    ushort word = BinaryPrimitives.ReadUInt16LittleEndian(block[(48 + (2 * i))..]);
                    BinaryPrimitives.WriteUInt16LittleEndian(block[(48 + (2 * i))..], (ushort)((word & 0x0FFF) | (((d >> (4 * i)) & 0xF) << 12)));
                }
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(block, d);
            }
        }

        return blocks;
    }
}
