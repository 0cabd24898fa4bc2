using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>Converts stored weights to f32: embedding rows, norm vectors, and the panels a matrix product reuses.</summary>
internal static class Widen<TW>
    where TW : struct, IWeightLoad
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(KernelPath path, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (path)
        {
            case KernelPath.Vector512: Vector512(source, destination); break;
            case KernelPath.Vector256: Vector256(source, destination); break;
            default: Reference(source, destination); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Reference(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLengths(source, destination);
        ref byte s = ref MemoryMarshal.GetReference(source);
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = TW.LoadScalar(ref s, i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Vector512(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLengths(source, destination);
        ref byte s = ref MemoryMarshal.GetReference(source);
        ref float d = ref MemoryMarshal.GetReference(destination);
        nint n = destination.Length, i = 0;
        for (; i <= n - 16; i += 16)
        {
            TW.Load512(ref s, i).StoreUnsafe(ref d, (nuint)i);
        }

        for (; i < n; i++)
        {
            destination[(int)i] = TW.LoadScalar(ref s, i);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Vector256(ReadOnlySpan<byte> source, Span<float> destination)
    {
        CheckLengths(source, destination);
        ref byte s = ref MemoryMarshal.GetReference(source);
        ref float d = ref MemoryMarshal.GetReference(destination);
        nint n = destination.Length, i = 0;
        for (; i <= n - 8; i += 8)
        {
            TW.Load256(ref s, i).StoreUnsafe(ref d, (nuint)i);
        }

        for (; i < n; i++)
        {
            destination[(int)i] = TW.LoadScalar(ref s, i);
        }
    }

    private static void CheckLengths(ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (source.Length < (long)destination.Length * TW.ElementSize)
        {
            throw new ArgumentException($"{source.Length} bytes cannot fill {destination.Length} elements of {TW.ElementSize} bytes");
        }
    }
}
