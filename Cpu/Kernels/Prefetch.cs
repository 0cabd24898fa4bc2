using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Software prefetch of weights a few pages ahead of a decode kernel. The hardware prefetchers stop at 4 KiB pages, and
/// with a kernel that does real work per byte the out-of-order window reaches only a few hundred bytes ahead, so
/// every new page began with a stall on memory. Measured on Zen 4, 2 threads: the Q6_K LM head (151936 × 1536) took
/// 10.6 ms without and 4.6-5.0 ms with, the 8960 × 1536 Q4_K products 0.35 → 0.22-0.26 ms; BF16's 151936 × 896
/// LM head 5.6 → 4.4-5.2 ms. The Q8_0 kernel that widens codes to f32 measured no better with it (5.2 against 4.65 ms),
/// so it has none. A prefetch past the weights' end is harmless: prefetches never fault.
/// </summary>
/// <remarks>
/// Into L2 (prefetcht1), not L1: a prefetch into L1 holds one of the core's few L1 fill buffers for the whole trip to
/// memory, the same buffers the kernel's own loads need. On the 2-core Xeon (Emerald Rapids), a BF16 row-by-row dot
/// over 1 GiB read 11.3 GB/s (median of 21) against 10.5 with prefetcht0 (prefetcht2 11.1, prefetchnta 7.0, none 7.9;
/// a plain prefetching sum 11.8); model decode, alternating builds (medians), 1 thread: BF16 11.1 against 9.8 tokens/s,
/// F16 9.2-9.5 against 8.9-9.1, Q4_0 37.7 against 34.5, Q4_K 13.5 against 11.1, Q8_0 and Q4_K_M alike; 2 threads: BF16
/// 18.4 against 16.7, Q4_0 and Q8_0 alike (medians of 8); the 256-bit path, 1 thread: BF16 10.7 against 9.1, Q4_K_M
/// alike; prefill and 16-sequence steps alike. Zen 4 is not measured with it (its prefetcht1 also fills L2).
/// </remarks>
internal static class Prefetch
{
    /// <summary>
    /// Two pages. On Zen 4, 8 to 32 KiB measured alike (within the noise) and less fell off; on the Intel Xeon, whose core
    /// reads half as fast, 8 KiB decoded 0-4% faster than 16 (medians of three, 1 and 2 threads, BF16, F16, Q4_0, Q4_K_M;
    /// Q8_0 alike) and 32 or 64 KiB 3-7% slower than 16.
    /// </summary>
    public const int Distance = 8 * 1024;

    /// <summary>
    /// Whether one-token decode of <paramref name="type"/>'s rows prefetches. BF16 and F16 rows (<see cref="Dot{TW}"/>)
    /// and Q4_0's (<see cref="Q8IntegerKernel"/>) do not on Zen 5 (AMD family 1Ah), where the weights lie on 2 MiB pages
    /// (GGUF files as mapped, the rest in <c>WeightArena</c>): there Q4_0's four-row loop is bound by its instructions,
    /// not the memory, and the float rows stream faster without. Qwen2.5-0.5B GGUF files, 64-token prompts, alternating
    /// runs, each pair won without: Q4_0 on one thread 56-82 against 49-74 tokens/s (3 pairs), BF16 24.8-25.7 against
    /// 22.9-23.9 (3); two threads BF16 47-49 against 43-44 (3), Q4_0 107-127 against 105-117 (2 of 3 won). F16 was first
    /// measured alike, row by row; in fours (<see cref="RowsApart"/>, the MLP's 4864-wide down projection) one core
    /// streamed its rows at 82-106% of a plain sum without against 71-74% with (<c>bench stream</c>, 4 alternations;
    /// 8960 wide, Qwen2.5-1.5B's, 101-107% against 87-90%, 3), and the 0.5B decoded 23.6-24.6 tokens/s against
    /// 22.2-23.2 on one thread (4 pairs, each won), 44.8-50.2 against 45.2-48.6 on two (2 of 3 won); the 1.5B alike
    /// (9.1-9.4 against 9.2-9.7, 3 pairs). Q8_0 decoded faster with its prefetch on two threads (94-105 against 80-89, 3
    /// pairs) and alike on one, so it keeps it, as do the k-quant kernels (far more work per byte: without, a Q4_K_M
    /// 1.5B decoded no faster and one core streamed Q4_K at 70-82% of a plain sum against 83-88%, <c>bench stream</c>)
    /// and prefill (without, BF16 pp64 fell from 165 to 108 tokens/s). Other CPUs keep the measurements above.
    /// <c>QWENSHARP_DECODE_PREFETCH=1</c> or <c>0</c> overrides the CPU's answer for every kernel that has both
    /// instantiations (BF16, F16, F32, Q4_0, Q8_0), so that any CPU can be measured either way without a build; the sums
    /// are the same either way.
    /// </summary>
    public static bool InDecode(DType type) => type switch
    {
        DType.BF16 or DType.F16 or DType.Q4_0 or DType.IQ4_NL => ThreadOverride<Switch>.Or(s_environment ?? !s_leanDecode),
        DType.F32 or DType.Q8_0 => ThreadOverride<Switch>.Or(s_environment ?? true),
        _ => true,
    };

