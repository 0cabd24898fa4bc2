using QwenSharp.Numerics;

namespace QwenSharp.Tests.Formats;

/// <summary>
/// <see cref="HalfBits.ToSingle"/> is our own inline conversion (the runtime's is a helper call that is slow from vector
/// code on Intel): every one of the 65,536 patterns must give the runtime's (float)Half bit for bit, NaNs included.
/// </summary>
public sealed class HalfBitsTests
{
    [Fact]
    public void ToSingle_EveryPattern_EqualsTheRuntimesConversion()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            uint expected = BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf((ushort)bits));
            uint actual = BitConverter.SingleToUInt32Bits(HalfBits.ToSingle((ushort)bits));
            if (actual != expected)
            {
                Assert.Fail($"0x{bits:X4}: 0x{actual:X8}, the runtime gives 0x{expected:X8}");
            }
        }
    }

    [Theory]
    [InlineData(0x0001, 5.9604645E-08f)]    // the smallest subnormal, 2^-24
    [InlineData(0x03FF, 6.097555E-05f)]     // the largest subnormal
    [InlineData(0x0400, 6.1035156E-05f)]    // the smallest normal, 2^-14
    [InlineData(0x3C00, 1f)]
    [InlineData(0xC000, -2f)]
    [InlineData(0x7BFF, 65504f)]            // the largest finite
    [InlineData(0xFBFF, -65504f)]
    public void ToSingle_KnownValues(int bits, float expected) => Assert.Equal(expected, HalfBits.ToSingle((ushort)bits));

    [Fact]
    public void ToSingle_SignedZerosAndInfinities()
    {
        Assert.Equal(0x00000000u, BitConverter.SingleToUInt32Bits(HalfBits.ToSingle(0x0000)));
        Assert.Equal(0x80000000u, BitConverter.SingleToUInt32Bits(HalfBits.ToSingle(0x8000)));
        Assert.Equal(float.PositiveInfinity, HalfBits.ToSingle(0x7C00));
        Assert.Equal(float.NegativeInfinity, HalfBits.ToSingle(0xFC00));
        Assert.True(float.IsNaN(HalfBits.ToSingle(0x7E00)));
    }
}
