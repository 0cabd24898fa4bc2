namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// Per-thread scratch, grown to the largest size asked for and then reused, so steady-state steps allocate
/// nothing. Grow only between jobs (on the calling thread), never inside one.
/// </summary>
internal sealed class WorkerScratch(int threads)
{
    private readonly float[][] _panels = Empty(threads);
    private readonly float[][] _scores = Empty(threads);
    private readonly float[][] _queries = Empty(threads);

    /// <summary>f32 weight panels of the matrix product.</summary>
    public Span<float> Panel(int worker) => _panels[worker];

    /// <summary>Attention scores over the positions of one sequence.</summary>
    public Span<float> Scores(int worker) => _scores[worker];

    /// <summary>One attention unit's rotated queries and then its outputs, before they are rotated back (a q8_0 cache's, <see cref="Kernels.KvRotation"/>).</summary>
    public Span<float> Queries(int worker) => _queries[worker];

    public void EnsurePanel(int length) => Grow(_panels, length);

    public void EnsureQueries(int length) => Grow(_queries, length);

    public void EnsureScores(int length) => Grow(_scores, length);

    private static void Grow(float[][] buffers, int length)
    {
        for (int i = 0; i < buffers.Length; i++)
        {
            if (buffers[i].Length < length)
            {
                buffers[i] = GC.AllocateUninitializedArray<float>(length);
            }
        }
    }

    private static float[][] Empty(int threads)
    {
        var buffers = new float[threads][];
        Array.Fill(buffers, []);
        return buffers;
    }
}
