using System.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The plainest read of memory: a vector sum with four independent accumulators, so the adds do not wait on each other
/// and loads are the limit. The bound decode kernels are set against (<c>bench --memory</c>, and the bench project's
/// <c>stream</c>, which times a kernel beside it).
/// </summary>
internal static class StreamSum
{
    public static unsafe float Sum(float* data, long count)
    {
        int width = Vector<float>.Count;
        Vector<float> a = default, b = default, c = default, d = default;
        long i = 0;
        for (; i + (4 * width) <= count; i += 4 * width)
        {
            a += *(Vector<float>*)(data + i);
            b += *(Vector<float>*)(data + i + width);
            c += *(Vector<float>*)(data + i + (2 * width));
            d += *(Vector<float>*)(data + i + (3 * width));
        }

        float sum = Vector.Sum(a + b + c + d);
        for (; i < count; i++)
        {
            sum += data[i];
        }

        return sum;
    }
}
