using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace QwenSharp.Sampling;

/// <summary>
/// One draw from softmax(logits) with one uniform number: the inverse of the cumulative distribution,
/// accumulated in double in index order over the tokens the filters left (finite logits). Eight logits at a time: each
/// block's exps are summed together (<see cref="FiniteLogits.Exps"/>) and kept, the total is their sum in order, the
/// running sum walks the blocks' sums, and only the block where it passes the target has its exps worked out again, one
/// token at a time. (Working every exp out twice, for the total and for the running sum, took twice as long: over
/// Qwen2.5's 151,936 logits the vector exp is most of a draw.)
/// </summary>
public static class CategoricalDraw
{
    /// <summary>Each block's sum of exps, kept between the two passes (a thread's, grown to the largest vocabulary drawn from).</summary>
    [ThreadStatic]
    private static double[]? s_blockSums;

    public static int Draw(ReadOnlySpan<float> logits, double uniform)
    {
        const int Width = 8;
        int blocks = Vector256.IsHardwareAccelerated ? logits.Length / Width : 0;
        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        if (s_blockSums is null || s_blockSums.Length < blocks)
        {
            s_blockSums = new double[Math.Max(blocks, 1024)];
        }

        Span<double> sums = s_blockSums.AsSpan(0, blocks);
        ref float first = ref MemoryMarshal.GetReference(logits);
        var largest = Vector256.Create(max);
        var removed = Vector256.Create(float.NegativeInfinity);
        double total = 0;
        int last = -1;
        for (int b = 0; b < blocks; b++)
        {
            Vector256<float> block = Vector256.LoadUnsafe(ref first, (nuint)(b * Width));
            uint finite = ~Vector256.Equals(block, removed).ExtractMostSignificantBits() & 0xFF;
            if (finite == 0)
            {
                sums[b] = 0;
                continue;
            }

            (Vector256<double> low, Vector256<double> high) = FiniteLogits.Exps(block, largest);
            sums[b] = Vector256.Sum(low) + Vector256.Sum(high);
            total += sums[b];
            last = (b * Width) + 31 - BitOperations.LeadingZeroCount(finite);
        }

        for (int i = blocks * Width; i < logits.Length; i++)
        {
            if (logits[i] != float.NegativeInfinity)
            {
                total += Math.Exp(logits[i] - max);
                last = i;
            }
        }

        double target = uniform * total;
        double cumulative = 0;
        Span<double> exps = stackalloc double[Width];
        for (int b = 0; b < blocks; b++)
        {
            if (cumulative + sums[b] <= target)
            {
                cumulative += sums[b];
                continue;
            }

            Vector256<float> block = Vector256.LoadUnsafe(ref first, (nuint)(b * Width));
            (Vector256<double> low, Vector256<double> high) = FiniteLogits.Exps(block, largest);
            low.CopyTo(exps);
            high.CopyTo(exps[4..]);
            for (uint finite = ~Vector256.Equals(block, removed).ExtractMostSignificantBits() & 0xFF; finite != 0; finite &= finite - 1)
            {
                int lane = BitOperations.TrailingZeroCount(finite);
                cumulative += exps[lane];
                if (cumulative > target)
                {
                    return (b * Width) + lane;
                }
            }
        }

        for (int i = blocks * Width; i < logits.Length; i++)
        {
            if (logits[i] == float.NegativeInfinity)
            {
                continue;
            }

            cumulative += Math.Exp(logits[i] - max);
            if (cumulative > target)
            {
                return i;
            }
        }

        // Rounding can leave the target at the very top: it belongs to the last token with any mass.
        return last;
    }
}
