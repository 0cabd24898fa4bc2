using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>One Winogrande task: the sentence around its blank, the two choices for the blank, the right one (1 or 2).</summary>
public sealed record WinograndeTask(string First, string Second, string Choice1, string Choice2, int Answer, int Line);

/// <summary>
/// llama-perplexity's Winogrande score (<c>--winogrande</c>): each task's sentence with either choice in its blank, and the
/// choice whose sentence the model finds likelier after the blank wins. Where both choices leave more than 3 tokens after
/// the tokens the two sentences share, only the tokens after the choice are scored; else everything after the shared
/// tokens. The last token is left out where more than one is scored; the score is the mean log-prob per token.
/// llama.cpp takes the second sentence's first scored token, when the choices are scored too, from the logits after the
/// first sentence's last token (its source says so: "FIXME: this uses the wrong first logits"); so does this, so that the
/// scores equal its own.
/// </summary>
public static class Winogrande
{
    /// <summary>
    /// llama.cpp's winogrande CSV (winogrande-debiased-eval.csv): a line a task, <c>index,sentence,choice1,choice2,answer</c>,
    /// the sentence quoted where it holds commas, its blank an underscore. A first line that is a header is skipped.
    /// </summary>
    public static IReadOnlyList<WinograndeTask> Parse(string text, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tasks = new List<WinograndeTask>();
        string[] lines = text.Split('\n');
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n].TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }

            int[] commas = Commas(line);
            if (commas.Length < 4)
            {
                QwenThrow.InvalidData($"{source}, line {n + 1}: not index,sentence,choice1,choice2,answer (found {commas.Length} of its 4 commas outside quotes)");
            }

            string sentence = line[commas[0] + 1] == '"' ? line[(commas[0] + 2)..(commas[1] - 1)] : line[(commas[0] + 1)..commas[1]];
            string answer = line[(commas[3] + 1)..].Trim();
            if (answer is not ("1" or "2"))
            {
                if (tasks.Count == 0 && n == 0)
                {
                    continue;    // a header line
                }

                QwenThrow.InvalidData($"{source}, line {n + 1}: answer '{answer}' is neither 1 nor 2");
            }

            int blank = sentence.IndexOf('_', StringComparison.Ordinal);
            if (blank < 0)
            {
                QwenThrow.InvalidData($"{source}, line {n + 1}: the sentence has no _ for the choices to fill");
            }

            tasks.Add(new WinograndeTask(sentence[..blank], sentence[(blank + 1)..], line[(commas[1] + 1)..commas[2]], line[(commas[2] + 1)..commas[3]], answer[0] - '0', n + 1));
        }

        if (tasks.Count == 0)
        {
            QwenThrow.InvalidData($"{source}: no Winogrande tasks (lines of index,sentence,choice1,choice2,answer)");
        }

        return tasks;
    }

    /// <summary>The first four commas outside double quotes (llama.cpp's parse).</summary>
    private static int[] Commas(string line)
    {
        var commas = new List<int>(4);
        bool quoted = false;
        for (int i = 0; i < line.Length && commas.Count < 4; i++)
        {
            if (line[i] == '"')
            {
                quoted = !quoted;
            }
            else if (line[i] == ',' && !quoted)
            {
                commas.Add(i);
            }
        }

        return [.. commas];
    }

    /// <summary>
    /// Both choices' scores. <paramref name="sentences"/>: the sentence with choice 1 and with choice 2, as token ids;
    /// <paramref name="throughChoice"/>: the tokens of the sentence's start with each choice (llama.cpp's n_base).
    /// A <paramref name="cache"/> of 2 slots and a <paramref name="state"/> large enough (<see cref="SharedPrefixBatch.Rows"/>, every row kept) are reused.
    /// </summary>
    public static (double First, double Second) Scores(Qwen2Model model, int[][] sentences, int[] throughChoice, string task, KvCache? cache = null, ForwardState? state = null)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        ArgumentNullException.ThrowIfNull(throughChoice);
        int[] a = sentences[0], b = sentences[1];
        int shared = SharedPrefixBatch.SharedLength(sentences);

        // llama.cpp's rows: 0 after the last shared token, then sentence 1's tokens from the shared ones on, then sentence 2's.
        bool choicesSkipped = a.Length - shared > 3 && b.Length - shared > 3;
        var wanted = new List<(int Row, int Token)>();
        var counts = new int[2];
        for (int s = 0; s < 2; s++)
        {
            int[] tokens = sentences[s];
            int start = choicesSkipped ? throughChoice[s] : shared;
            int last = tokens.Length - start > 1 ? 1 : 0;
            int row = s == 0 ? start - shared : (a.Length - shared) + (start - shared);
            for (int j = start - 1; j < tokens.Length - 1 - last; j++, row++)
            {
                wanted.Add((row, tokens[j + 1]));
            }

            counts[s] = tokens.Length - start - last;
        }

        double[] logProbs = SharedPrefixBatch.LogProbs(model, sentences, lastRows: true, wanted, task, cache, state);
        return (logProbs[..counts[0]].Sum() / counts[0], logProbs[counts[0]..].Sum() / counts[1]);
    }
}
