using System.Runtime.InteropServices;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Narrows a row of keys or values to the KV cache's element type as it is stored: f32 copied, f16 and bf16 rounded to
/// nearest even, q8_0 and q4_0 quantized a block of 32 at a time by llama.cpp's reference rules
/// (<see cref="Q8_0Blocks.Quantize"/>, <see cref="LegacyQuantBlocks.QuantizeQ4_0"/>). A row is written once and read at
/// every later position, so this runs once per token and layer (a few thousand values: microseconds against a step's
/// milliseconds) and stays scalar.
/// </summary>
internal static class KvNarrow
{
    public static void Run(DType type, ReadOnlySpan<float> source, Span<byte> destination)
    {
        switch (type)
        {
            case DType.F32:
                MemoryMarshal.AsBytes(source).CopyTo(destination);
                break;
            case DType.F16:
                Span<ushort> halves = MemoryMarshal.Cast<byte, ushort>(destination)[..source.Length];
                for (int i = 0; i < source.Length; i++)
                {
                    halves[i] = HalfBits.FromSingle(source[i]);
                }

                break;
            case DType.BF16:
                Span<ushort> brains = MemoryMarshal.Cast<byte, ushort>(destination)[..source.Length];
                for (int i = 0; i < source.Length; i++)
                {
                    brains[i] = BFloat16Bits.FromSingle(source[i]);
                }

                break;
            case DType.Q8_0:
                Q8_0Blocks.Quantize(source, destination);
                break;
            case DType.Q4_0:
                LegacyQuantBlocks.QuantizeQ4_0(source, destination);
                break;
            default:
                throw new ArgumentException($"a KV cache does not hold {type}", nameof(type));
        }
    }
}
