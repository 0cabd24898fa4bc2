using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>The matrix-vector dot product of every dtype, on every path, against an exact double sum.</summary>
public sealed class DotTests
{
    public static TheoryData<DType, KernelPath> DTypesAndPaths()
    {
        var data = new TheoryData<DType, KernelPath>();
        foreach (DType type in new[] { DType.F32, DType.F16, DType.BF16 })
        {
            foreach (KernelPath path in KernelPaths.All)
            {
                data.Add(type, path);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(DTypesAndPaths))]
    public void Dot_EveryLengthAndQwenSize_MatchesExactSum(DType type, KernelPath path)
    {
        foreach (int length in KernelData.Lengths)
        {
            (byte[] weights, float[] exact) = KernelData.Store(KernelData.Floats(length, seed: length, scale: 0.05f), type);
            float[] x = KernelData.Floats(length, seed: length + 7);

            float actual = type switch
            {
                DType.BF16 => Dot<Bf16Load>.Run(path, weights, x),
                DType.F16 => Dot<F16Load>.Run(path, weights, x),
                _ => Dot<F32Load>.Run(path, weights, x),
            };

            double expected = KernelData.DotExact(exact, x, out double magnitude);
            Assert.True(Math.Abs(actual - expected) <= (2e-6 * magnitude) + 1e-9,
                $"{type} {path} length {length}: {actual} vs {expected} (magnitude {magnitude})");
        }
    }

    [Theory]
    [MemberData(nameof(DTypesAndPaths))]
    public void Dot_WeightRowShorterThanInput_Throws(DType type, KernelPath path)
    {
        byte[] weights = new byte[3 * (type == DType.F32 ? 4 : 2)];
        float[] x = new float[4];
        Assert.Throws<ArgumentException>(() => type switch
        {
            DType.BF16 => Dot<Bf16Load>.Run(path, weights, x),
            DType.F16 => Dot<F16Load>.Run(path, weights, x),
            _ => Dot<F32Load>.Run(path, weights, x),
        });
    }
}
