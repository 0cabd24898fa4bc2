using System.Buffers.Binary;
using System.Text;
using QwenSharp.Errors;

namespace QwenSharp.Generation;

/// <summary>
/// One multiple-choice task of llama.cpp's binary files (ARC, MMLU, TruthfulQA, HellaSwag as ikawrakow prepared them): a
/// question (or a context to continue), its answers, and which answers are right (label 1). Only the single-answer set
/// (mc1) is scored, as llama-perplexity scores it; <paramref name="Index"/> is the task's place in the file.
/// </summary>
public sealed record MultipleChoiceTask(string Question, IReadOnlyList<string> Answers, IReadOnlyList<int> Labels, int Index);

/// <summary>
/// llama-perplexity's <c>--multiple-choice</c> file: a u32 task count, a u32 table of each task's byte offset, then the
/// tasks; a task is a string (u32 byte length, UTF-8), then two answer sets (mc1, mc2), each a u32 count (at most 100),
/// that many strings and as many i32 labels; all little-endian. Each task is scored as HellaSwag's endings are
/// (<see cref="HellaSwag.EndingScores"/> over "question answer"), the highest mean log-prob per token the model's answer.
/// </summary>
public static class MultipleChoice
{
    /// <summary>llama.cpp reads at most this many answers a set.</summary>
    public const int MaxAnswers = 100;

    /// <summary>Every task of a file's bytes; anything malformed is an error naming the file, the task and the byte offset.</summary>
    public static IReadOnlyList<MultipleChoiceTask> Parse(ReadOnlySpan<byte> data, string source)
    {
        if (data.Length < 4)
        {
            QwenThrow.InvalidData($"{source}: {data.Length} bytes, too short for a multiple-choice file (a u32 task count, a table of task offsets, the tasks)");
        }

        uint count = BinaryPrimitives.ReadUInt32LittleEndian(data);
        if (count == 0)
        {
            QwenThrow.InvalidData($"{source}: the task count is 0, no tasks");
        }

        if (count > (data.Length - 4) / 4)
        {
            QwenThrow.InvalidData($"{source}: {count} tasks, but their offset table alone would take {4L * count} bytes and the file has {data.Length}; not a multiple-choice file?");
        }

        var tasks = new MultipleChoiceTask[count];
        var reader = new Reader(data, source, 4 + (4 * (int)count));
        for (int t = 0; t < tasks.Length; t++)
        {
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(data[(4 + (4 * t))..]);
            if (offset != reader.Offset)
            {
                QwenThrow.InvalidData($"{source}: task {t} starts at byte {reader.Offset}, but the offset table says {offset}");
            }

            reader.Task = t;
            string question = reader.String("its question");
            (string[] answers, int[] labels) = reader.Answers("mc1");
            reader.Answers("mc2");    // the set with several right answers: read past, not scored (as llama-perplexity)
            string where = $"{source}, task {t} (byte {offset})";
            if (question.Length == 0 || answers.Length == 0)
            {
                QwenThrow.InvalidData($"{where}: {(question.Length == 0 ? "an empty question" : "no answers")}, nothing to score");
            }

            int empty = Array.FindIndex(answers, a => a.Length == 0);
            if (empty >= 0)
            {
                QwenThrow.InvalidData($"{where}: answer {empty} is empty");
            }

            if (!labels.Contains(1))
            {
                QwenThrow.InvalidData($"{where}: no answer is labelled right (1), so every choice would count as wrong");
            }

            tasks[t] = new MultipleChoiceTask(question, answers, labels, t);
        }

        return tasks;
    }

    /// <summary>Reads the file's strings and answer sets in order, each error naming what it read and where.</summary>
    private ref struct Reader(ReadOnlySpan<byte> data, string source, int offset)
    {
        private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        private readonly ReadOnlySpan<byte> _data = data;

        public int Offset { get; private set; } = offset;

        public int Task { get; set; }

        public string String(string what)
        {
            int length = (int)Math.Min(UInt32(what), int.MaxValue);
            if (length > _data.Length - Offset)
            {
                QwenThrow.InvalidData($"{source}, task {Task}: {what} is {length} bytes at byte {Offset}, past the end of the file ({_data.Length} bytes)");
            }

            try
            {
                string text = Strict.GetString(_data.Slice(Offset, length));
                Offset += length;
                return text;
            }
            catch (DecoderFallbackException)
            {
                QwenThrow.InvalidData($"{source}, task {Task}: {what} at byte {Offset} is not UTF-8");
                throw;
            }
        }

        public (string[] Answers, int[] Labels) Answers(string set)
        {
            uint count = UInt32($"its {set} answer count");
            if (count > MaxAnswers)
            {
                QwenThrow.InvalidData($"{source}, task {Task}: {count} {set} answers at byte {Offset - 4}; llama.cpp's files hold at most {MaxAnswers}");
            }

            var answers = new string[count];
            for (int a = 0; a < answers.Length; a++)
            {
                answers[a] = String($"{set} answer {a}");
            }

            var labels = new int[count];
            for (int a = 0; a < labels.Length; a++)
            {
                labels[a] = (int)UInt32($"{set} label {a}");
            }

            return (answers, labels);
        }

        private uint UInt32(string what)
        {
            if (_data.Length - Offset < 4)
            {
                QwenThrow.InvalidData($"{source}, task {Task}: the file ends at byte {_data.Length}, before {what}");
            }

            uint value = BinaryPrimitives.ReadUInt32LittleEndian(_data[Offset..]);
            Offset += 4;
            return value;
        }
    }
}
