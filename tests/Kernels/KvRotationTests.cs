using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// The rotation of a q8_0 KV cache against llama.cpp's definition: its Walsh-Hadamard matrix built as ggml builds it
/// (1/sqrt(n) in the corner, each quadrant doubled, the lower right negated), multiplied here as a matrix; the block sizes
/// llama.cpp picks; and the CPU backend storing keys and values rotated, then quantized.
/// </summary>
public sealed class KvRotationTests
{
    [Theory]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    public void Rotate_IsTheHadamardMatrixProduct_OnEveryBlock(int n)
    {
        float[] x = KernelData.Floats(3 * n, n, 5f), rotated = (float[])x.Clone();
        KvRotation.Rotate(rotated, n);
        float[,] h = Hadamard(n);
        for (int b = 0; b < 3; b++)
        {
            for (int i = 0; i < n; i++)
            {
                double expected = 0;
                for (int j = 0; j < n; j++)
                {
                    expected += h[i, j] * (double)x[(b * n) + j];
                }

                Assert.True(Math.Abs(rotated[(b * n) + i] - expected) <= 1e-5 * 5 * Math.Sqrt(n), $"block {b}, element {i}: {rotated[(b * n) + i]:R}, H x = {expected:R}");
            }
        }

        // H is its own inverse.
        KvRotation.Rotate(rotated, n);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.True(Math.Abs(rotated[i] - x[i]) <= 1e-5, $"element {i}: rotated twice {rotated[i]:R}, not {x[i]:R}");
        }
    }

    [Fact]
    public void Rotate_RefusesBlocksThatDoNotFit()
    {
        Assert.Throws<ArgumentException>(() => KvRotation.Rotate(new float[96], 64));
        Assert.Throws<ArgumentException>(() => KvRotation.Rotate(new float[96], 48));
    }

    [Fact]
    public void Blocks_AreLlamaCpps()
    {
        // Keys: the largest power of two dividing the head, from 64; values: 64; only quantized caches, only heads of 64s.
        Assert.Equal([64, 128, 64, 256], new[] { 64, 128, 192, 256 }.Select(KvCacheRotation.KeyBlock));
        Assert.Equal(64, KvCacheRotation.ValueBlock);
        Assert.True(KvCacheRotation.Applies(DType.Q8_0, 64));
        Assert.True(KvCacheRotation.Applies(DType.Q8_0, 128));
        Assert.False(KvCacheRotation.Applies(DType.Q8_0, 96));
        Assert.False(KvCacheRotation.Applies(DType.F16, 64));
        Assert.False(KvCacheRotation.Applies(DType.F32, 128));
    }

    [Fact]
    public void Attention_OnAQ8_0Cache_StoresKeysAndValuesRotatedThenQuantized()
    {
        // Two key-value heads of 128: keys rotate in blocks of 128, values in blocks of 64.
        var shape = new AttentionShape(4, 2, 128, 10000);
        int kvDim = shape.NumKvHeads * shape.HeadDim, qDim = shape.NumHeads * shape.HeadDim;
        using IBackend backend = TestBackends.Create("cpu");
        using var cache = (CpuKvCache)backend.CreateKvCache(1, 1, 4, kvDim, DType.Q8_0);
        using DeviceBuffer q = backend.Allocate(1, qDim), k = backend.Allocate(1, kvDim), v = backend.Allocate(1, kvDim), output = backend.Allocate(1, qDim);
        float[] keys = KernelData.Floats(kvDim, 1, 3f), values = KernelData.Floats(kvDim, 2, 3f);
        backend.Write(KernelData.Floats(qDim, 3, 1f), q.Rows(1));
        backend.Write(keys, k.Rows(1));
        backend.Write(values, v.Rows(1));
        backend.Attention(q.Rows(1), k.Rows(1), v.Rows(1), cache, 0, [0], [0], shape, output.Rows(1));

        int rowBytes = kvDim / 32 * 34;
        Assert.Equal(Quantized(Rotated(keys, 128)), cache.Keys(0, 0)[..rowBytes].ToArray());
        Assert.Equal(Quantized(Rotated(values, 64)), cache.Values(0, 0)[..rowBytes].ToArray());

        // One position: the output is its value, rotated back (to within the q8_0 rounding).
        float[] read = new float[qDim];
        backend.Download(output.Rows(1), read);
        for (int i = 0; i < qDim; i++)
        {
            float expected = values[(i / (2 * shape.HeadDim) * shape.HeadDim) + (i % shape.HeadDim)];
            Assert.True(Math.Abs(read[i] - expected) < 0.03f, $"output {i}: {read[i]:R}, the value {expected:R}");
        }
    }

    /// <summary>ggml_gen_hadamard's matrix: 1/sqrt(n) at [0, 0], then each s × s corner copied right and down, negated diagonally.</summary>
    private static float[,] Hadamard(int n)
    {
        var h = new float[n, n];
        h[0, 0] = 1 / MathF.Sqrt(n);
        for (int s = 1; s < n; s *= 2)
        {
            for (int i = 0; i < s; i++)
            {
                for (int j = 0; j < s; j++)
                {
                    h[i + s, j] = h[i, j];
                    h[i, j + s] = h[i, j];
                    h[i + s, j + s] = -h[i, j];
                }
            }
        }

        return h;
    }

    private static float[] Rotated(float[] x, int n)
    {
        float[,] h = Hadamard(n);
        return [.. Enumerable.Range(0, x.Length).Select(i => (float)Enumerable.Range(0, n).Sum(j => h[i % n, j] * (double)x[(i / n * n) + j]))];
    }

    private static byte[] Quantized(float[] x)
    {
        var blocks = new byte[x.Length / 32 * 34];
        QwenSharp.Numerics.Q8_0Blocks.Quantize(x, blocks);
        return blocks;
    }
}
