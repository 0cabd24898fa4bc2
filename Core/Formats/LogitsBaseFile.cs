using System.Runtime.InteropServices;

namespace QwenSharp.Formats;

/// <summary>
/// llama.cpp's file of a base model's log-probabilities, as <c>llama-perplexity --kl-divergence-base F</c> writes it and
/// <c>--kl-divergence</c> reads it, so that a quantized model (ours or llama.cpp's) is compared with the base on the same
/// tokens. Little-endian: the eight bytes <c>_logits_</c>; int32 context, vocabulary size and chunk count; the chunks'
/// tokens (chunks × context int32); then, chunk after chunk, one row for each scored position
/// (<see cref="FirstScored"/> to context − 2, the logits that predict the next token): two floats, a scale and the least
/// log-probability, then one uint16 code per token, padded to an even count (<see cref="RowValues"/> uint16 in all). Code
/// c stands for log p = scale × c + least; logits more than 16 below the row's largest all take code 0, whose log-prob is
/// then at most −16 and is left out of the divergence (<see cref="LogProb"/>).
/// </summary>
public static class LogitsBaseFile
{
    /// <summary>The file's first eight bytes.</summary>
    public static ReadOnlySpan<byte> Magic => "_logits_"u8;

    /// <summary>Bytes of the header: magic, context, vocabulary size, chunk count.</summary>
    public const int HeaderBytes = 8 + (3 * sizeof(int));

    /// <summary>How far below a row's largest logit codes still tell values apart (natural-log units).</summary>
    public const float Span = 16;

    /// <summary>uint16 values of one row for a vocabulary of <paramref name="vocabulary"/>: four for the two floats, the codes rounded up to an even count.</summary>
    public static int RowValues(int vocabulary) => (2 * ((vocabulary + 1) / 2)) + 4;

    /// <summary>The first position of a chunk whose logits are scored: the second half's, so every scored token has at least half a chunk before it.</summary>
    public static int FirstScored(int context) => context / 2;

    /// <summary>Scored positions a chunk: <see cref="FirstScored"/> up to the one before the last (whose next token is in the next chunk).</summary>
    public static int ScoredPerChunk(int context) => context - 1 - FirstScored(context);

    /// <summary>Bytes of a whole file of <paramref name="chunks"/> chunks of <paramref name="context"/> tokens over <paramref name="vocabulary"/>.</summary>
    public static long FileBytes(int context, int vocabulary, int chunks) =>
        HeaderBytes + ((long)chunks * context * sizeof(int)) + ((long)chunks * ScoredPerChunk(context) * RowValues(vocabulary) * sizeof(ushort));

    /// <summary>
    /// Writes one row of <paramref name="logits"/> into <paramref name="row"/> (<see cref="RowValues"/> long) as llama.cpp
    /// does: the largest logit's code is 65535, one 16 below it (or the least, if nearer) code 0, those between in equal
    /// steps rounded to nearest, those below code 0.
    /// </summary>
    public static void Encode(ReadOnlySpan<float> logits, Span<ushort> row)
    {
        if (row.Length != RowValues(logits.Length))
        {
            throw new ArgumentException($"a row for {logits.Length} logits has {RowValues(logits.Length)} values, not {row.Length}", nameof(row));
        }

        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        float least = Math.Max(System.Numerics.Tensors.TensorPrimitives.Min(logits), max - Span);
        double sum = 0;
        foreach (float logit in logits)
        {
            sum += Math.Exp((double)logit - max);
        }

        float logSumExp = (float)Math.Log(sum);
        float scale = (max - least) / 65535f;
        Span<float> header = MemoryMarshal.Cast<ushort, float>(row[..4]);
        header[0] = scale;
        header[1] = least - max - logSumExp;
        Span<ushort> codes = row[4..];
        codes.Clear();
        if (scale == 0)
        {
            return;
        }

        float inverse = 1 / scale;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] > least)
            {
                codes[i] = (ushort)Math.Min(65535f, MathF.Round(inverse * (logits[i] - least), MidpointRounding.ToEven));
            }
        }
    }

    /// <summary>The scale of a row (log-prob per code step).</summary>
    public static float ScaleOf(ReadOnlySpan<ushort> row) => MemoryMarshal.Cast<ushort, float>(row[..4])[0];

    /// <summary>The log-prob code 0 stands for.</summary>
    public static float LeastOf(ReadOnlySpan<ushort> row) => MemoryMarshal.Cast<ushort, float>(row[..4])[1];

    /// <summary>The log-probability a row gives <paramref name="token"/>.</summary>
    public static float LogProb(ReadOnlySpan<ushort> row, int token) => (ScaleOf(row) * row[4 + token]) + LeastOf(row);
}
