namespace QwenSharp.Numerics;

/// <summary>IEEE binary16 stored as its 16 raw bits.</summary>
public static class HalfBits
{
    public static float ToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort FromSingle(float value) => BitConverter.HalfToUInt16Bits((Half)value);
}
