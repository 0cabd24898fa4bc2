using System.Runtime.InteropServices;
using LLama.Native;

namespace QwenSharp.Tests.Support;

/// <summary>
/// ggml's own C functions from the library llama.cpp (LLamaSharp) has loaded: its quantizers with an importance matrix
/// (<c>ggml_quantize_chunk</c>, which llama-quantize calls tensor by tensor), our oracle where llama.cpp's API takes no
/// matrix from C#.
/// </summary>
internal static unsafe class Ggml
{
    private static readonly Lazy<nint> s_quantizeChunk = new(() => NativeLibrary.GetExport(Library(), "ggml_quantize_chunk"));

    /// <summary>
    /// <c>ggml_quantize_chunk(type, src, dst, 0, rows, n_per_row, imatrix)</c>: rows of <paramref name="values"/> as ggml
    /// type <paramref name="ggmlType"/>, weighted by <paramref name="importance"/> (one per column; null for none).
    /// </summary>
    public static byte[] QuantizeChunk(int ggmlType, float[] values, int rows, int rowLength, float[]? importance, int rowBytes)
    {
        var destination = new byte[rows * rowBytes];
        var quantize = (delegate* unmanaged<int, float*, void*, long, long, long, float*, nuint>)s_quantizeChunk.Value;
        fixed (float* source = values)
        fixed (byte* target = destination)
        fixed (float* weights = importance)
        {
            nuint written = quantize(ggmlType, source, target, 0, rows, rowLength, weights);
            Assert.Equal((nuint)destination.Length, written);
        }

        return destination;
    }

    /// <summary>libggml-base as loaded with llama.cpp (found by its name once loaded), else the copy in LLamaSharp's runtimes.</summary>
    private static nint Library()
    {
        NativeApi.llama_empty_call();
        if (NativeLibrary.TryLoad("libggml-base.so", out nint loaded))
        {
            return loaded;
        }

        string runtimes = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native");
        string? path = new[] { "avx512", "avx2", "avx", "noavx" }.Select(v => Path.Combine(runtimes, v, "libggml-base.so")).FirstOrDefault(File.Exists);
        return NativeLibrary.Load(path ?? throw new FileNotFoundException($"libggml-base.so not found under {runtimes}"));
    }
}
