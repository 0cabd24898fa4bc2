using QwenSharp.Numerics;

namespace QwenSharp.Generation;

/// <summary>
/// Which tasks llama-perplexity scores, and in what order, when it is given a task file: the same draws from
/// <c>std::mt19937 rng(1)</c> its source makes, so that a run over N tasks here scores the tasks it scores.
/// </summary>
public static class TaskDraws
{
    /// <summary>
    /// <c>--hellaswag</c>: always drawn, all tasks included (only their order is random): each a uniform draw
    /// (<c>std::uniform_int_distribution</c>) among the tasks left, taken out of the file's order.
    /// </summary>
    public static int[] HellaSwag(int available, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(available);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, available);
        var rng = new Mt19937(1);
        var left = Enumerable.Range(0, available).ToList();
        var drawn = new int[count];
        for (int i = 0; i < count; i++)
        {
            int at = (int)rng.Below((uint)left.Count);
            drawn[i] = left[at];
            left.RemoveAt(at);
        }

        return drawn;
    }

    /// <summary>
    /// <c>--winogrande-tasks N</c> and <c>--multiple-choice-tasks N</c> with N less than the file holds: each draw scales an
    /// output by 1/2³² in f32 as its source does, takes that task, and moves the last one left into its place. With N at
    /// least the file's count, every task in the file's order.
    /// </summary>
    public static int[] Scaled(int available, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(available);
        if (count >= available)
        {
            return [.. Enumerable.Range(0, available)];
        }

        var rng = new Mt19937(1);
        int[] left = [.. Enumerable.Range(0, available)];
        int leftCount = available;
        const float scale = 1f / (1f + uint.MaxValue);
        var drawn = new int[count];
        for (int i = 0; i < count; i++)
        {
            // f32 products in the source's order: (scale * draw) * count, truncated.
            // An output within 128 of 2^32 rounds to 1.0 in f32, an index past the end the source reads anyway: the last one here.
            int at = Math.Min((int)(scale * rng.Next() * (float)leftCount), leftCount - 1);
            drawn[i] = left[at];
            left[at] = left[--leftCount];
        }

        return drawn;
    }
}
