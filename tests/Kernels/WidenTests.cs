using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;

namespace QwenSharp.Tests.Kernels;

/// <summary>Weight conversion to f32: every one of the 65536 bit patterns, on every path, against .NET's own Half and the bf16 bit layout.</summary>
public sealed class WidenTests
{
    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    private static ushort[] AllBitPatterns => [.. Enumerable.Range(0, 65536).Select(i => (ushort)i)];

    [Theory]
    [MemberData(nameof(Paths))]
    public void WidenF16_AllBitPatterns_EqualSystemHalf(KernelPath path)
    {
        ushort[] bits = AllBitPatterns;
        var actual = new float[bits.Length];
        Widen<F16Load>.Run(path, MemoryMarshal.AsBytes(bits.AsSpan()), actual);

        for (int i = 0; i < bits.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf(bits[i]);
            Assert.True(float.IsNaN(expected) ? float.IsNaN(actual[i]) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{path}: f16 0x{bits[i]:X4} gave {actual[i]}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WidenBf16_AllBitPatterns_AreTheTopHalfOfTheF32(KernelPath path)
    {
        ushort[] bits = AllBitPatterns;
        var actual = new float[bits.Length];
        Widen<Bf16Load>.Run(path, MemoryMarshal.AsBytes(bits.AsSpan()), actual);

        for (int i = 0; i < bits.Length; i++)
        {
            Assert.Equal((uint)bits[i] << 16, BitConverter.SingleToUInt32Bits(actual[i]));
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WidenF32_EveryLength_CopiesExactly(KernelPath path)
    {
        foreach (int length in KernelData.Lengths)
        {
            float[] source = KernelData.Floats(length, length);
            var actual = new float[length];
            Widen<F32Load>.Run(path, MemoryMarshal.AsBytes(source.AsSpan()), actual);
            Assert.Equal(source, actual);
        }
    }
}
