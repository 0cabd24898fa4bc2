using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace QwenSharp.Cpu.Kernels;

internal static partial class QuantPanel
{
    /// <summary>How a kernel reads a sub-block's codes (32 bytes: a column quad of eight rows) and its sixteen rows' scales.</summary>
    private interface ICodes
    {
        /// <summary>Whether the codes come out × 16, so that a sub-block's sums start from 16 × the offset (<see cref="Operands.HighOffsets"/>).</summary>
        static abstract bool TimesSixteen { get; }

        /// <summary>Whether the codes are nibbles (0..15) as loaded, so that <see cref="NibblePairSums"/> can sum a sub-block's products.</summary>
        static abstract bool Nibbles { get; }

        /// <summary>Whether the panel's scales are f16 (a repacked Q4_0 panel's, <see cref="PanelScales.F16"/>: <see cref="Halves{TCodes}"/>).</summary>
        static abstract bool HalfScales { get; }

        static abstract Vector256<byte> Load(ref byte w, nint offset);

        /// <summary>The sub-block's scales of rows 0-7 and 8-15 as f32.</summary>
        static abstract void Scales(ref byte scales, out Vector256<float> s0, out Vector256<float> s1);
    }

    /// <summary>
    /// <typeparamref name="TCodes"/>' codes in a repacked Q4_0 panel that keeps its scales as f16 (<see cref="PanelScales.F16"/>:
    /// as stored, an odd sub-block's not divided by 16), widened exactly (<see cref="NibblePanels.WidenHalves"/>) to what
    /// <typeparamref name="TCodes"/> reads from f32 panels: the scale, or for <see cref="HighNibblesTimes16"/> the scale / 16
    /// (× 2^108 instead of 2^112: an f32 normal for every finite f16).
    /// </summary>
    private readonly struct Halves<TCodes> : ICodes
        where TCodes : ICodes
    {
        public static bool TimesSixteen => TCodes.TimesSixteen;

        public static bool Nibbles => TCodes.Nibbles;

        public static bool HalfScales => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(ref byte w, nint offset) => TCodes.Load(ref w, offset);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Scales(ref byte halves, out Vector256<float> s0, out Vector256<float> s1)
        {
            var widening = Vector256.Create(TCodes.TimesSixteen ? NibblePanels.HalfWidening / 16 : NibblePanels.HalfWidening);
            s0 = NibblePanels.WidenHalves(ref halves) * widening;
            s1 = NibblePanels.WidenHalves(ref Unsafe.Add(ref halves, 16)) * widening;
        }
    }

    /// <summary>A panel packed per step (<see cref="Pack"/>): a code a byte, f32 scales.</summary>
    private readonly struct Packed : ICodes
    {
        public static bool TimesSixteen => false;

        public static bool Nibbles => false;

        public static bool HalfScales => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(ref byte w, nint offset) => Vector256.LoadUnsafe(ref w, (nuint)offset);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Scales(ref byte scales, out Vector256<float> s0, out Vector256<float> s1)
        {
            s0 = Vector256.LoadUnsafe(ref Unsafe.As<byte, float>(ref scales));
            s1 = Vector256.LoadUnsafe(ref Unsafe.As<byte, float>(ref scales), 8);
        }
    }

    /// <summary>A repacked panel's even sub-block (<see cref="NibblePanels"/>): the low nibbles; its scales as stored.</summary>
    private readonly struct LowNibbles : ICodes
    {
        public static bool TimesSixteen => false;

        public static bool Nibbles => true;

        public static bool HalfScales => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(ref byte w, nint offset) => Vector256.LoadUnsafe(ref w, (nuint)offset) & Vector256.Create((byte)0x0F);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Scales(ref byte scales, out Vector256<float> s0, out Vector256<float> s1) => Packed.Scales(ref scales, out s0, out s1);
    }

    /// <summary>A repacked panel's odd sub-block: the high nibbles shifted down (for <see cref="PairSums"/>, whose operands stay below 128).</summary>
    private readonly struct HighNibbles : ICodes
    {
        public static bool TimesSixteen => false;

        public static bool Nibbles => true;

        public static bool HalfScales => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(ref byte w, nint offset) =>
            (Vector256.LoadUnsafe(ref w, (nuint)offset).AsUInt16() >> 4).AsByte() & Vector256.Create((byte)0x0F);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Scales(ref byte scales, out Vector256<float> s0, out Vector256<float> s1)
        {
            // Stored / 16 for HighNibblesTimes16; × 16 is exact.
            Packed.Scales(ref scales, out s0, out s1);
            s0 *= 16;
            s1 *= 16;
        }
    }

    /// <summary>
    /// A repacked panel's odd sub-block for vpdpbusd: the high nibbles left in place, the codes × 16, one instruction instead
    /// of a shift too (which would take the ports vpdpbusd runs on); their sums start from 16 × the offset and meet the scale / 16.
    /// Both are exact (the sums stay below 2^24, and scale / 16 is an f32 normal for every f16), so every product and sum is the
    /// same number as with the codes shifted down. The scales are stored / 16 for it.
    /// </summary>
    private readonly struct HighNibblesTimes16 : ICodes
    {
        public static bool TimesSixteen => true;

        public static bool Nibbles => false;

        public static bool HalfScales => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Load(ref byte w, nint offset) => Vector256.LoadUnsafe(ref w, (nuint)offset) & Vector256.Create((byte)0xF0);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Scales(ref byte scales, out Vector256<float> s0, out Vector256<float> s1) => Packed.Scales(ref scales, out s0, out s1);
    }
}
