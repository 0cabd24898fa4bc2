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

    private static readonly Lazy<nint> s_opDesc = new(() => NativeLibrary.GetExport(Library(), "ggml_op_desc"));
    private static readonly Lazy<nint> s_getName = new(() => NativeLibrary.GetExport(Library(), "ggml_get_name"));
    private static readonly Lazy<nint> s_nrows = new(() => NativeLibrary.GetExport(Library(), "ggml_nrows"));

    /// <summary>
    /// Where ggml's <c>struct ggml_tensor</c> keeps what llama-imatrix reads (ggml.h: type, buffer, ne[4], nb[4], op,
    /// op_params[16], flags, src[10], view_src, view_offs, data, name[64]); <see cref="TensorName"/> checks the layout
    /// against ggml's own accessor before any field is read.
    /// </summary>
    public const int NeOffset = 16, NbOffset = 48, SrcOffset = 152, DataOffset = 248, NameOffset = 256;

    /// <summary>ggml_op_desc: the operation's name ("MUL_MAT").</summary>
    public static string OperationOf(nint tensor) =>
        Marshal.PtrToStringUTF8(((delegate* unmanaged<nint, nint>)s_opDesc.Value)(tensor)) ?? "";

    /// <summary>ggml_get_name, checked to lie where <see cref="NameOffset"/> says (else the other offsets are wrong too).</summary>
    public static string TensorName(nint tensor)
    {
        nint name = ((delegate* unmanaged<nint, nint>)s_getName.Value)(tensor);
        Assert.True(name == tensor + NameOffset, $"ggml_tensor's name is at offset {name - tensor}, not {NameOffset}: this ggml's struct layout differs");
        return Marshal.PtrToStringUTF8(name) ?? "";
    }

    /// <summary>ggml_nrows: rows of all dimensions but the first.</summary>
    public static long Rows(nint tensor) => ((delegate* unmanaged<nint, long>)s_nrows.Value)(tensor);

    public static nint Source(nint tensor, int index) => *(nint*)(tensor + SrcOffset + (index * 8));

    public static long Dimension(nint tensor, int index) => *(long*)(tensor + NeOffset + (index * 8));

    public static long Stride(nint tensor, int index) => *(long*)(tensor + NbOffset + (index * 8));

    public static nint Data(nint tensor) => *(nint*)(tensor + DataOffset);

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
