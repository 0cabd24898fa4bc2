using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace QwenSharp.Sampling;

/// <summary>
/// One draw from softmax(logits) with one uniform number: the inverse of the cumulative distribution,
/// accumulated in double in index order over the tokens the filters left (finite logits). Eight logits at a time: a
/// block's exps are summed together (<see cref="FiniteLogits.Exps"/>), and only the block where the running sum passes
/// the target is walked one token at a time.
/// </summary>
public static class CategoricalDraw
{
    public static int Draw(ReadOnlySpan<float> logits, double uniform)
    {
        double total = FiniteLogits.ExpSum(logits, out float max);

        double target = uniform * total;
        double cumulative = 0;
        int last = -1, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float first = ref MemoryMarshal.GetReference(logits);
            var largest = Vector256.Create(max);
            var removed = Vector256.Create(float.NegativeInfinity);
            Span<double> exps = stackalloc double[Vector256<float>.Count];
            for (; i <= logits.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                Vector256<float> block = Vector256.LoadUnsafe(ref first, (nuint)i);
                uint finite = ~Vector256.Equals(block, removed).ExtractMostSignificantBits() & 0xFF;
                if (finite == 0)
                {
                    continue;
                }

                (Vector256<double> low, Vector256<double> high) = FiniteLogits.Exps(block, largest);
                double sum = Vector256.Sum(low) + Vector256.Sum(high);
                if (cumulative + sum <= target)
                {
                    cumulative += sum;
                    last = i + 31 - BitOperations.LeadingZeroCount(finite);
                    continue;
                }

                low.CopyTo(exps);
                high.CopyTo(exps[4..]);
                for (; finite != 0; finite &= finite - 1)
                {
                    int lane = BitOperations.TrailingZeroCount(finite);
                    cumulative += exps[lane];
                    last = i + lane;
                    if (cumulative > target)
                    {
                        return last;
                    }
                }
            }
        }

        for (; i < logits.Length; i++)
        {
            if (logits[i] == float.NegativeInfinity)
            {
                continue;
            }

            cumulative += Math.Exp(logits[i] - max);
            last = i;
            if (cumulative > target)
            {
                return i;
            }
        }

        // Rounding can leave the target at the very top: it belongs to the last token with any mass.
        return last;
    }
}
