using QwenSharp.Backend;
using QwenSharp.Errors;

namespace QwenSharp.Qwen2VL;

/// <summary>
/// Qwen2-VL's 3-D rotary positions (transformers' <c>get_rope_index</c>): text tokens advance all three rows
/// (temporal, height, width) together; the tokens of a picture share the position where it starts, plus their
/// merged-grid frame, row and column; the text after a picture resumes one past the largest position so far.
/// Generated tokens continue at sequence index + <see cref="RopeDelta"/> on all three rows.
/// </summary>
public sealed class MRopePositions
{
    private MRopePositions(int[] t, int[] h, int[] w, int delta)
    {
        T = t;
        H = h;
        W = w;
        RopeDelta = delta;
    }

    public int[] T { get; }

    public int[] H { get; }

    public int[] W { get; }

    /// <summary>max position + 1 - length: how far the rotary position of later tokens lags (or leads) their index.</summary>
    public int RopeDelta { get; }

    /// <summary>
    /// The positions of <paramref name="tokens"/>, whose pictures' pads (<paramref name="imageTokenId"/>, each picture's
    /// run right after a <paramref name="visionStartTokenId"/>) belong to <paramref name="grids"/> in order.
    /// </summary>
    public static MRopePositions For(IReadOnlyList<int> tokens, IReadOnlyList<(int T, int H, int W)> grids, int imageTokenId, int visionStartTokenId, int mergeSize)
    {
        int n = tokens.Count;
        int[] t = new int[n], h = new int[n], w = new int[n];
        int next = 0, image = 0, i = 0;
        while (i < n)
        {
            bool startsImage = tokens[i] == imageTokenId && i > 0 && tokens[i - 1] == visionStartTokenId;
            if (!startsImage)
            {
                if (tokens[i] == imageTokenId)
                {
                    QwenThrow.Argument($"token {i} is an image pad ({imageTokenId}) that does not follow <|vision_start|> ({visionStartTokenId}) or its picture's pads", nameof(tokens));
                }

                t[i] = h[i] = w[i] = next++;
                i++;
                continue;
            }

            if (image >= grids.Count)
            {
                QwenThrow.Argument($"the prompt has more pictures (image pad runs) than the {grids.Count} given", nameof(grids));
            }

            (int gt, int gh, int gw) = grids[image++];
            int rows = gh / mergeSize, cols = gw / mergeSize, count = gt * rows * cols;
            if (i + count > n || Enumerable.Range(i, count).Any(j => tokens[j] != imageTokenId) || (i + count < n && tokens[i + count] == imageTokenId))
            {
                QwenThrow.Argument($"picture {image} needs {count} image pads from token {i} ({gt}x{rows}x{cols} merged patches), and the prompt has another number there", nameof(tokens));
            }

            int start = next;
            for (int f = 0; f < gt; f++)
            {
                for (int r = 0; r < rows; r++)
                {
                    for (int c = 0; c < cols; c++, i++)
                    {
                        t[i] = start + f;
                        h[i] = start + r;
                        w[i] = start + c;
                    }
                }
            }

            next = start + Math.Max(gt, Math.Max(rows, cols));
        }

        if (image != grids.Count)
        {
            QwenThrow.Argument($"{grids.Count} pictures were given and the prompt has {image} image pad runs", nameof(grids));
        }

        return new MRopePositions(t, h, w, next - n);
    }

    /// <summary>
    /// cos and sin [rows, head_dim/2] for M-RoPE: pair i turns by θᵢ times the position of the row its section names
    /// (the first <c>section[0]</c> pairs by the temporal row, the next <c>section[1]</c> by the height row, the rest by
    /// the width row), as transformers' <c>apply_multimodal_rotary_pos_emb</c>.
    /// </summary>
    public static void Angles(ReadOnlySpan<int> t, ReadOnlySpan<int> h, ReadOnlySpan<int> w, IReadOnlyList<int> section,
        ReadOnlySpan<double> inverseFrequencies, Span<float> cos, Span<float> sin)
    {
        int half = inverseFrequencies.Length;
        for (int r = 0; r < t.Length; r++)
        {
            for (int i = 0; i < half; i++)
            {
                int position = i < section[0] ? t[r] : i < section[0] + section[1] ? h[r] : w[r];
                (double s, double c) = Math.SinCos(position * inverseFrequencies[i]);
                cos[(r * half) + i] = (float)c;
                sin[(r * half) + i] = (float)s;
            }
        }
    }
}
