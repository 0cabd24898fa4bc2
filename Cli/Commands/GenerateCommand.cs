using System.Globalization;
using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp generate</c>: continues one or more prompts.</summary>
internal sealed class GenerateCommand : ICommand
{
    private const int DefaultMaxNewTokens = 256;

    public string Name => "generate";

    public string Summary => "continue one or more prompts";

    public string Usage => "qwensharp generate [--model DIR] --prompt-ids 1,2,3 [--prompt-ids ...] [--max-new-tokens N] [--greedy] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("prompt-ids", "IDS", "a prompt as token ids, comma-separated; repeat for a batch", Repeatable: true),
        new("prompt", "TEXT", "a prompt as text (needs the tokenizer)", Repeatable: true),
        new("chat", "TEXT", "a user message through the chat template (needs the tokenizer)", Repeatable: true),
        new("max-new-tokens", "N", "most new tokens per sequence (default: generation_config.json, else 256)"),
        new("greedy", null, "take the most likely token at every step (argmax of the logits)"),
        new("ignore-eos", null, "keep going past end-of-sequence ids (for benchmarks)"),
        new("context", "N", "context per sequence, prompt included (default: max_position_embeddings)"),
        new("json", null, "print JSON: {\"sequences\":[{\"ids\",\"stop_reason\"}],\"prefill_tokens_per_s\",\"decode_tokens_per_s\"}"),
        ModelLoading.Threads,
        ModelLoading.Device,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp generate --prompt-ids 1 --max-new-tokens 64 --greedy",
        "qwensharp generate --prompt-ids 1,403 --prompt-ids 1,300 --greedy --json",
        "qwensharp generate --model ~/models/Qwen2.5-0.5B-Instruct --prompt-ids 151644,872,198 --greedy --max-new-tokens 32",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Has("prompt") || args.Has("chat"))
        {
            throw new UsageException("--prompt and --chat need the tokenizer, which this build does not have yet; pass --prompt-ids");
        }

        if (!args.Flag("greedy"))
        {
            throw new UsageException("sampling is not in this build yet; pass --greedy for the argmax of the model's logits");
        }

        IReadOnlyList<string> promptTexts = args.Values("prompt-ids");
        if (promptTexts.Count == 0)
        {
            throw new UsageException("generate needs a prompt: --prompt-ids 1,2,3");
        }

        int[][] prompts = [.. promptTexts.Select(text => Arguments.ParseIds("prompt-ids", text))];
        int? maxNewTokens = args.Int("max-new-tokens", 0);
        int? context = args.Int("context", 1);
        bool json = args.Flag("json");
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(args, stderr);
        using (backend)
        using (model)
        {
            var options = new GenerationOptions
            {
                MaxNewTokens = maxNewTokens ?? DefaultMaxNewTokensFor(model.GenerationConfig, prompts),
                IgnoreEos = args.Flag("ignore-eos"),
                Context = context,
            };

            // One prompt in text mode streams its ids as they come; a batch prints each sequence when done.
            bool stream = !json && prompts.Length == 1;
            GenerationResult result = Generator.Greedy(model, prompts, options,
                stream ? (_, token) => { stdout.Write(token.ToString(CultureInfo.InvariantCulture)); stdout.Write(' '); stdout.Flush(); } : null);
            if (json)
            {
                JsonOutput.Write(stdout, writer => WriteJson(writer, result));
            }
            else
            {
                WriteText(stdout, stderr, result, stream);
            }
        }

        return 0;
    }

    /// <summary>generation_config.json's max_new_tokens, else what its max_length leaves after the longest prompt, else 256.</summary>
    private static int DefaultMaxNewTokensFor(GenerationConfig config, int[][] prompts)
    {
        if (config.MaxNewTokens is int maxNew)
        {
            return maxNew;
        }

        int longest = prompts.Max(p => p.Length);
        return config.MaxLength is int maxLength && maxLength > longest ? maxLength - longest : DefaultMaxNewTokens;
    }

    private static string StopReasonName(StopReason reason) => reason switch
    {
        StopReason.Eos => "eos",
        _ => "length",
    };

    private static void WriteJson(Utf8JsonWriter writer, GenerationResult result)
    {
        writer.WriteStartObject();
        writer.WriteStartArray("sequences");
        foreach (GeneratedSequence sequence in result.Sequences)
        {
            writer.WriteStartObject();
            writer.WriteStartArray("ids");
            foreach (int id in sequence.Ids)
            {
                writer.WriteNumberValue(id);
            }

            writer.WriteEndArray();
            writer.WriteString("stop_reason", StopReasonName(sequence.StopReason));
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteNumber("prefill_tokens_per_s", Math.Round(result.PrefillTokensPerSecond, 3));
        writer.WriteNumber("decode_tokens_per_s", Math.Round(result.DecodeTokensPerSecond, 3));
        writer.WriteEndObject();
    }

    private static void WriteText(TextWriter stdout, TextWriter stderr, GenerationResult result, bool streamed)
    {
        if (streamed)
        {
            stdout.WriteLine();
        }
        else
        {
            for (int s = 0; s < result.Sequences.Count; s++)
            {
                stdout.WriteLine($"[{s + 1}] {string.Join(' ', result.Sequences[s].Ids)}");
            }
        }

        string reasons = string.Join(", ", result.Sequences.Select(s => $"{StopReasonName(s.StopReason)} after {s.Ids.Count} tokens"));
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[{reasons}; prefill {result.PrefillTokensPerSecond:F1} tokens/s, decode {result.DecodeTokensPerSecond:F1} tokens/s]"));
    }
}
