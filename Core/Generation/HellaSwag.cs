using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>A HellaSwag task as llama.cpp's file holds it: a context, the index of its right ending, four endings, and the line it starts on.</summary>
public sealed record HellaSwagTask(string Context, int Gold, IReadOnlyList<string> Endings, int Line);

/// <summary>
/// HellaSwag scored as <c>llama-perplexity --hellaswag</c> scores it (acc_norm): each task's four texts (the context, a
/// space, an ending) read after their shared first tokens once, the ending that the model gives the highest mean log-prob
/// per token (its tokens after the shared ones) taken as its answer. The file is llama.cpp's
/// (<c>hellaswag_val_full.txt</c>): six lines a task, the context, the right ending's index (0-3), the four endings.
/// </summary>
public static class HellaSwag
{
    /// <summary>The tasks of a file's text; a malformed one is an error naming the file and line.</summary>
    public static IReadOnlyList<HellaSwagTask> Parse(string text, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] lines = text.Split('\n');
        int count = lines.Length;
        while (count > 0 && lines[count - 1].TrimEnd('\r').Length == 0)
        {
            count--;    // a final newline (or several) ends the file, not a task
        }

        if (count == 0 || count % 6 != 0)
        {
            QwenThrow.InvalidData($"{source}: {count} lines; a HellaSwag file holds six a task (context, the right ending's index 0-3, four endings)");
        }

        var tasks = new HellaSwagTask[count / 6];
        for (int t = 0; t < tasks.Length; t++)
        {
            string Line(int i) => lines[(6 * t) + i].TrimEnd('\r');
            if (!int.TryParse(Line(1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int gold) || gold > 3)
            {
                QwenThrow.InvalidData($"{source}, line {(6 * t) + 2}: '{Line(1)}' is not the right ending's index (0, 1, 2 or 3)");
            }

            tasks[t] = new HellaSwagTask(Line(0), gold, [Line(2), Line(3), Line(4), Line(5)], (6 * t) + 1);
        }

        return tasks;
    }

    /// <summary>
    /// The mean log-prob per token the model gives each of <paramref name="sequences"/> (a task's texts as token ids)
    /// after the first tokens they share: the first ending token from the last shared one, each next from the one before.
    /// A <paramref name="cache"/> and <paramref name="state"/> large enough (<see cref="SharedPrefixBatch.Rows"/>, every text's last row left out) are reused, so thousands of
    /// tasks allocate nothing each; without them the call makes its own.
    /// </summary>
    public static double[] EndingScores(Qwen2Model model, IReadOnlyList<int[]> sequences, string task, KvCache? cache = null, ForwardState? state = null)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        int shared = SharedPrefixBatch.SharedLength(sequences);
        for (int s = 0; s < sequences.Count; s++)
        {
            if (sequences[s].Length == shared)
            {
                QwenThrow.Argument($"{task}: ending {s} adds no tokens to what the endings share", nameof(sequences));
            }
        }

        // llama.cpp's rows: 0 after the shared tokens (every ending's first), then each ending's tokens but its last.
        var wanted = new List<(int Row, int Token)>();
        int row = 1;
        foreach (int[] sequence in sequences)
        {
            wanted.Add((0, sequence[shared]));
            for (int p = shared; p < sequence.Length - 1; p++)
            {
                wanted.Add((row++, sequence[p + 1]));
            }
        }

        double[] logProbs = SharedPrefixBatch.LogProbs(model, sequences, lastRows: false, wanted, task, cache, state);
        var scores = new double[sequences.Count];
        int next = 0;
        for (int s = 0; s < sequences.Count; s++)
        {
            int count = sequences[s].Length - shared;
            scores[s] = logProbs[next..(next + count)].Sum() / count;
            next += count;
        }

        return scores;
    }

    /// <summary>The first index of the highest score (llama.cpp's choice on ties).</summary>
    public static int Choice(IReadOnlyList<double> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        int best = 0;
        for (int s = 1; s < scores.Count; s++)
        {
            if (scores[s] > scores[best])
            {
                best = s;
            }
        }

        return best;
    }

    /// <summary>The Wilson score interval (95%) of <paramref name="correct"/> out of <paramref name="count"/>, as llama-perplexity prints it.</summary>
    public static (double Low, double High) Interval(int correct, int count)
    {
        const double za = 1.95996398454;
        double frequency = (double)correct / count, z = za * za / count;
        double spread = z * Math.Sqrt(count * ((4.0 * frequency * (1 - frequency)) + z)) / (za + za);
        return ((frequency + (z * 0.5) - spread) / (1.0 + z), (frequency + (z * 0.5) + spread) / (1.0 + z));
    }
}
