namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Activation rows quantized to 8 bits per 256 values, as ggml's <c>block_q8_K</c> (<c>quantize_row_q8_K_ref</c>):
/// per block a scale d with the largest |x| at ±127, codes round(x / d) (ties to even), and the sum of every 16
/// codes (for the k-quants' mins and offsets). The k-quant dot products then multiply integers, as llama.cpp does.
/// Buffers grow to the largest step and are reused.
/// </summary>
internal sealed class Q8KActivations
{
    public const int BlockValues = 256;

    private sbyte[] _codes = [];
    private float[] _scales = [];
    private int[] _sums = [];

    public int Cols { get; private set; }

    public int Tokens { get; private set; }

    /// <summary>Quantizes <paramref name="tokens"/> rows of <paramref name="cols"/> values (a multiple of 256).</summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int cols)
    {
        int blocks = cols / BlockValues;
        if (_codes.Length < tokens * cols)
        {
            _codes = new sbyte[tokens * cols];
            _scales = new float[tokens * blocks];
            _sums = new int[tokens * cols / 16];
        }

        (Cols, Tokens) = (cols, tokens);
        for (int b = 0; b < tokens * blocks; b++)
        {
            ReadOnlySpan<float> values = x.Slice(b * BlockValues, BlockValues);
            Span<sbyte> codes = _codes.AsSpan(b * BlockValues, BlockValues);
            float max = 0, amax = 0;
            foreach (float v in values)
            {
                float a = MathF.Abs(v);
                if (a > amax)
                {
                    amax = a;
                    max = v;
                }
            }

            if (amax == 0)
            {
                codes.Clear();
                _scales[b] = 0;
                _sums.AsSpan(b * 16, 16).Clear();
                continue;
            }

            // ggml's choice: the value of largest magnitude becomes -127 (its sign flipped by the negative scale).
            float inverse = -127f / max;
            for (int j = 0; j < BlockValues; j++)
            {
                codes[j] = (sbyte)Math.Min(127, (int)MathF.Round(inverse * values[j]));
            }

            for (int g = 0; g < 16; g++)
            {
                int sum = 0;
                for (int j = 0; j < 16; j++)
                {
                    sum += codes[(g * 16) + j];
                }

                _sums[(b * 16) + g] = sum;
            }

            _scales[b] = 1 / inverse;
        }
    }

    /// <summary>Row <paramref name="token"/>: its codes, block scales and sums of 16.</summary>
    public (ReadOnlyMemory<sbyte> Codes, ReadOnlyMemory<float> Scales, ReadOnlyMemory<int> Sums) Row(int token) =>
        (_codes.AsMemory(token * Cols, Cols), _scales.AsMemory(token * Cols / BlockValues, Cols / BlockValues), _sums.AsMemory(token * Cols / 16, Cols / 16));
}
