namespace QwenSharp.Sampling;

/// <summary>
/// transformers' TopPLogitsWarper (nucleus): sorted ascending, tokens whose cumulative probability is at
/// most 1 - P are removed. Equivalently, from the most likely down, a token is kept while the tokens above
/// it hold less than P; so only the head of the distribution needs sorting, found by growing selections.
/// </summary>
public static class TopPFilter
{
    public static void Apply(Span<float> logits, double topP)
    {
        if (topP >= 1)
        {
            return;
        }

        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double total = 0;
        int finite = 0;
        foreach (float logit in logits)
        {
            if (logit != float.NegativeInfinity)
            {
                total += Math.Exp(logit - max);
                finite++;
            }
        }

        for (int take = Math.Min(64, finite); ; take = Math.Min(take * 4, finite))
        {
            int[] head = SortedHead(logits, take);
            double cumulative = 0;
            int keep = -1;
            for (int r = 0; r < head.Length; r++)
            {
                if (cumulative >= topP)
                {
                    keep = r;
                    break;
                }

                cumulative += Math.Exp(logits[head[r]] - max) / total;
            }

            if (keep < 0 && take < finite)
            {
                continue;
            }

            keep = keep < 0 ? head.Length : Math.Max(keep, 1);
            float smallestKept = logits[head[keep - 1]];
            int lastKeptIndex = head[keep - 1];
            for (int i = 0; i < logits.Length; i++)
            {
                // Below the smallest kept logit, or equal to it but after it in the (logit desc, index asc) order.
                if (logits[i] < smallestKept || (logits[i] == smallestKept && i > lastKeptIndex))
                {
                    logits[i] = float.NegativeInfinity;
                }
            }

            return;
        }
    }

    /// <summary>Indices of the <paramref name="count"/> largest finite logits, ordered by logit descending, then index ascending.</summary>
    internal static int[] SortedHead(ReadOnlySpan<float> logits, int count)
    {
        var best = new PriorityQueue<int, (float Logit, int Index)>(count + 1, HeadOrder.Instance);
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] == float.NegativeInfinity)
            {
                continue;
            }

            if (best.Count < count)
            {
                best.Enqueue(i, (logits[i], i));
            }
            else if (best.TryPeek(out _, out (float Logit, int Index) worst) && (logits[i] > worst.Logit))
            {
                best.DequeueEnqueue(i, (logits[i], i));
            }
        }

        var head = new int[best.Count];
        for (int r = head.Length - 1; r >= 0; r--)
        {
            head[r] = best.Dequeue();
        }

        return head;
    }

    /// <summary>The heap's minimum is the worst kept: the smallest logit, and among equal logits the largest index.</summary>
    private sealed class HeadOrder : IComparer<(float Logit, int Index)>
    {
        public static readonly HeadOrder Instance = new();

        public int Compare((float Logit, int Index) x, (float Logit, int Index) y) =>
            x.Logit != y.Logit ? x.Logit.CompareTo(y.Logit) : y.Index.CompareTo(x.Index);
    }
}
