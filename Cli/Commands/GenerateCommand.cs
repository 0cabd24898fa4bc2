using System.Globalization;
using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp generate</c>: continues one or more prompts.</summary>
internal sealed class GenerateCommand : ICommand
{
    private const int DefaultMaxNewTokens = 256;

    public string Name => "generate";

    public string Summary => "continue one or more prompts";

    public string Usage => "qwensharp generate [--model DIR] (--prompt TEXT | --chat TEXT | --prompt-ids 1,2,3)... [--max-new-tokens N] [--greedy] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("prompt-ids", "IDS", "a prompt as token ids, comma-separated; repeat for a batch", Repeatable: true),
        new("prompt", "TEXT", "a prompt as text, encoded as is (with the tokenizer's BOS where it adds one); repeat for a batch", Repeatable: true),
        new("chat", "TEXT", "a user message through the model's chat template, assistant turn opened; repeat for a batch", Repeatable: true),
        new("max-new-tokens", "N", "most new tokens per sequence (default: generation_config.json, else 256)"),
        new("greedy", null, "take the most likely token at every step (argmax of the logits)"),
        new("ignore-eos", null, "keep going past end-of-sequence ids (for benchmarks)"),
        new("context", "N", "context per sequence, prompt included (default: max_position_embeddings)"),
        new("json", null, "print JSON: {\"sequences\":[{\"ids\",\"text\",\"stop_reason\"}],\"prefill_tokens_per_s\",\"decode_tokens_per_s\"}"),
        ModelLoading.Threads,
        ModelLoading.Device,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp generate --prompt \"Once upon a time\" --max-new-tokens 64 --greedy",
        "qwensharp generate --prompt \"Lily\" --prompt \"Tom\" --greedy --json",
        "qwensharp generate --model ~/models/Qwen2.5-0.5B-Instruct --chat \"Name three primes.\" --greedy --max-new-tokens 64",
        "qwensharp generate --prompt-ids 1,403,407 --greedy --json",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        if (!args.Flag("greedy"))
        {
            throw new UsageException("sampling is not in this build yet; pass --greedy for the argmax of the model's logits");
        }

        List<(string Kind, string Value)> promptArgs = [.. args.InOrder.Where(a => a.Name is "prompt-ids" or "prompt" or "chat")];
        if (promptArgs.Count == 0)
        {
            throw new UsageException("generate needs a prompt: --prompt TEXT, --chat TEXT or --prompt-ids 1,2,3");
        }

