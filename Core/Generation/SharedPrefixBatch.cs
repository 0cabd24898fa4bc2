using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// The read that llama-perplexity's task scores (HellaSwag, Winogrande, multiple choice) share: texts that begin alike,
/// the tokens they share read once (in slot 0, then copied to every text's slot), then every text's own tokens in one
/// batch; and the log-probs of chosen tokens at chosen rows of logits, numbered as its batches number them: 0 after the
/// last shared token, then each text's own tokens in turn, each text's last one left out unless <c>lastRows</c>.
/// </summary>
public static class SharedPrefixBatch
{
    /// <summary>How many first tokens all the texts share.</summary>
    public static int SharedLength(IReadOnlyList<int[]> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        return texts.Min(s => s.AsSpan().CommonPrefixLength(texts[0]));
    }

    /// <summary>Rows of tokens and of logits the read takes: the shared tokens in one step, every text's own in the next.</summary>
    public static (int Rows, int LogitRows) Rows(IReadOnlyList<int[]> texts, bool lastRows)
    {
        int shared = SharedLength(texts);
        int own = texts.Sum(s => s.Length - shared);
        int logitRows = lastRows ? own : texts.Sum(s => Math.Max(0, s.Length - shared - 1));
        return (Math.Max(shared, own), Math.Max(1, logitRows));
    }

    /// <summary>
    /// The log-prob of each <paramref name="wanted"/> token at its row. A <paramref name="cache"/> of as many slots as
    /// texts and a <paramref name="state"/> as large as <see cref="Rows"/> are reused, so thousands of tasks allocate
    /// nothing each; without them the call makes its own. <paramref name="task"/> names the task in errors.
    /// </summary>
    public static double[] LogProbs(Qwen2Model model, IReadOnlyList<int[]> texts, bool lastRows, IReadOnlyList<(int Row, int Token)> wanted, string task, KvCache? cache = null, ForwardState? state = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(wanted);
        foreach (int[] text in texts)
        {
            model.ValidateTokens(text, task);
        }

        int shared = SharedLength(texts);
        if (shared == 0)
        {
            QwenThrow.Argument($"{task}: the texts share no first token, so nothing predicts their first (an empty context, and no BOS?)", nameof(texts));
        }

        int longest = texts.Max(s => s.Length);
        if (longest > model.Config.MaxPositionEmbeddings)
        {
            QwenThrow.Argument($"{task}: {longest} tokens, more than the model's context of {model.Config.MaxPositionEmbeddings}", nameof(texts));
        }

        (int rows, int logitRows) = Rows(texts, lastRows);
        using KvCache? ownCache = cache is not null && cache.Slots >= texts.Count && cache.Capacity >= longest ? null : model.CreateKvCache(slots: texts.Count, capacity: longest);
        using ForwardState? ownState = state is not null && state.MaxRows >= rows && state.MaxLogitRows >= logitRows ? null : model.CreateState(rows, logitRows);
        (cache, state) = (ownCache ?? cache!, ownState ?? state!);
        var logProbs = new double[wanted.Count];

        cache.Reset(0);
        var batch = new TokenBatch(rows);
        for (int p = 0; p < shared; p++)
        {
            batch.Add(texts[0][p], p, slot: 0, wantLogits: p == shared - 1);
        }

        model.Forward(batch, cache, state);
        Read(row => row == 0);
        for (int s = 1; s < texts.Count; s++)
        {
            cache.CopySlot(0, s, shared);
        }

        batch.Clear();
        for (int s = 0; s < texts.Count; s++)
        {
            for (int p = shared; p < texts[s].Length; p++)
            {
                batch.Add(texts[s][p], p, slot: s, wantLogits: lastRows || p < texts[s].Length - 1);
            }
        }

        if (batch.Count > 0)
        {
            model.Forward(batch, cache, state);
            Read(row => row > 0);
        }

        return logProbs;

        // Rows after the first are the second step's logit rows, one on.
        void Read(Func<int, bool> rowsOfThisStep)
        {
            for (int w = 0; w < wanted.Count; w++)
            {
                (int row, int token) = wanted[w];
                if (rowsOfThisStep(row))
                {
                    ReadOnlySpan<float> logits = state.LogitsOf(Math.Max(0, row - 1));
                    logProbs[w] = logits[token] - Generation.LogProbs.LogSumExp(logits);
                }
            }
        }
    }
}
