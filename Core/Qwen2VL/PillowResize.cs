namespace QwenSharp.Qwen2VL;

/// <summary>
/// Pillow's <c>Image.resize(size, BICUBIC)</c> on 8-bit RGB, bit for bit: separable convolution with the
/// a = -0.5 bicubic kernel widened by the scale when shrinking, coefficients normalized in double and then
/// turned into 22-bit fixed point, a horizontal pass into a clipped 8-bit image over just the rows the
/// vertical pass reads, then the vertical pass (Pillow's libImaging/Resample.c).
/// </summary>
public static class PillowResize
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const double Support = 2.0;

    /// <summary>The image resized to <paramref name="width"/> x <paramref name="height"/>; the same image when the size is unchanged.</summary>
    public static RgbImage Bicubic(RgbImage image, int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        bool horizontal = width != image.Width, vertical = height != image.Height;
        if (!horizontal && !vertical)
        {
            return image;
        }

        Coefficients rows = Coefficients.For(image.Height, height);
        int firstRow = rows.Min[0], lastRow = rows.Min[height - 1] + rows.Count[height - 1];
        byte[] pixels = image.Rgb;
        int inWidth = image.Width, rowOffset = 0;
        if (horizontal)
        {
            // Only the source rows the vertical pass reads; its bounds move up by the rows skipped.
            Coefficients cols = Coefficients.For(image.Width, width);
            int tempRows = lastRow - firstRow;
            var temp = new byte[3 * width * tempRows];
            for (int y = 0; y < tempRows; y++)
            {
                ReadOnlySpan<byte> source = pixels.AsSpan(3 * inWidth * (y + firstRow), 3 * inWidth);
                Span<byte> target = temp.AsSpan(3 * width * y, 3 * width);
                for (int x = 0; x < width; x++)
                {
                    ReadOnlySpan<int> k = cols.Weights(x);
                    int min = cols.Min[x];
                    for (int c = 0; c < 3; c++)
                    {
                        int sum = 1 << (PrecisionBits - 1);
                        for (int i = 0; i < k.Length; i++)
                        {
                            sum += source[(3 * (min + i)) + c] * k[i];
                        }

                        target[(3 * x) + c] = Clip8(sum);
                    }
                }
            }

            pixels = temp;
            inWidth = width;
            rowOffset = firstRow;
        }

        if (!vertical)
        {
            return new RgbImage(width, height, pixels, image.Source);
        }

        var output = new byte[3 * width * height];
        int stride = 3 * inWidth;
        for (int y = 0; y < height; y++)
        {
            ReadOnlySpan<int> k = rows.Weights(y);
            int min = rows.Min[y] - rowOffset;
            Span<byte> target = output.AsSpan(stride * y, stride);
            for (int x = 0; x < stride; x++)
            {
                int sum = 1 << (PrecisionBits - 1);
                for (int i = 0; i < k.Length; i++)
                {
                    sum += pixels[(stride * (min + i)) + x] * k[i];
                }

                target[x] = Clip8(sum);
            }
        }

        return new RgbImage(width, height, output, image.Source);
    }

    /// <summary>Pillow's clip8: the fixed-point sum's integer part, clamped to a byte.</summary>
    private static byte Clip8(int sum) => (byte)Math.Clamp(sum >> PrecisionBits, 0, 255);

    /// <summary>The bicubic kernel of Keys with a = -0.5, as Pillow's <c>bicubic_filter</c>.</summary>
    internal static double Kernel(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1.0)
        {
            return ((((a + 2.0) * x) - (a + 3.0)) * x * x) + 1;
        }

        if (x < 2.0)
        {
            return ((((x - 5) * x) + 8) * x - 4) * a;
        }

        return 0.0;
    }

    /// <summary>Per output pixel: the first source pixel, how many it reads and their fixed-point weights (Pillow's precompute_coeffs).</summary>
    private sealed class Coefficients
    {
        private readonly int[] _weights;
        private readonly int _stride;

        private Coefficients(int outSize, int stride)
        {
            _stride = stride;
            _weights = new int[outSize * stride];
            Min = new int[outSize];
            Count = new int[outSize];
        }

        public int[] Min { get; }

        public int[] Count { get; }

        public ReadOnlySpan<int> Weights(int i) => _weights.AsSpan(i * _stride, Count[i]);

        public static Coefficients For(int inSize, int outSize)
        {
            double scale = (double)inSize / outSize;
            double filterScale = Math.Max(scale, 1.0);
            double support = Support * filterScale;
            int stride = ((int)Math.Ceiling(support) * 2) + 1;
            var result = new Coefficients(outSize, stride);
            var k = new double[stride];
            for (int xx = 0; xx < outSize; xx++)
            {
                double center = (xx + 0.5) * scale;
                double sum = 0.0, inverseScale = 1.0 / filterScale;
                int min = Math.Max((int)(center - support + 0.5), 0);
                int max = Math.Min((int)(center + support + 0.5), inSize) - min;
                for (int x = 0; x < max; x++)
                {
                    k[x] = Kernel((x + min - center + 0.5) * inverseScale);
                    sum += k[x];
                }

                for (int x = 0; x < max; x++)
                {
                    double w = sum != 0.0 ? k[x] / sum : k[x];
                    // normalize_coeffs_8bpc: round half away from zero into 22-bit fixed point.
                    result._weights[(xx * stride) + x] = w < 0
                        ? (int)(-0.5 + (w * (1 << PrecisionBits)))
                        : (int)(0.5 + (w * (1 << PrecisionBits)));
                }

                result.Min[xx] = min;
                result.Count[xx] = max;
            }

            return result;
        }
    }
}
