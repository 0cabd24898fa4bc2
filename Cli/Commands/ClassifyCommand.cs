using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp classify</c>: what a sequence classifier (a <c>*ForSequenceClassification</c> folder: a reward model, a
/// classifier) makes of texts or conversations: each label's score and logit, as transformers' text-classification
/// pipeline gives them, a line per input.
/// </summary>
internal sealed class ClassifyCommand : ICommand
{
    /// <summary>Inputs classified and written at a time.</summary>
    private const int Group = 256;

    public string Name => "classify";

    public string Summary => "label scores of texts or conversations by a classifier or reward model (*ForSequenceClassification)";

    public string Usage => "qwensharp classify --model DIR (TEXT | --text TEXT... | --file F | --messages M.json...) [--json]";

    public int MaxPositionals => 1;

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("text", "TEXT", "a text to classify, encoded with the tokenizer's special tokens (repeat for several)", Repeatable: true),
        new("file", "F", "a UTF-8 text file: each non-empty line is one text", Repeatable: true),
        new("messages", "M.json", "a conversation (a JSON list of messages) through the chat template, no assistant turn opened: what a reward model rates (repeat for several)", Repeatable: true),
        new("json", null, "print JSON: {\"labels\":[...],\"score_function\",\"results\":[{\"label\",\"scores\":[...],\"logits\":[...],\"tokens\"}]}"),
        .. ModelLoading.RunSpecs,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp classify --model ~/models/sentiment-qwen2 --text \"What a lovely day.\" --text \"The service was slow.\"",
        "qwensharp classify --model ~/models/AceMath-7B-RM --messages answer1.json --messages answer2.json --json",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        // The inputs in the order given: TEXT, then each --text, --file's lines and --messages where they stand.
        List<(string Kind, string Value)> inputs = TextInput.TextsInOrder(args, "classify", "messages");
        if (inputs.Count == 0)
        {
            throw new UsageException("classify needs a text or a conversation: TEXT, --text TEXT, --file F or --messages M.json");
        }

        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        if (inputs.Any(i => i.Kind == "messages"))
        {
            ModelLoading.RequireChatTemplate(tokenizer, directory, "classify --messages");
        }

        int[][] ids = [.. inputs.Select(i => i.Kind == "text" ? tokenizer.Encode(i.Value, addSpecialTokens: true) : Conversation(tokenizer, i.Value))];
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            ClassifierHead head = model.RequireClassifier("classify", directory);
            using var embedder = new Embedder(model);
            bool json = args.Flag("json");
            stdout.Write(json
                ? $"{{\"labels\":[{string.Join(',', head.Labels.Select(Quote))}],\"score_function\":\"{head.ScoreFunction}\",\"results\":["
                : $"# {ids.Length} input(s), {model.Config.Architecture}: {head.ScoreFunction} scores, then logits, of {string.Join(", ", head.Labels)}\n");
            for (int first = 0; first < ids.Length; first += Group)
            {
                int[][] group = ids[first..Math.Min(ids.Length, first + Group)];
                float[][] logits = SequenceClassification.Logits(embedder, group);
                for (int i = 0; i < logits.Length; i++)
                {
                    float[] scores = head.Scores(logits[i]);
                    string label = head.Labels[ClassifierHead.Best(scores)];
                    stdout.Write(json
                        ? $"{(first + i == 0 ? "" : ",")}{{\"label\":{Quote(label)},\"scores\":[{Values(scores, ",")}],\"logits\":[{Values(logits[i], ",")}],\"tokens\":{group[i].Length}}}"
                        : $"{first + i}: {label}  scores {Values(scores, " ")}  logits {Values(logits[i], " ")}\n");
                }
            }

            if (json)
            {
                stdout.WriteLine("]}");
            }
        }

        return 0;
    }

    /// <summary>A --messages file's conversation through the chat template, as it stands (pictures refused: a classifier reads text).</summary>
    private static int[] Conversation(Tokenizer tokenizer, string path)
    {
        using ConversationInput conversation = ConversationInput.FromFile(path);
        if (conversation.References.Count > 0)
        {
            throw new UsageException($"{path}: classify reads text; the conversation holds pictures");
        }

        return tokenizer.Encode(conversation.Render(tokenizer, addGenerationPrompt: false));
    }

    private static string Quote(string text) => $"\"{System.Text.Json.JsonEncodedText.Encode(text)}\"";

    private static string Values(float[] values, string separator) =>
        string.Join(separator, values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
}