    /// <summary>Until disposed, this thread takes <paramref name="prefetch"/> as <see cref="InDecode"/>'s answer for every type that has the choice (for tests).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool prefetch) => ThreadOverride<Switch>.Set(prefetch);

    /// <summary><c>QWENSHARP_DECODE_PREFETCH</c>'s answer, where it gives one.</summary>
    private static readonly bool? s_environment = Environment.GetEnvironmentVariable("QWENSHARP_DECODE_PREFETCH") switch
    {
        "1" => true,
        "0" => false,
        _ => null,
    };

    /// <summary>Whether this CPU decodes BF16, F16 and Q4_0 rows faster without prefetch (Zen 5, see <see cref="InDecode"/>).</summary>
    private static readonly bool s_leanDecode = CpuIdentity.IsAmd && CpuIdentity.Family >= 0x1A;

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }

    /// <summary>Asks for the cache line <see cref="Distance"/> bytes past <paramref name="at"/>, into L2 (no-op without SSE).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Ahead(ref byte at)
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch1((byte*)Unsafe.AsPointer(ref at) + Distance);
        }
    }

    /// <summary>
    /// The <paramref name="lines"/> cache lines from <see cref="Distance"/> bytes past <paramref name="at"/>. Written out up to
    /// four, so that a kernel's constant count leaves straight-line prefetches: as a loop, the JIT kept its counter, sign
    /// extension and branch (7 instructions a line) inside the kernels' inner loops.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Ahead(ref byte at, int lines)
    {
        byte* start = (byte*)Unsafe.AsPointer(ref at) + Distance;
        if (lines > 4)
        {
            Lines(start, 0, lines);
        }
        else if (Sse.IsSupported)
        {
            if (lines > 0)
            {
                Sse.Prefetch1(start);
            }

            if (lines > 1)
            {
                Sse.Prefetch1(start + 64);
            }

            if (lines > 2)
            {
                Sse.Prefetch1(start + 128);
            }

            if (lines > 3)
            {
                Sse.Prefetch1(start + 192);
            }
        }
    }

    /// <summary>Cache lines <paramref name="first"/> up to <paramref name="end"/> (exclusive) of the bytes at <paramref name="start"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Lines(ref byte start, int first, int end) => Lines((byte*)Unsafe.AsPointer(ref start), first, end);

    /// <summary>
    /// The lines themselves (no-op without SSE), from a pointer: a reference moved past the end of a managed array would be
    /// one the garbage collector cannot place.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Lines(byte* start, int first, int end)
    {
        if (Sse.IsSupported)
        {
            for (int line = first; line < end; line++)
            {
                Sse.Prefetch1(start + (64 * line));
            }
        }
    }
}

/// <summary>
/// Whether a kernel's instantiation prefetches (<see cref="Prefetch.InDecode"/>): a type argument, so that the loop
/// without prefetch has no test left in it. A flag tested in the loop cost more than the prefetch: read there on each
/// pass, Q4_0 0.5B decoded 38-51 tokens/s on one Zen 5 core prefetching and 36-60 not, against 58-70 for the build
/// before it (alternating runs).
/// </summary>
internal interface IPrefetchChoice
{
    /// <summary>Whether to prefetch.</summary>
    static abstract bool Ahead { get; }
}

/// <summary>Prefetch (<see cref="IPrefetchChoice"/>).</summary>
internal readonly struct WithPrefetch : IPrefetchChoice
{
    /// <inheritdoc/>
    public static bool Ahead => true;
}

/// <summary>No prefetch (<see cref="IPrefetchChoice"/>).</summary>
internal readonly struct WithoutPrefetch : IPrefetchChoice
{
    /// <inheritdoc/>
    public static bool Ahead => false;
}
