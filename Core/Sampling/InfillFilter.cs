namespace QwenSharp.Sampling;

/// <summary>What llama.cpp's infill sampler needs of the vocabulary: each token's text (empty for control tokens), which tokens end generation, and the end-of-text token.</summary>
/// <param name="Pieces">Each token's text as bytes, by id; control tokens have none.</param>
/// <param name="EndsGeneration">Whether each token, by id, ends generation.</param>
/// <param name="EndOfText">The token the sampler answers with when no text token is left.</param>
public sealed record InfillVocabulary(byte[][] Pieces, bool[] EndsGeneration, int EndOfText);

/// <summary>
/// llama.cpp's infill sampler (what llama-server's <c>samplers: [..., "infill"]</c> asks for, as llama.vim and
/// llama.vscode send it), for code completion: when ending is at least a third as likely per candidate as going on,
/// only the end-of-generation tokens stay; otherwise a token whose text begins another's takes the other's probability
/// (the more likely of the two keeps both), text tokens below 20% go, and of the rest those below 1/(n + 1) (n the text
/// tokens left) go; with no text token left the answer ends (the end-of-text token alone). The draw is then made from
/// the logits of what is left, as llama.cpp's is.
/// </summary>
public static class InfillFilter
{
    public static void Apply(Span<float> logits, InfillVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        double total = FiniteLogits.ExpSum(logits, out float max);
        // The candidates (the filters before left a few), most likely first (ties by id), with their probabilities.
        var p = new Dictionary<int, double>();
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] != float.NegativeInfinity)
            {
                p[i] = Math.Exp(logits[i] - max) / total;
            }
        }

        List<int> order = [.. p.Keys];
        order.Sort((a, b) => p[b] != p[a] ? p[b].CompareTo(p[a]) : a.CompareTo(b));
        double text = 0, end = 0;
        foreach (int id in order)
        {
            (EndsGeneration(vocabulary, id) ? ref end : ref text) += p[id];
        }

        if (3 * end * order.Count > text)
        {
            KeepOnly(logits, order, id => EndsGeneration(vocabulary, id));
            return;
        }

        Merge(order, p, vocabulary);
        var left = new HashSet<int>(order.Where(id => p[id] >= 0.2 || EndsGeneration(vocabulary, id)));
        int textLeft = left.Count(id => !EndsGeneration(vocabulary, id));
        if (textLeft == 0)
        {
            logits.Fill(float.NegativeInfinity);
            logits[vocabulary.EndOfText] = 1;
            return;
        }

        double mass = left.Sum(id => p[id]);
        double bound = 1.0 / (textLeft + 1);
        KeepOnly(logits, order, id => left.Contains(id) && (p[id] / mass >= bound || EndsGeneration(vocabulary, id)));
    }

    /// <summary>
    /// A token whose text begins another's absorbs it, or is absorbed by it when the other is more likely (in the
    /// candidates' order, as llama.cpp visits the pairs); an absorbed token is gone.
    /// </summary>
    /// <remarks>
    /// llama.cpp tries every pair, which over a whole vocabulary (no top-k before, 151,936 candidates) is 2.3e10 tries: a
    /// hang. Only pairs whose first text begins the second's do anything, and in byte order the texts that begin with a
    /// given one are a run starting where it would sort, so each candidate visits just that run (in the candidates' order,
    /// which keeps llama.cpp's outcome): at most a few tokens per text's length in all.
    /// </remarks>
    private static void Merge(List<int> order, Dictionary<int, double> p, InfillVocabulary vocabulary)
    {
        byte[][] pieces = vocabulary.Pieces;
        var rank = new Dictionary<int, int>(order.Count);
        for (int i = 0; i < order.Count; i++)
        {
            rank[order[i]] = i;
        }

        int[] byText = [.. order.Where(id => pieces[id].Length > 0)];
        Array.Sort(byText, (x, y) => pieces[x].AsSpan().SequenceCompareTo(pieces[y]) is int c && c != 0 ? c : rank[x].CompareTo(rank[y]));
        var gone = new HashSet<int>();
        var longer = new List<int>();
        foreach (int first in order)
        {
            byte[] a = pieces[first];
            if (a.Length == 0 || gone.Contains(first))
            {
                continue;
            }

            longer.Clear();
            for (int k = StartOfRun(byText, pieces, a); k < byText.Length && pieces[byText[k]].AsSpan().StartsWith(a); k++)
            {
                if (byText[k] != first)
                {
                    longer.Add(byText[k]);
                }
            }

            longer.Sort((x, y) => rank[x].CompareTo(rank[y]));
            foreach (int second in longer)
            {
                if (gone.Contains(first))
                {
                    break;
                }

                if (gone.Contains(second))
                {
                    continue;
                }

                (int into, int from) = p[second] > p[first] ? (second, first) : (first, second);
                p[into] += p[from];
                p[from] = 0;
                gone.Add(from);
            }
        }

        order.RemoveAll(gone.Contains);
    }

    /// <summary>The first index of <paramref name="byText"/> (sorted by text) whose text is not below <paramref name="text"/>.</summary>
    private static int StartOfRun(int[] byText, byte[][] pieces, byte[] text)
    {
        int lo = 0, hi = byText.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (pieces[byText[mid]].AsSpan().SequenceCompareTo(text) < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    private static void KeepOnly(Span<float> logits, List<int> candidates, Func<int, bool> keep)
    {
        var kept = new HashSet<int>(candidates.Where(keep));
        for (int i = 0; i < logits.Length; i++)
        {
            if (!kept.Contains(i))
            {
                logits[i] = float.NegativeInfinity;
            }
        }
    }

    private static bool EndsGeneration(InfillVocabulary vocabulary, int id) => (uint)id < (uint)vocabulary.EndsGeneration.Length && vocabulary.EndsGeneration[id];
}
