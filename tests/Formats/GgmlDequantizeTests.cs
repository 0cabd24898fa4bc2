using System.Buffers.Binary;
using LLama.Native;
using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats.Gguf;
using QwenSharp.Numerics;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>
/// The GGUF block types QwenSharp reads by dequantizing: blocks written by hand from the format's definition with
/// their values worked out by hand (edge codes, scale 0, negative scales, the packed 6-bit scales), and llama.cpp
/// as the oracle: its quantize tool writes each type from a random model with k-quant-sized rows, its dequantizer
/// writes the same file back as F32, and our values must equal its bit for bit; the model then gives llama.cpp's
/// logits.
/// </summary>
public sealed class GgmlDequantizeTests
{
    private static byte[] Half(float value) => BitConverter.GetBytes(HalfBits.FromSingle(value));

    [Fact]
    public void Q4_0_IsCodeMinus8TimesD()
    {
        // d = 0.5; qs[0] = 0x0F (value 0: 15 - 8 = 7, value 16: 0 - 8 = -8); qs[1] = 0x8F (value 1: 7, value 17: 0).
        byte[] block = [.. Half(0.5f), 0x0F, 0x8F, .. new byte[14]];
        var values = new float[32];
        LegacyQuantBlocks.DequantizeQ4_0(block, values);

        Assert.Equal(3.5f, values[0]);
        Assert.Equal(-4f, values[16]);
        Assert.Equal(3.5f, values[1]);
        Assert.Equal(0f, values[17]);
        Assert.Equal(-4f, values[2]);
    }

    [Fact]
    public void Q4_1_IsCodeTimesDPlusM()
    {
        byte[] block = [.. Half(0.25f), .. Half(-1f), 0xF0, .. new byte[15]];
        var values = new float[32];
        LegacyQuantBlocks.DequantizeQ4_1(block, values);

        Assert.Equal(-1f, values[0]);
        Assert.Equal(-1f + (15 * 0.25f), values[16]);
        Assert.Equal(-1f, values[31]);
    }

    [Fact]
    public void Q5_TakeTheFifthBitFromQh()
    {
        // qh bit 0 (value 0) and bit 31 (value 31) set; qs[0] low nibble 1, qs[15] high nibble 15.
        byte[] qh = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(qh, 1u | (1u << 31));
        byte[] qs = new byte[16];
        qs[0] = 0x01;
        qs[15] = 0xF0;
        byte[] q50 = [.. Half(2f), .. qh, .. qs];
        byte[] q51 = [.. Half(2f), .. Half(0.5f), .. qh, .. qs];
        var v50 = new float[32];
        var v51 = new float[32];
        LegacyQuantBlocks.DequantizeQ5_0(q50, v50);
        LegacyQuantBlocks.DequantizeQ5_1(q51, v51);

        Assert.Equal((17 - 16) * 2f, v50[0]);
        Assert.Equal((31 - 16) * 2f, v50[31]);
        Assert.Equal(-32f, v50[1]);
        Assert.Equal((17 * 2f) + 0.5f, v51[0]);
        Assert.Equal((31 * 2f) + 0.5f, v51[31]);
        Assert.Equal(0.5f, v51[1]);
    }

    [Fact]
    public void Q4_K_UnpacksTheSixBitScalesAndMins()
    {
        // Sub-block 0: scale 63, min 1 (bytes 0 and 4); sub-block 4: scale 0x3F = 0xF | (0b11 << 4) (byte 8 low nibble, byte 0 top bits),
        // min 0x21 = 0x1 | (0b10 << 4) (byte 8 high nibble, byte 4 top bits).
        byte[] scales = new byte[12];
        scales[0] = 63 | (0b11 << 6);
        scales[4] = 1 | (0b10 << 6);
        scales[8] = 0xF | (0x1 << 4);
        byte[] qs = new byte[128];
        qs[0] = 0x0F;        // value 0 (sub-block 0) code 15
        qs[64] = 0x03;       // value 128 (sub-block 4) code 3
        byte[] block = [.. Half(0.5f), .. Half(0.25f), .. scales, .. qs];
        var values = new float[256];
        KQuantBlocks.DequantizeQ4_K(block, values);

        Assert.Equal((0.5f * 63 * 15) - (0.25f * 1), values[0]);
        Assert.Equal(-0.25f, values[1]);
        Assert.Equal((0.5f * 63 * 3) - (0.25f * 33), values[128]);
        // Sub-block 1 (values 32-63): scale and min 0 in bytes 1 and 5.
        Assert.Equal(0f, values[32]);
    }

