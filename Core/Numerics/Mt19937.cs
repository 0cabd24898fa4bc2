namespace QwenSharp.Numerics;

/// <summary>
/// The 32-bit Mersenne Twister as C++'s <c>std::mt19937</c> defines it (Matsumoto and Nishimura, 1998; seeded by
/// <c>init_genrand</c>): llama-perplexity draws its random tasks from <c>std::mt19937 rng(1)</c>, so the same draws here give
/// its figures for the same files.
/// </summary>
public sealed class Mt19937
{
    private const int N = 624, M = 397;
    private const uint MatrixA = 0x9908b0df, UpperMask = 0x80000000, LowerMask = 0x7fffffff;
    private readonly uint[] _state = new uint[N];
    private int _next;

    /// <summary>The generator <c>std::mt19937(seed)</c> makes (5489 is the standard's default).</summary>
    public Mt19937(uint seed)
    {
        _state[0] = seed;
        for (int i = 1; i < N; i++)
        {
            _state[i] = (1812433253u * (_state[i - 1] ^ (_state[i - 1] >> 30))) + (uint)i;
        }

        _next = N;
    }

    /// <summary>The next 32-bit output.</summary>
    public uint Next()
    {
        if (_next >= N)
        {
            Twist();
        }

        uint y = _state[_next++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680;
        y ^= (y << 15) & 0xefc60000;
        return y ^ (y >> 18);
    }

    /// <summary>
    /// A draw from 0..<paramref name="bound"/>-1 as libstdc++'s <c>std::uniform_int_distribution</c> (GCC 11 and later) makes
    /// it from a 32-bit engine: Lemire's multiply-and-shift, redrawing the few low products that would bias it.
    /// </summary>
    public uint Below(uint bound)
    {
        ArgumentOutOfRangeException.ThrowIfZero(bound);
        ulong product = (ulong)Next() * bound;
        uint low = (uint)product;
        if (low < bound)
        {
            uint threshold = (0u - bound) % bound;
            while (low < threshold)
            {
                product = (ulong)Next() * bound;
                low = (uint)product;
            }
        }

        return (uint)(product >> 32);
    }

    private void Twist()
    {
        for (int i = 0; i < N; i++)
        {
            uint y = (_state[i] & UpperMask) | (_state[(i + 1) % N] & LowerMask);
            _state[i] = _state[(i + M) % N] ^ (y >> 1) ^ ((y & 1) != 0 ? MatrixA : 0);
        }

        _next = 0;
    }
}
