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
    public void Iq4_XS_IsDTimesSubBlockScaleLess32TimesTheTableValue()
    {
        // d = 0.5. Sub-block 0: scales_l[0] low nibble 0x3, scales_h bits 0-1 = 2: ls = 0x23 = 35, scale 3. Sub-block 1:
        // scales_l[0] high nibble 0x0, scales_h bits 2-3 = 0: ls 0, scale -32. Sub-block 7: scales_l[3] high nibble 0xF,
        // scales_h bits 14-15 = 3: ls 63, scale 31. qs[0] = 0xF0: value 0 is table[0] = -127, value 16 table[15] = 113;
        // qs[16] (sub-block 1's first byte) = 0x08: value 32 is table[8] = 1, value 48 table[0] = -127; qs[127] = 0x7E:
        // value 239 (sub-block 7, j 15) table[14] = 89, value 255 table[7] = -10.
        byte[] block = new byte[136];
        Half(0.5f).CopyTo(block, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(2), (ushort)(2 | (3 << 14)));
        block[4] = 0x03;
        block[7] = 0xF0;
        block[8] = 0xF0;
        block[8 + 16] = 0x08;
        block[8 + 127] = 0x7E;
        var values = new float[256];
        Iq4XsBlocks.Dequantize(block, values);

        Assert.Equal(0.5f * 3 * -127, values[0]);
        Assert.Equal(0.5f * 3 * 113, values[16]);
        Assert.Equal(0.5f * 3 * -127, values[1]);    // qs[1] = 0: table[0]
        Assert.Equal(0.5f * -32 * 1, values[32]);
        Assert.Equal(0.5f * -32 * -127, values[48]);
        Assert.Equal(0.5f * 31 * 89, values[239]);
        Assert.Equal(0.5f * 31 * -10, values[255]);
        Assert.Equal(0.5f * (0 - 32) * -127, values[64]);    // sub-block 2: ls 0
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
        LLamaFtype.MOSTLY_Q4_K_M, LLamaFtype.MOSTLY_Q5_K_M, LLamaFtype.MOSTLY_Q6_K, LLamaFtype.MOSTLY_Q3_K_M, LLamaFtype.MOSTLY_IQ4_NL, LLamaFtype.MOSTLY_Q2_K, LLamaFtype.MOSTLY_IQ4_XS,
        LLamaFtype.MOSTLY_IQ3_S,    // (its MOSTLY_IQ3_XXS wants an importance matrix: IqBlocksTests write those blocks themselves)
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
        string? expectedType = type switch
        {
            LLamaFtype.MOSTLY_Q4_K_M => "Q4_K",    // the rows are whole super-blocks
            LLamaFtype.MOSTLY_Q5_K_M => "Q5_K",
            LLamaFtype.MOSTLY_Q3_K_M => "Q3_K",
            LLamaFtype.MOSTLY_IQ4_NL => "IQ4_NL",
            LLamaFtype.MOSTLY_Q2_K => "Q2_K",
            LLamaFtype.MOSTLY_IQ4_XS => "IQ4_XS",
            LLamaFtype.MOSTLY_IQ3_S => "IQ3_S",
            _ => null,
        };
        if (expectedType is not null)
        {
            Assert.Contains(expectedType, seen);
        }

        int[] ids = [1, 17, 300, 42, 7, 255, 128, 3];
        float[][] llama = LlamaCpp.Logits(quantized, ids);
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(quantized, backend);
        float[][] mine = Model.ReferenceModelTests.AllPositionLogits(model, ids);
        if (type == LLamaFtype.MOSTLY_IQ4_NL)
        {
            // Multiplied as stored where the CPU has vpdpbusd (a decode step reads the file's bytes, and no note of it), else
            // stored again as Q8_0 without loss, and the command line says so; nothing dequantized either way.
            if (Iq4NlRows.Pays(KernelPaths.Default))
            {
                Assert.DoesNotContain("IQ4_NL", model.LoadNote ?? "", StringComparison.Ordinal);
                GgufTensorInfo[] read = [.. ours.Tensors.Values.Where(t => t.Shape.Length == 2 && t.Name != "token_embd.weight")];
                Assert.Contains(read, t => t.Type == (int)GgmlType.IQ4_NL);
                Assert.Equal(read.Sum(t => t.ByteLength), model.DecodeStepBytes);
            }
            else
            {
                Assert.Contains("IQ4_NL -> Q8_0", model.LoadNote, StringComparison.Ordinal);
            }

            Assert.DoesNotContain("dequantized", model.LoadNote ?? "", StringComparison.Ordinal);
        }

        if (type == LLamaFtype.MOSTLY_Q3_K_M)
        {
            // Q3_K is multiplied as stored: no note of it, and a decode step reads the file's bytes, not Q6_K's.
            Assert.DoesNotContain("Q3_K", model.LoadNote ?? "", StringComparison.Ordinal);
            GgufTensorInfo[] read = [.. ours.Tensors.Values.Where(t => t.Shape.Length == 2 && t.Name != "token_embd.weight")];
            Assert.Contains(read, t => t.Type == (int)GgmlType.Q3_K);
            Assert.Equal(read.Sum(t => t.ByteLength), model.DecodeStepBytes);
        }

        for (int p = 0; p < ids.Length; p++)
        {
            // llama.cpp multiplies with its activations rounded to 8 bits; so do we, every type holding the file's values
            // (Q5_0 in pairs or widened to Q8_0, IQ4_NL as stored or widened, Q4_1 and Q5_1 as Q8_0 codes and minimums, Q2_K,
            // Q3_K and IQ4_XS as stored).
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

        if (type is LLamaFtype.MOSTLY_Q4_K_M or LLamaFtype.MOSTLY_Q5_K_M && System.Runtime.Intrinsics.X86.Avx2.IsSupported)
        {
            // Q4_K and Q5_K decode from their rows as stored and from their paired rows (PairedNibbleRows: the choice made at
            // load), each within the same bound of llama.cpp.
            foreach (bool pairs in new[] { false, true })
            {
                using ThreadOverride<PairedNibbleRows.Switch>.Scope choice = PairedNibbleRows.Assume(pairs);
                using IBackend pairedBackend = TestBackends.Create("cpu");
                using Qwen2Model pairedModel = Qwen2Model.Load(quantized, pairedBackend);
                float[][] stepwise = Model.ReferenceModelTests.OneTokenPerStepLogits(pairedModel, ids);
                for (int p = 0; p < ids.Length; p++)
                {
                    double scale = stepwise[p].Max(Math.Abs), error = stepwise[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
                    Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{type} position {p}, one token per step, {(pairs ? "paired" : "as stored")}: llama.cpp's logits differ from ours by {error:E3}");
                }
            }
        }

        if (seen.Contains("IQ4_NL"))
        {
            // IQ4_NL (IQ4_NL files; IQ4_XS, Q3_K_M and Q2_K ones where rows are not whole super-blocks) both as stored (where the
            // CPU has vpdpbusd: Iq4NlRows) and widened to Q8_0, prompt and one token a step, each within the same bound.
            var stepBytes = new Dictionary<bool, long>();
            foreach (bool asStored in Iq4NlRows.Pays(KernelPaths.Default) ? new[] { true, false } : [false])
            {
                using ThreadOverride<Iq4NlRows.Switch>.Scope choice = Iq4NlRows.Assume(asStored);
                using IBackend iq4Backend = TestBackends.Create("cpu");
                using Qwen2Model iq4Model = Qwen2Model.Load(quantized, iq4Backend);
                stepBytes[asStored] = iq4Model.DecodeStepBytes;
                foreach (float[][] logits in new[] { Model.ReferenceModelTests.AllPositionLogits(iq4Model, ids), Model.ReferenceModelTests.OneTokenPerStepLogits(iq4Model, ids) })
                {
                    for (int p = 0; p < ids.Length; p++)
                    {
                        double scale = logits[p].Max(Math.Abs), error = logits[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
                        Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{type} position {p}, IQ4_NL {(asStored ? "as stored" : "widened")}: llama.cpp's logits differ from ours by {error:E3}");
                    }
                }
            }

            // As stored, a step reads 18 bytes a block of those matrices against Q8_0's 34.
            Assert.True(!stepBytes.ContainsKey(true) || stepBytes[true] < stepBytes[false], $"decode step bytes as stored {stepBytes.GetValueOrDefault(true)}, widened {stepBytes[false]}");
        }

        // The GPU (Q4_0 and the k-quants, Q3_K included, read as stored, each value widened to f32 in its shaders) within the same bound of llama.cpp.
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

    [SkippableTheory]
    [InlineData(LLamaFtype.MOSTLY_Q5_0, GgmlType.Q5_0)]
    [InlineData(LLamaFtype.MOSTLY_Q4_1, GgmlType.Q4_1)]
    [InlineData(LLamaFtype.MOSTLY_Q5_1, GgmlType.Q5_1)]
    public void Q5_0Q4_1AndQ5_1Files_KeepEveryValueExactly_NothingRequantized(LLamaFtype ftype, GgmlType type)
    {
        // Q5_0 (what llama.cpp's Q4_K_M stores for rows that are not whole super-blocks, such as Qwen2.5-0.5B's 896-wide
        // ones) is stored again in pairs of blocks where the CPU multiplies those (Q5_0Pairs: GFNI, and integer Q8_0 panels
        // for several tokens), else widened to Q8_0 without loss; Q5_1 (Q5_K_M's for those rows) and Q4_1 become the Q8_0
        // matrix of their codes and their block minimums. No load note (nothing requantized); every value of every such
        // matrix the CPU multiplies equal to the file's (llama.cpp's quantizer wrote it) bit for bit; a decode step reads the
        // pairs' bytes (the file's), or the Q8_0 ones and the minimums. Run both ways where the CPU has the pairs' kernel.
        // (The logits against llama.cpp's, on every path and the GPU: LlamaCppQuantizedFiles_DequantizeAsLlamaCppDoes_AndGiveItsLogits.)
        foreach (bool pairs in type is GgmlType.Q5_0 or GgmlType.Q5_1 && QwenSharp.Cpu.Kernels.Q5_0Pairs.Pays(KernelPaths.Default) ? new[] { true, false } : [false])
        {
            using (QwenSharp.Cpu.Kernels.Q5_0Pairs.Assume(pairs))
            {
                KeepsEveryValueExactly(ftype, type, pairs);
            }
        }
    }

    private static void KeepsEveryValueExactly(LLamaFtype ftype, GgmlType type, bool pairs)
    {
        string quantized = LlamaCpp.Quantize(RandomKQuantModel.Gguf.Value, ftype);
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(quantized, backend);
        Assert.Null(model.LoadNote);

        using GgufFile file = GgufFile.Open(quantized);
        GgufTensorInfo[] stored = [.. file.Tensors.Values.Where(t => t.Type == (int)type)];
        Assert.NotEmpty(stored);
        Assert.True(GgmlTypes.TryGetDType((int)type, out QwenSharp.Formats.DType dtype));
        int minimumBytes = type == GgmlType.Q5_0 ? 0 : 4, blockBytes = pairs ? 22 : 34;    // pairs: Q5_0's bytes (of a Q5_1 matrix's codes and scales)
        long matrixBytes = file.Tensors.Values.Where(t => t.Shape.Length == 2 && t.Name != "token_embd.weight")
            .Sum(t => t.Type == (int)type ? (t.Shape[0] * t.Shape[1] / 32 * blockBytes) + ((t.Shape[0] + 15) / 16 * 16 * t.Shape[1] / 32 * minimumBytes) : GgmlTypes.TryGetBlock(t.Type, out int values, out int bytes) ? t.Shape[0] * t.Shape[1] / values * bytes : 0);
        Assert.Equal(matrixBytes, model.DecodeStepBytes);
        foreach (GgufTensorInfo tensor in stored)
        {
            long count = tensor.Shape[0] * tensor.Shape[1];
            var view = new QwenSharp.Formats.TensorView(tensor.Name, quantized, dtype, tensor.Shape, file.DataOf(tensor));
            using DeviceWeight weight = backend.Upload(view);
            var cpu = QwenSharp.Cpu.CpuWeight.Of(weight);
            Assert.Equal(pairs ? QwenSharp.Formats.DType.Q5_0 : QwenSharp.Formats.DType.Q8_0, cpu.StoredType);
            Assert.Equal(type != GgmlType.Q5_0, cpu.HasBlockMinimums);
            var expected = new float[count];
            var actual = new float[count];
            unsafe
            {
                QwenSharp.Formats.TensorValues.ToSingle(view).CopyTo(expected, 0);
                var held = new ReadOnlySpan<byte>(cpu.Data, checked((int)(count / 32 * blockBytes)));
                if (pairs)
                {
                    QwenSharp.Cpu.Kernels.Q5_0Pairs.Dequantize(held, actual, cpu.HasBlockMinimums ? 0 : 16);
                }
                else
                {
                    Q8_0Blocks.Dequantize(held, actual);
                }

                for (int i = 0; i < count && cpu.HasBlockMinimums; i++)
                {
                    actual[i] += cpu.BlockMinimum((int)(i / tensor.Shape[1]), (int)(i % tensor.Shape[1] / 32));
                }
            }

            for (int i = 0; i < count; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{tensor.Name} value {i}: {actual[i]}, the file's {expected[i]}");
            }
        }
    }

    [Fact]
    public void Iq4_NLToQ8_0_KeepsEveryValueBitForBit()
    {
        // Random bytes (every code), then scales of both signs, zero, negative zero, subnormal and large; each widened block
        // dequantized by Q8_0's dequantizer must give the stored block's values (whose dequantizer is tested against
        // llama.cpp's in LlamaCppQuantizedFiles_DequantizeAsLlamaCppDoes...).
        float[] scales = [0.5f, -0.25f, 0f, -0f, 1e-3f, -7.5f, 3e-7f, 60000f];
        var random = new Random(3);
        var nl = new byte[scales.Length * 8 * WidenedBlocks.Iq4NlBytes];
        random.NextBytes(nl);
        for (int b = 0; b < scales.Length; b++)
        {
            for (int k = 0; k < 8; k++)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(nl.AsSpan(((b * 8) + k) * WidenedBlocks.Iq4NlBytes), HalfBits.FromSingle(scales[(b + k) % scales.Length]));
            }
        }

        var q8 = new byte[scales.Length * 8 * 34];
        WidenedBlocks.WidenIq4_NLToQ8_0(nl, q8);
        var expected = new float[scales.Length * 256];
        var actual = new float[scales.Length * 256];
        WidenedBlocks.DequantizeIq4_NL(nl, expected);
        Q8_0Blocks.Dequantize(q8, actual);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"IQ4_NL value {i}: {actual[i]}, stored {expected[i]}");
        }
    }

    [Fact]
    public void Q3_K_HandWrittenBlock_IsDTimesScaleMinus32TimesCode()
    {
        // d = 0.5. Scale 0 (value 0-15): low nibble of byte 96 = 0x1, top bits of byte 104 (bits 0-1) = 2: 0x21 = 33, so
        // 33 - 32 = 1. Scale 8 (values 128-143): high nibble of byte 96 = 0xF, top bits from byte 104 bits 4-5 = 0: 15 - 32.
        // Value 0: qs[0] bits 0-1 = 3, hmask[0] bit 0 set: code 3. Value 128: qs[32] bits 0-1 = 1, hmask[0] bit 4 clear:
        // code 1 - 4 = -3. Value 32 (j = 1, scale 2 = 0 - 32): qs[0] bits 2-3 = 0, hmask[0] bit 1 clear: -4.
        var block = new byte[110];
        block[0] = 0x01;               // hmask[0]: bit 0 set (value 0), bit 1 (value 32) and bit 4 (value 128) clear
        block[32] = 0x03;              // qs[0]
        block[64] = 0x01;              // qs[32]
        block[96] = 0xF1;              // scales 0 (low nibble) and 8 (high nibble)
        block[104] = 0x02;             // scale 0's top bits
        BinaryPrimitives.WriteUInt16LittleEndian(block.AsSpan(108), HalfBits.FromSingle(0.5f));
        var values = new float[256];
        WidenedBlocks.DequantizeQ3_K(block, values);

        Assert.Equal(0.5f * 1 * 3, values[0]);
        Assert.Equal(0.5f * (15 - 32) * -3, values[128]);
        Assert.Equal(0.5f * (0 - 32) * -4, values[32]);
    }

    [Fact]
    public void Q5_0WidenedToQ8_0_KeepsEveryValueBitForBit()
    {
        // Every code of both halves with and without its fifth bit, scales of both signs, zero and negative zero.
        const int blocks = 40;
        var random = new Random(5);
        var q5 = new byte[blocks * 22];
        random.NextBytes(q5);
        float[] scales = [0.5f, -0.25f, 0f, -0f, 1e-3f, -7.5f];
        for (int b = 0; b < blocks; b++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(q5.AsSpan(b * 22), HalfBits.FromSingle(scales[b % scales.Length]));
        }

        var q8 = new byte[blocks * 34];
        LegacyQuantBlocks.WidenQ5_0ToQ8_0(q5, q8);

        var expected = new float[blocks * 32];
        var actual = new float[blocks * 32];
        LegacyQuantBlocks.DequantizeQ5_0(q5, expected);
        Q8_0Blocks.Dequantize(q8, actual);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"value {i}: {actual[i]}, expected {expected[i]}");
        }
    }

    [Fact]
    public void Tq2_0Files_AreRefusedNamingTheTensorAndType()
    {
        // TQ2_0 (BitNet's ternary type, no Qwen2 model's) has no kernels and is not read: one line, exit 2, naming the first
        // such tensor met and the types QwenSharp reads.
        string gguf = Path.Combine(Fixtures.TempDirectory(), "random-tq2_0.gguf");
        var random = new Random(2);
        QwenSharp.GgufExport.Write(RandomKQuantModel.Folder.Value, gguf, (name, tensor) => name == "blk.0.ffn_up.weight"
            ? (GgmlType.TQ2_0, RandomBytes(random, checked((int)(tensor.Shape[0] * tensor.Shape[1] / 256 * 66))))
            : QwenSharp.GgufExport.Encode(tensor, null));

        QwenSharp.Tests.Cli.CliRunner.Result result = QwenSharp.Tests.Cli.CliRunner.Run("generate", "--model", gguf, "--prompt-ids", "1,2", "--max-new-tokens", "1");

        Assert.Equal(2, result.ExitCode);
        string line = Assert.Single(result.ErrorLines);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(line, @"tensor 'blk\.0\.ffn_up\.weight' is TQ2_0; QwenSharp reads F32, .* Q2_K, Q3_K, .* IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL and IQ4_XS tensors"), line);
    }

    private static byte[] RandomBytes(Random random, int count)
    {
        var bytes = new byte[count];
        random.NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public void TheCommandLineSaysWhichTensorsWereConvertedAtLoad()
    {
        // Every matrix type llama.cpp writes now runs as stored; a quantized norm (which no kernel reads quantized) is
        // still dequantized at load, and the command line says so.
        string gguf = Path.Combine(Fixtures.TempDirectory(), "tiny-qwen2-q4_1-norm.gguf");
        QwenSharp.GgufExport.Write(TestTokenizers.TinyQwenWithTokenizer, gguf, (ggufName, tensor) => ggufName == "blk.0.attn_norm.weight"
            ? (GgmlType.Q4_1, QwenSharp.Formats.TensorValues.FromSingle(QwenSharp.Formats.TensorValues.ToSingle(tensor), QwenSharp.Formats.DType.Q4_1))
            : QwenSharp.GgufExport.Encode(tensor, null));

        QwenSharp.Tests.Cli.CliRunner.Result result = QwenSharp.Tests.Cli.CliRunner.RunProcess("generate", "--model", gguf, "--prompt-ids", "1,2,3", "--max-new-tokens", "2", "--greedy");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("(1 Q4_1 -> F32); they run at that type's speed and size", result.Stderr, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData(LLamaFtype.MOSTLY_Q8_0, GgmlType.Q8_0)]
    [InlineData(LLamaFtype.MOSTLY_Q4_0, GgmlType.Q4_0)]
    [InlineData(LLamaFtype.MOSTLY_Q5_0, GgmlType.Q5_0)]
    [InlineData(LLamaFtype.MOSTLY_Q4_1, GgmlType.Q4_1)]
    [InlineData(LLamaFtype.MOSTLY_Q5_1, GgmlType.Q5_1)]
    [InlineData(LLamaFtype.MOSTLY_Q6_K, GgmlType.Q6_K)]
    [InlineData(LLamaFtype.MOSTLY_Q4_K_S, GgmlType.Q4_K)]
    [InlineData(LLamaFtype.MOSTLY_Q5_K_S, GgmlType.Q5_K)]
    [InlineData(LLamaFtype.MOSTLY_Q2_K, GgmlType.Q2_K)]
    [InlineData(LLamaFtype.MOSTLY_Q3_K_S, GgmlType.Q3_K)]
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
            GgmlType.Q5_0 => QwenSharp.Formats.DType.Q5_0,
            GgmlType.Q4_1 => QwenSharp.Formats.DType.Q4_1,
            GgmlType.Q5_1 => QwenSharp.Formats.DType.Q5_1,
            GgmlType.Q4_K => QwenSharp.Formats.DType.Q4_K,
            GgmlType.Q5_K => QwenSharp.Formats.DType.Q5_K,
            GgmlType.Q2_K => QwenSharp.Formats.DType.Q2_K,
            GgmlType.Q3_K => QwenSharp.Formats.DType.Q3_K,
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

    [Theory]
    [InlineData(QwenSharp.Formats.DType.Q4_K, 896, QwenSharp.Formats.DType.Q5_0)]
    [InlineData(QwenSharp.Formats.DType.Q5_K, 896, QwenSharp.Formats.DType.Q5_1)]
    [InlineData(QwenSharp.Formats.DType.Q6_K, 896, QwenSharp.Formats.DType.Q8_0)]
    [InlineData(QwenSharp.Formats.DType.Q4_K, 4864, QwenSharp.Formats.DType.Q4_K)]
    [InlineData(QwenSharp.Formats.DType.Q4_K, 100, QwenSharp.Formats.DType.BF16)]
    [InlineData(QwenSharp.Formats.DType.Q4_0, 100, QwenSharp.Formats.DType.BF16)]
    [InlineData(QwenSharp.Formats.DType.Q5_0, 896, QwenSharp.Formats.DType.Q5_0)]
    public void RowsThatAreNotWholeBlocks_TakeLlamaCppsFallbackType(QwenSharp.Formats.DType asked, int columns, QwenSharp.Formats.DType expected)
    {
        // llama.cpp's llama_tensor_get_type: a k-quant's rows not whole super-blocks become Q5_0 for Q4_K, Q5_1 for Q5_K and
        // Q8_0 for Q6_K, and F16 where no block fits (we keep the stored BF16, which loses nothing).
        Assert.Equal(expected, QwenSharp.Formats.QuantizationFallback.For(asked, QwenSharp.Formats.DType.BF16, columns));
    }

    [SkippableTheory]
    [InlineData("q4_k", GgmlType.Q4_K, GgmlType.Q5_0)]
    [InlineData("q5_k", GgmlType.Q5_K, GgmlType.Q5_1)]
    public void QuantizeToKQuants_NarrowRowsTakeLlamaCppsFallback_LlamaCppLoadsTheFileAndAgrees(string typeName, GgmlType type, GgmlType fallback)
    {
        // qwensharp quantize --type q4_k|q5_k on a model whose 160-wide rows are not whole super-blocks (its down
        // projection's 512 are): those matrices in Q5_0 or Q5_1, as llama.cpp's quantize writes them, byte for byte, and the
        // file read by llama.cpp with our logits (on the CPU, which multiplies Q5_0 widened and Q5_1 with its minimums).
        string output = Path.Combine(Fixtures.TempDirectory(), $"narrow-{typeName}.gguf");
        QwenSharp.Tests.Cli.CliRunner.Result result = QwenSharp.Tests.Cli.CliRunner.Run("quantize", "--model", RandomKQuantModel.NarrowFolder.Value, "--type", typeName, "--out", output);
        Assert.True(result.ExitCode == 0, result.Stderr);
        string f32 = GgufFixture.Write(RandomKQuantModel.NarrowFolder.Value);
        using (GgufFile file = GgufFile.Open(output))
        using (GgufFile source = GgufFile.Open(f32))
        {
            foreach (GgufTensorInfo tensor in file.Tensors.Values.Where(t => t.Shape.Length == 2))
            {
                Assert.Equal(tensor.Shape[^1] % 256 == 0 ? (int)type : (int)fallback, tensor.Type);
            }

            GgufTensorInfo q = file.Tensors["blk.0.attn_q.weight"];
            long count = q.Shape[0] * q.Shape[1];
            Assert.True(GgmlTypes.TryGetDType((int)fallback, out QwenSharp.Formats.DType fallbackType));
            unsafe
            {
                var values = new ReadOnlySpan<float>((void*)source.DataOf(source.Tensors[q.Name]), checked((int)count));
                byte[] expected = fallback == GgmlType.Q5_0 ? new byte[count / 32 * 22] : new byte[count / 32 * 24];
                if (fallback == GgmlType.Q5_0)
                {
                    LegacyQuantBlocks.QuantizeQ5_0(values, expected);
                }
                else
                {
                    LegacyQuantBlocks.QuantizeQ5_1(values, expected);
                }

                Assert.True(new ReadOnlySpan<byte>((void*)file.DataOf(q), expected.Length).SequenceEqual(expected), $"attn_q is not {fallbackType} of the folder's values");
            }
        }

        AssertLlamaCppLogits(output, $"narrow {typeName}");
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

        AssertLlamaCppLogits(output, typeName);
    }

    /// <summary>Our CPU's logits for a file we wrote, at every position of a short prompt, within the quantized types' bound of llama.cpp's.</summary>
    private static void AssertLlamaCppLogits(string gguf, string what)
    {
        int[] ids = [1, 17, 300, 42, 7, 255, 128, 3];
        float[][] llama = LlamaCpp.Logits(gguf, ids);
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        float[][] mine = Model.ReferenceModelTests.AllPositionLogits(model, ids);
        for (int p = 0; p < ids.Length; p++)
        {
            double scale = mine[p].Max(Math.Abs), error = mine[p].Zip(llama[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 5e-2 * Math.Max(1, scale), $"{what} position {p}: llama.cpp's logits differ from ours by {error:E3}");
        }
    }
}