    [Fact]
    public void Q5_K_AddsSixteenFromQh()
    {
        byte[] scales = new byte[12];
        scales[0] = 2;
        scales[1] = 3;
        byte[] qh = new byte[32];
        qh[0] = 0b01;        // value 0 (sub-block 0, bit 0)
        qh[1] = 0b10;        // value 33 (sub-block 1, bit 1)
        byte[] qs = new byte[128];
        qs[0] = 0x21;
        qs[1] = 0x40;
        byte[] block = [.. Half(1f), .. Half(0f), .. scales, .. qh, .. qs];
        var values = new float[256];
        KQuantBlocks.DequantizeQ5_K(block, values);

        Assert.Equal(2f * (1 + 16), values[0]);
        Assert.Equal(3f * 2, values[32]);
        Assert.Equal(3f * (4 + 16), values[33]);
        Assert.Equal(0f, values[1]);
    }

    [Fact]
    public void Q6_K_IsSignedScaleTimesCodeMinus32()
    {
        byte[] ql = new byte[128];
        byte[] qh = new byte[64];
        ql[0] = 0xF5;       // value 0: low 5, value 64: high 15
        qh[0] = 0b11_00_00_11; // value 0: +48, value 96: +48
        byte[] scales = new byte[16];
        scales[0] = unchecked((byte)(sbyte)-2);
        scales[4] = 3;
        scales[6] = 1;
        byte[] block = [.. ql, .. qh, .. scales, .. Half(0.5f)];
        var values = new float[256];
        KQuantBlocks.DequantizeQ6_K(block, values);

        Assert.Equal(0.5f * -2 * (5 + 48 - 32), values[0]);
        Assert.Equal(0.5f * 3 * (15 - 32), values[64]);
        Assert.Equal(0.5f * 1 * (0 + 48 - 32), values[96]);
        Assert.Equal(0.5f * -2 * -32, values[1]);
    }

    [Fact]
    public void Q8_K_IsCodeTimesAnF32Scale()
    {
        byte[] block = [.. BitConverter.GetBytes(0.125f), 0x81, 0x7F, .. new byte[254], .. new byte[32]];
        var values = new float[256];
        KQuantBlocks.DequantizeQ8_K(block, values);

        Assert.Equal(-127 * 0.125f, values[0]);
        Assert.Equal(127 * 0.125f, values[1]);
        Assert.Equal(0f, values[2]);
    }

    public static TheoryData<LLamaFtype> LlamaCppTypes() =>
    [
        LLamaFtype.MOSTLY_Q4_0, LLamaFtype.MOSTLY_Q4_1, LLamaFtype.MOSTLY_Q5_0, LLamaFtype.MOSTLY_Q5_1,
        LLamaFtype.MOSTLY_Q4_K_M, LLamaFtype.MOSTLY_Q5_K_M, LLamaFtype.MOSTLY_Q6_K,
    ];

