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
    private static void Merge(List<int> order, Dictionary<int, double> p, InfillVocabulary vocabulary)
    {
        var gone = new HashSet<int>();
        foreach (int first in order)
        {
            foreach (int second in order)
            {
                if (gone.Contains(first))
                {
                    break;
                }

                if (first == second || gone.Contains(second))
                {
                    continue;
                }

                byte[] a = vocabulary.Pieces[first], b = vocabulary.Pieces[second];
                if (a.Length > 0 && a.Length <= b.Length && b.AsSpan(0, a.Length).SequenceEqual(a))
                {
                    (int into, int from) = p[second] > p[first] ? (second, first) : (first, second);
                    p[into] += p[from];
                    p[from] = 0;
                    gone.Add(from);
                }
            }
        }

        order.RemoveAll(gone.Contains);
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
