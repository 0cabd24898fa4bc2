using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;

namespace QwenSharp.Tests.Support;

/// <summary>Fixture folders written as GGUF files through <see cref="GgufExport"/>, as <c>qwensharp quantize</c> writes them.</summary>
internal static class GgufFixture
{
    /// <param name="modelDirectory">A Hugging Face folder (its tokenizer.json, if any, goes into the metadata).</param>
    /// <param name="quantize">Matrices in this type where their rows are whole blocks of it, as llama.cpp's quantize does.</param>
    /// <param name="dequantized">Every tensor in F32, holding the numbers the file (quantized as <paramref name="quantize"/>, or as stored)
    /// holds (which llama.cpp then multiplies in f32).</param>
    public static string Write(string modelDirectory, DType? quantize = null, bool dequantized = false)
    {
        string path = Path.Combine(Fixtures.TempDirectory(),
            Path.GetFileName(modelDirectory) + (quantize is null ? "" : "." + DTypes.Name(quantize.Value)) + (dequantized ? ".f32" : "") + ".gguf");
        if (!dequantized)
        {
            GgufExport.Write(modelDirectory, path, quantize);
            return path;
        }

        GgufExport.Write(modelDirectory, path, (_, tensor) =>
        {
            (GgmlType type, byte[] data) = GgufExport.Encode(tensor, quantize);
            var stored = new TensorView(tensor.Name, tensor.Source, GgmlTypes.TryGetDType((int)type, out DType dtype) ? dtype : DType.F32, tensor.Shape, 0);
            float[] values;
            unsafe
            {
                fixed (byte* bytes = data)
                {
                    values = TensorValues.ToSingle(stored with { Data = (nint)bytes });
                }
            }

            return (GgmlType.F32, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        });
        return path;
    }
}