    [SkippableTheory]
    [MemberData(nameof(LlamaCppTypes))]
    public void LlamaCppQuantizedFiles_DequantizeAsLlamaCppDoes_AndGiveItsLogits(LLamaFtype type)
    {
        string quantized = LlamaCpp.Quantize(RandomKQuantModel.Gguf.Value, type);
        string dequantized = LlamaCpp.Quantize(quantized, LLamaFtype.ALL_F32);

        using GgufFile ours = GgufFile.Open(quantized);
        using GgufFile theirs = GgufFile.Open(dequantized);
        var seen = new HashSet<string>();
        foreach (GgufTensorInfo tensor in ours.Tensors.Values)
        {
            if (!GgmlDequantize.Supports(tensor.Type))
            {
                continue;
            }

            seen.Add(GgmlTypes.Name(tensor.Type));
            long count = tensor.Shape.Aggregate(1L, (a, b) => a * b);
            GgmlTypes.TryGetBlock(tensor.Type, out int blockValues, out int blockBytes);
            var values = new float[count];
            unsafe
            {
                GgmlDequantize.Values(tensor.Type, new ReadOnlySpan<byte>((void*)ours.DataOf(tensor), checked((int)(count / blockValues * blockBytes))), values);
                var expected = new ReadOnlySpan<float>((void*)theirs.DataOf(theirs.Tensors[tensor.Name]), checked((int)count));
                for (int i = 0; i < count; i++)
                {
                    Assert.True(BitConverter.SingleToInt32Bits(values[i]) == BitConverter.SingleToInt32Bits(expected[i]),
                        $"{tensor.Name} ({GgmlTypes.Name(tensor.Type)}) value {i}: ours {values[i]}, llama.cpp's {expected[i]}");
                }
            }
        }

        Assert.NotEmpty(seen);
        if (type is LLamaFtype.MOSTLY_Q4_K_M or LLamaFtype.MOSTLY_Q5_K_M)
        {
            Assert.Contains(type == LLamaFtype.MOSTLY_Q4_K_M ? "Q4_K" : "Q5_K", seen);    // the rows are whole super-blocks
        }

        int[] ids = [1, 17, 300, 42, 7, 255, 128, 3];
        float[][] llama = LlamaCpp.Logits(quantized, ids);
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(quantized, backend);
        float[][] mine = Model.ReferenceModelTests.AllPositionLogits(model, ids);
        for (int p = 0; p < ids.Length; p++)
        {
            // llama.cpp multiplies with its activations rounded to 8 bits; we run Q8_0, Q4_0, Q4_K, Q5_K and Q6_K as stored
            // and the others stored again as Q8_0.
            double scale = mine[p].Max(Math.Abs), error = mine[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{type} position {p}: llama.cpp's logits differ from ours by {error:E3} (logits up to {scale:F3}); types {string.Join(", ", seen)}");
        }

        // Decoding one token per step takes the integer path (activations quantized to Q8_K, as llama.cpp's): within the same
        // bound, Q4_0 both through its stored rows and through its repacked panels (as on AMD Zen: PanelDecode).
        foreach (bool panels in new[] { false, true })
        {
            using ThreadOverride<PanelDecode.Switch>.Scope decode = PanelDecode.Assume(panels);
            float[][] stepwise = Model.ReferenceModelTests.OneTokenPerStepLogits(model, ids);
            for (int p = 0; p < ids.Length; p++)
            {
                double scale = stepwise[p].Max(Math.Abs), error = stepwise[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
                Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{type} position {p}, one token per step{(panels ? " through the panels" : "")}: llama.cpp's logits differ from ours by {error:E3}");
            }
        }

        // The GPU (Q4_0 and the k-quants read as stored, each value widened to f32 in its shaders) within the same bound of llama.cpp.
        TestBackends.RequireGpu();
        using IBackend gpu = TestBackends.Create(TestBackends.Gpu);
        using Qwen2Model onGpu = Qwen2Model.Load(quantized, gpu);
        float[][] gpuLogits = Model.ReferenceModelTests.AllPositionLogits(onGpu, ids);
        for (int p = 0; p < ids.Length; p++)
        {
            double scale = gpuLogits[p].Max(Math.Abs), error = gpuLogits[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{type} position {p}: llama.cpp's logits differ from the GPU's by {error:E3}");
        }
    }

    [Fact]
    public void TheCommandLineSaysWhichTensorsWereConvertedAtLoad()
    {
        string gguf = LlamaCpp.Quantize(GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer), LLamaFtype.MOSTLY_Q4_1);

        QwenSharp.Tests.Cli.CliRunner.Result result = QwenSharp.Tests.Cli.CliRunner.RunProcess("generate", "--model", gguf, "--prompt-ids", "1,2,3", "--max-new-tokens", "2", "--greedy");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Q4_1 -> Q8_0); they run at that type's speed and size", result.Stderr, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, GgmlType.Q8_0)]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, GgmlType.Q4_0)]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, GgmlType.Q6_K)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_S, GgmlType.Q4_K)]
    [InlineData(LLamaFtype.MOSTLY_Q5_K_S, GgmlType.Q5_K)]
    public void OurQuantizers_WriteTheBytesLlamaCppsQuantizerWrites(LLamaFtype ftype, GgmlType type)
    {
        // llama.cpp quantizes the F32 model; every tensor it stored as the type must be byte for byte what our quantizer
        // (the one --quantize and qwensharp quantize use) makes of the same F32 values.
        string source = RandomKQuantModel.Gguf.Value;
        string quantized = LlamaCpp.Quantize(source, ftype);
        using GgufFile original = GgufFile.Open(source);
        using GgufFile theirs = GgufFile.Open(quantized);
        QwenSharp.Formats.DType dtype = type switch
        {
            GgmlType.Q8_0 => QwenSharp.Formats.DType.Q8_0,
            GgmlType.Q4_0 => QwenSharp.Formats.DType.Q4_0,
            GgmlType.Q4_K => QwenSharp.Formats.DType.Q4_K,
            GgmlType.Q5_K => QwenSharp.Formats.DType.Q5_K,
            _ => QwenSharp.Formats.DType.Q6_K,
        };
        int compared = 0;
        foreach (GgufTensorInfo tensor in theirs.Tensors.Values.Where(t => t.Type == (int)type))
        {
            GgufTensorInfo input = original.Tensors[tensor.Name];
            Assert.Equal((int)GgmlType.F32, input.Type);
            long count = tensor.Shape.Aggregate(1L, (a, b) => a * b);
            unsafe
            {
                var values = new ReadOnlySpan<float>((void*)original.DataOf(input), checked((int)count));
                byte[] ours = QwenSharp.Formats.TensorValues.FromSingle(values, dtype);
                var expected = new ReadOnlySpan<byte>((void*)theirs.DataOf(tensor), ours.Length);
                int differ = ours.AsSpan().CommonPrefixLength(expected);
                Assert.True(differ == ours.Length, $"{tensor.Name} ({type}): byte {differ} of {ours.Length} differs from llama.cpp's");
            }

            compared++;
        }

        Assert.True(compared > 0, $"llama.cpp stored no tensor as {type}");
    }

    [SkippableTheory]
    [InlineData("q4_k", GgmlType.Q4_K)]
    [InlineData("q5_k", GgmlType.Q5_K)]
    [InlineData("q6_k", GgmlType.Q6_K)]
    public void QuantizeToKQuants_LlamaCppLoadsTheFileAndAgrees(string typeName, GgmlType type)
    {
        // qwensharp quantize --type q4_k|q5_k|q6_k on a model whose rows are whole super-blocks: every matrix in that type,
        // read by llama.cpp with our logits.
        string output = Path.Combine(Fixtures.TempDirectory(), $"random-{typeName}.gguf");
        QwenSharp.Tests.Cli.CliRunner.Result result = QwenSharp.Tests.Cli.CliRunner.Run("quantize", "--model", RandomKQuantModel.Folder.Value, "--type", typeName, "--out", output);
        Assert.True(result.ExitCode == 0, result.Stderr);
        using (GgufFile file = GgufFile.Open(output))
        {
            Assert.All(file.Tensors.Values.Where(t => t.Shape.Length == 2), t => Assert.Equal((int)type, t.Type));
        }

        int[] ids = [1, 17, 300, 42, 7, 255, 128, 3];
        float[][] llama = LlamaCpp.Logits(output, ids);
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(output, backend);
        float[][] mine = Model.ReferenceModelTests.AllPositionLogits(model, ids);
        for (int p = 0; p < ids.Length; p++)
        {
            double scale = mine[p].Max(Math.Abs), error = mine[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{typeName} position {p}: llama.cpp's logits differ from ours by {error:E3}");
        }
    }
}
