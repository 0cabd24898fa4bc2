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

    /// <summary>gguf.h's <c>struct gguf_init_params</c>: whether to leave the tensors' data unread, and where to put the ggml context holding them.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct GgufInitParams
    {
        public byte NoAlloc;
        public nint* Context;
    }

    /// <summary>
    /// <paramref name="source"/> split into files of <paramref name="tensorsPerPart"/> tensors by ggml's own GGUF writer, as
    /// llama-gguf-split's <c>--split-max-tensors</c> does it (gguf.h's API: the first part takes every key, each part its
    /// <c>split.no</c>, <c>split.count</c> and <c>split.tensors.count</c>, then its tensors). Returns the parts' paths.
    /// </summary>
    public static string[] SplitAsGgufSplit(string source, string prefix, int tensorsPerPart)
    {
        nint library = Library();
        nint Function(string name) => NativeLibrary.GetExport(library, name);
        var initFromFile = (delegate* unmanaged<byte*, GgufInitParams, nint>)Function("gguf_init_from_file");
        var initEmpty = (delegate* unmanaged<nint>)Function("gguf_init_empty");
        var setKv = (delegate* unmanaged<nint, nint, void>)Function("gguf_set_kv");
        var setU16 = (delegate* unmanaged<nint, byte*, ushort, void>)Function("gguf_set_val_u16");
        var setI32 = (delegate* unmanaged<nint, byte*, int, void>)Function("gguf_set_val_i32");
        var tensorCount = (delegate* unmanaged<nint, long>)Function("gguf_get_n_tensors");
        var tensorName = (delegate* unmanaged<nint, long, byte*>)Function("gguf_get_tensor_name");
        var getTensor = (delegate* unmanaged<nint, byte*, nint>)Function("ggml_get_tensor");
        var addTensor = (delegate* unmanaged<nint, nint, void>)Function("gguf_add_tensor");
        var writeToFile = (delegate* unmanaged<nint, byte*, byte, byte>)Function("gguf_write_to_file");
        var ggufFree = (delegate* unmanaged<nint, void>)Function("gguf_free");
        var ggmlFree = (delegate* unmanaged<nint, void>)Function("ggml_free");

        static byte[] Utf8(string text) => System.Text.Encoding.UTF8.GetBytes(text + "\0");
        nint tensors = 0;
        nint input;
        fixed (byte* path = Utf8(source))
        {
            input = initFromFile(path, new GgufInitParams { NoAlloc = 0, Context = &tensors });
        }

        Assert.True(input != 0, $"gguf_init_from_file could not read {source}");
        long count = tensorCount(input);
        int parts = (int)((count + tensorsPerPart - 1) / tensorsPerPart);
        var paths = new string[parts];
        try
        {
            for (int part = 0; part < parts; part++)
            {
                nint output = initEmpty();
                if (part == 0)
                {
                    setKv(output, input);
                }

                fixed (byte* number = Utf8("split.no"), total = Utf8("split.count"), all = Utf8("split.tensors.count"))
                {
                    setU16(output, number, (ushort)part);
                    setU16(output, total, (ushort)parts);
                    setI32(output, all, (int)count);
                }

                for (long t = part * (long)tensorsPerPart; t < Math.Min(count, (part + 1) * (long)tensorsPerPart); t++)
                {
                    addTensor(output, getTensor(tensors, tensorName(input, t)));
                }

                paths[part] = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{prefix}-{part + 1:D5}-of-{parts:D5}.gguf");
                fixed (byte* path = Utf8(paths[part]))
                {
                    Assert.True(writeToFile(output, path, 0) != 0, $"gguf_write_to_file could not write {paths[part]}");
                }

                ggufFree(output);
            }
        }
        finally
        {
            ggufFree(input);
            ggmlFree(tensors);
        }

        return paths;
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
