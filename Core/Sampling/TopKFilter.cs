namespace QwenSharp.Sampling;

/// <summary>
/// transformers' TopKLogitsWarper: every logit below the K-th largest becomes -inf (ties with the K-th stay).
/// The K-th largest comes from a size-K min-heap, one pass over the vocabulary.
/// </summary>
public static class TopKFilter
{
    public static void Apply(Span<float> logits, int k)
    {
        if (k <= 0 || k >= logits.Length)
        {
            return;
        }

        float threshold = KthLargest(logits, k);
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] < threshold)
            {
                logits[i] = float.NegativeInfinity;
            }
        }
    }

    private static float KthLargest(ReadOnlySpan<float> values, int k)
    {
        // The usual K (20, 40, 50) fits the stack: no allocation per token.
        Span<float> heap = k <= 1024 ? stackalloc float[k] : new float[k];
        int count = 0;
        foreach (float value in values)
        {
            if (count < k)
            {
                heap[count] = value;
                SiftUp(heap, count++);
            }
            else if (value > heap[0])
            {
                heap[0] = value;
                SiftDown(heap, count);
            }
        }

        return heap[0];
    }

    private static void SiftUp(Span<float> heap, int i)
    {
        while (i > 0 && heap[(i - 1) / 2] > heap[i])
        {
            (heap[(i - 1) / 2], heap[i]) = (heap[i], heap[(i - 1) / 2]);
            i = (i - 1) / 2;
        }
    }

    private static void SiftDown(Span<float> heap, int count)
    {
        int i = 0;
        while (true)
        {
            int smallest = i, left = 2 * i + 1, right = left + 1;
            if (left < count && heap[left] < heap[smallest])
            {
                smallest = left;
            }

            if (right < count && heap[right] < heap[smallest])
            {
                smallest = right;
            }

            if (smallest == i)
            {
                return;
            }

            (heap[i], heap[smallest]) = (heap[smallest], heap[i]);
            i = smallest;
        }
    }
}
