using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli;

/// <summary>
/// Reads a large model's memory-mapped weights in once, page by page, behind a progress bar: the disk is
/// read while the user watches the load, instead of page faults stalling the first token. Only on a
/// terminal and for models of at least 64 MiB; elsewhere the pages come in as the first forward pass needs them.
/// </summary>
internal static class WeightPrefetch
{
    private const long MinimumBytes = 64L << 20;
    private const int PageBytes = 4096;

    public static void Run(Qwen2Model model, TextWriter stderr)
    {
        // What the CPU reads: nothing of a model on the GPU, the embedding and first layers of a split one (--gpu-layers).
        if (model.Backend is not Cpu.CpuBackend)
        {
            return;
        }

        TensorView[] tensors = [.. model.HostWeights.Where(t => t.Data != 0)];    // (views of tensors the load released have no bytes)
        long total = tensors.Sum(t => t.ByteLength);
        if (total < MinimumBytes || !Terminal.IsInteractiveError || !ReferenceEquals(stderr, Console.Error))
        {
            return;
        }

        var progress = ProgressBar.For(stderr, "loading", total >> 20);
        long done = 0;
        foreach (TensorView tensor in tensors)
        {
            Touch(tensor.Data, tensor.ByteLength);
            done += tensor.ByteLength;
            progress.Report(done >> 20, "MiB");
        }

        progress.Done();
    }

    private static unsafe void Touch(nint data, long length)
    {
        byte* bytes = (byte*)data;
        int sum = 0;
        for (long offset = 0; offset < length; offset += PageBytes)
        {
            sum += System.Threading.Volatile.Read(ref bytes[offset]);
        }

        GC.KeepAlive(sum);
    }
}
