namespace QwenSharp.Qwen2VL;

/// <summary>
/// transformers' <c>convert_to_rgb</c>: a picture with transparency is composited over opaque white with
/// Pillow's <c>Image.alpha_composite</c>, whose integer arithmetic (7 extra bits of precision, rounded
/// divisions by 255) this reproduces so that the RGB bytes equal Pillow's.
/// </summary>
public static class AlphaComposite
{
    private const int PrecisionBits = 7;

    /// <summary>One channel of a pixel with <paramref name="alpha"/> composited over white.</summary>
    public static byte OnWhite(byte value, byte alpha)
    {
        if (alpha == 0)
        {
            return 255;
        }

        // Pillow's ImagingAlphaComposite with dst = (255, 255, 255, 255) and src = (value, alpha).
        uint blend = 255u * (255u - alpha);
        uint outA255 = (alpha * 255u) + blend;
        uint coef1 = alpha * 255u * 255u * (1u << PrecisionBits) / outA255;
        uint coef2 = (255u * (1u << PrecisionBits)) - coef1;
        uint sum = (value * coef1) + (255u * coef2) + (0x80u << PrecisionBits);
        return (byte)(ShiftForDiv255(sum) >> PrecisionBits);
    }

    /// <summary>x / 255 rounded the way Pillow's SHIFTFORDIV255 does.</summary>
    private static uint ShiftForDiv255(uint x) => ((x >> 8) + x) >> 8;
}