        int? maxNewTokens = args.Int("max-new-tokens", 0);
        int? context = args.Int("context", 1);
        bool json = args.Flag("json");
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        bool needsText = promptArgs.Any(p => p.Kind != "prompt-ids");
        Tokenizer? tokenizer = needsText ? TextInput.LoadTokenizer(directory) : TextInput.TryLoadTokenizer(directory);
        int[][] prompts = [.. promptArgs.Select(p => Encode(p.Kind, p.Value, tokenizer))];
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args);
        using (backend)
        using (model)
        {
            var options = new GenerationOptions
            {
                MaxNewTokens = maxNewTokens ?? DefaultMaxNewTokensFor(model.GenerationConfig, prompts),
                IgnoreEos = args.Flag("ignore-eos"),
                Context = context,
            };

            for (int p = 0; p < prompts.Length; p++)
            {
                model.ValidateTokens(prompts[p], prompts.Length == 1 ? "prompt" : $"prompt {p + 1}");
            }

            // One prompt in text mode streams as it is generated; a batch prints each sequence when done.
            bool stream = !json && prompts.Length == 1;
            Action<int, int>? onToken = null;
            StreamingDecoder? decoder = null;
            if (stream && tokenizer is null)
            {
                onToken = (_, token) => { stdout.Write(token.ToString(CultureInfo.InvariantCulture)); stdout.Write(' '); stdout.Flush(); };
            }
            else if (stream)
            {
                decoder = tokenizer!.CreateStreamingDecoder(skipSpecialTokens: true);
                onToken = StreamText(tokenizer, decoder, promptArgs[0].Kind == "chat" ? [] : prompts[0], stdout);
            }

            GenerationResult result = Generator.Greedy(model, prompts, options, onToken);
            if (decoder is not null)
            {
                // What was held back for a character the last tokens did not complete.
                stdout.Write(decoder.Finish());
            }

            if (json)
            {
                JsonOutput.Write(stdout, writer => WriteJson(writer, result, tokenizer));
            }
            else
            {
                WriteText(stdout, stderr, result, stream, tokenizer);
            }
        }

        return 0;
    }

    /// <summary>
    /// Token ids for one prompt: ids as given; text with the tokenizer's special tokens (Llama's BOS); a chat
    /// message through the model's chat template, with the assistant turn opened.
    /// </summary>
    private static int[] Encode(string kind, string value, Tokenizer? tokenizer) => kind switch
    {
        "prompt-ids" => Arguments.ParseIds("prompt-ids", value),
        "prompt" => tokenizer!.Encode(value, addSpecialTokens: true),
        _ => tokenizer!.Encode(tokenizer.ApplyChatTemplate([("user", value)], addGenerationPrompt: true)),
    };

    /// <summary>
    /// Prints the prompt, then each piece of text as soon as it forms whole characters. The decoder first
    /// reads the prompt, so the continuation is spaced as in the whole text (sentencepiece's leading ▁).
    /// </summary>
    private static Action<int, int> StreamText(Tokenizer tokenizer, StreamingDecoder decoder, int[] echoedPrompt, TextWriter stdout)
    {
        foreach (int id in echoedPrompt)
        {
            stdout.Write(decoder.Append(id));
        }

        stdout.Flush();
        return (_, token) =>
        {
            // The model's vocabulary may be padded beyond the tokenizer's; such ids have no text.
            if (tokenizer.IdToToken(token) is not null)
            {
                stdout.Write(decoder.Append(token));
                stdout.Flush();
            }
        };
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

    /// <summary>The text of generated ids, special tokens skipped (ids past the tokenizer's vocabulary, padding of the model's, have none).</summary>
    private static string TextOf(IReadOnlyList<int> ids, Tokenizer tokenizer) =>
        tokenizer.Decode(ids.Where(id => tokenizer.IdToToken(id) is not null), skipSpecialTokens: true);

    private static void WriteJson(Utf8JsonWriter writer, GenerationResult result, Tokenizer? tokenizer)
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
            if (tokenizer is not null)
            {
                writer.WriteString("text", TextOf(sequence.Ids, tokenizer));
            }

            writer.WriteString("stop_reason", StopReasonName(sequence.StopReason));
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteNumber("prefill_tokens_per_s", Math.Round(result.PrefillTokensPerSecond, 3));
        writer.WriteNumber("decode_tokens_per_s", Math.Round(result.DecodeTokensPerSecond, 3));
        writer.WriteEndObject();
    }

    private static void WriteText(TextWriter stdout, TextWriter stderr, GenerationResult result, bool streamed, Tokenizer? tokenizer)
    {
        if (streamed)
        {
            stdout.WriteLine();
        }
        else
        {
            for (int s = 0; s < result.Sequences.Count; s++)
            {
                IReadOnlyList<int> ids = result.Sequences[s].Ids;
                stdout.WriteLine($"[{s + 1}] {(tokenizer is null ? string.Join(' ', ids) : TextOf(ids, tokenizer))}");
            }
        }

        // The summary goes to stderr after the text, so the text must be out first.
        stdout.Flush();
        string reasons = string.Join(", ", result.Sequences.Select(s => $"{StopReasonName(s.StopReason)} after {s.Ids.Count} tokens"));
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[{reasons}; prefill {result.PrefillTokensPerSecond:F1} tokens/s, decode {result.DecodeTokensPerSecond:F1} tokens/s]"));
    }
}
