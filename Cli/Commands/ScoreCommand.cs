using System.Globalization;
using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp score</c>: the log-prob of every token of a sequence under the model, and its perplexity.</summary>
internal sealed class ScoreCommand : ICommand
{
    public string Name => "score";

    public string Summary => "log-probs of every token of a sequence, mean NLL and perplexity";

    public string Usage => "qwensharp score [--model DIR] (--prompt-ids 1,2,3 | --file F | --messages M.json) [--top K] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("prompt-ids", "IDS", "the token ids to score, comma-separated"),
        new("file", "F", "a UTF-8 text file to score (through the model's tokenizer)"),
        new("messages", "M.json", "a conversation to score through the chat template (answers included, no generation prompt); pictures for a Qwen2-VL model, whose pads are not scored"),
        new("generation-prompt", null, "with --messages: end with the opening of an assistant turn (to score a prompt as generate reads it)"),
        new("top", "K", "also list the K most likely tokens at each position (default 5)"),
        new("json", null, "print JSON: {\"positions\":[{\"id\",\"logprob\",\"top\"}],\"mean_nll\",\"perplexity\"}"),
        ModelLoading.Threads,
        ModelLoading.Quantize,
        ModelLoading.Imatrix,
        ModelLoading.Lora,
        ModelLoading.LoraScale,
        ModelLoading.KvCacheType,
        ModelLoading.Device,
        ModelLoading.GpuLayers,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp score --prompt-ids 1,403,407,261 --json",
        "qwensharp score --model ~/models/Qwen2.5-0.5B-Instruct --prompt-ids 151644,872,198 --top 10",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        if ((args.Has("file") ? 1 : 0) + (args.Has("prompt-ids") ? 1 : 0) + (args.Has("messages") ? 1 : 0) != 1)
        {
            throw new UsageException("score needs one of --prompt-ids 1,2,3, --file F and --messages M.json");
        }

        if (args.Flag("generation-prompt") && !args.Has("messages"))
        {
            throw new UsageException("--generation-prompt goes with --messages");
        }

        int top = args.Int("top", 0, 1000) ?? 5;
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        using ConversationInput? conversation = args.Value("messages") is string messagesPath ? ConversationInput.FromFile(messagesPath) : null;
        Tokenizer? chatTokenizer = null;
        if (conversation is not null)
        {
            chatTokenizer = TextInput.LoadTokenizer(directory);
            ModelLoading.RequireChatTemplate(chatTokenizer, directory, "score --messages");
            conversation.LoadPictures(ConversationInput.VisionOf(directory)?.Processor, directory);
        }

        // A file is scored as the model reads text: its tokens with the tokenizer's BOS where it adds one.
        int[] ids = args.Value("file") is string file
            ? TextInput.LoadTokenizer(directory).Encode(TextInput.ReadUtf8File(file), addSpecialTokens: true)
            : conversation is not null ? [0]
            : Arguments.ParseIds("prompt-ids", args.Value("prompt-ids")!);
        if (ids.Length == 0)
        {
            throw new UsageException($"--file {args.Value("file")}: the file holds no text to score");
        }

        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            Qwen2VL.VisionPrompt? vision = null;
            if (conversation is not null)
            {
                (ids, vision) = Images.PicturePrompts.Encode(model, chatTokenizer!, conversation.Render(chatTokenizer!, addGenerationPrompt: args.Flag("generation-prompt")), conversation.Pictures);
            }

            ScoreResult result = Scorer.Score(model, ids, top, vision: vision);
            if (args.Flag("json"))
            {
                JsonOutput.Write(stdout, writer => WriteJson(writer, result));
            }
            else
            {
                WriteText(stdout, ids, result, TextInput.TryLoadTokenizer(directory));
            }
        }

        return 0;
    }

    private static void WriteJson(Utf8JsonWriter writer, ScoreResult result)
    {
        writer.WriteStartObject();
        writer.WriteStartArray("positions");
        foreach (PositionScore position in result.Positions)
        {
            writer.WriteStartObject();
            if (position.NextId is int id)
            {
                writer.WriteNumber("id", id);
                writer.WriteNumberOrNull("logprob", position.NextLogprob);
            }

            writer.WriteTop(position.Top);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteNumberOrNull("mean_nll", result.MeanNll);
        writer.WriteNumberOrNull("perplexity", result.Perplexity);
        writer.WriteEndObject();
    }

    /// <summary>One line per position: the token, the next one and its log-prob, the most likely tokens; each id with its text when the folder has a tokenizer.</summary>
    private static void WriteText(TextWriter output, int[] ids, ScoreResult result, Tokenizer? tokenizer)
    {
        // A padding row of the embedding (an id past the tokenizer's vocabulary) has no text: its id alone.
        string Token(int id) => tokenizer?.IdToToken(id) is null ? id.ToString(CultureInfo.InvariantCulture)
            : $"{id.ToString(CultureInfo.InvariantCulture)} {TokenizeCommand.Visible(tokenizer.TokenBytes(id))}";
        output.WriteLine("pos  token -> next  logprob  | top");
        for (int i = 0; i < result.Positions.Count; i++)
        {
            PositionScore p = result.Positions[i];
            string next = p.NextId is int id ? Token(id) : "-";
            string logprob = p.NextLogprob?.ToString("F4", CultureInfo.InvariantCulture) ?? "-";
            string top = string.Join("  ", p.Top.Select(t => string.Create(CultureInfo.InvariantCulture, $"{Token(t.Id)}:{t.Logprob:F3}")));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{i,3}  {Token(ids[i])} -> {next}  {logprob}  | {top}"));
        }

        if (result.MeanNll is double nll)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"mean NLL {nll:F6}, perplexity {result.Perplexity:F4} over {result.Positions.Count(p => p.NextLogprob is not null)} tokens"));
        }
    }
}
