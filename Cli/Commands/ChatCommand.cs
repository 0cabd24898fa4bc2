using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.AI;
using QwenSharp.Generation;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp chat</c>: a multi-turn conversation through the model's chat template, answers streamed
/// as they are generated, the KV cache kept across turns (each turn reads only its new messages). Reads
/// one message per line, from a terminal or a pipe; <c>/image PATH</c> attaches a picture to the next message
/// (Qwen2-VL), <c>/reset</c> starts over, <c>/exit</c> (or the end of input) quits, and Ctrl+C stops the answer
/// being written, not the program.
/// </summary>
internal sealed class ChatCommand : ICommand
{
    public string Name => "chat";

    public string Summary => "interactive chat through the model's chat template (reads stdin, one message per line)";

    public string Usage => "qwensharp chat [--model DIR] [--system TEXT] [--max-new-tokens N] [--context N] [sampling options] [--device D]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("system", "TEXT", "a system message at the start of the conversation"),
        new("max-new-tokens", "N", "most tokens per answer (default: generation_config.json, else 256)"),
        new("context", "N", "tokens the conversation may hold (default: max_position_embeddings); older turns are dropped to fit"),
        .. GenerateCommand.SamplingSpecs,
        GenerateCommand.PromptLookupSpec,
        ModelLoading.DraftModel,
        ModelLoading.DraftTokens,
        ModelLoading.Threads,
        ModelLoading.BatchInvariant,
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
        "qwensharp chat --model ~/models/Qwen2.5-0.5B-Instruct",
        "qwensharp chat --model ~/models/Qwen2.5-0.5B-Instruct --system \"Answer in French.\" --temperature 0.7",
        "printf 'Hi\\nName a prime.\\n' | qwensharp chat --model ~/models/Qwen2.5-0.5B-Instruct --greedy",
        "printf '/image photo.jpg\\nWhat is in it?\\n' | qwensharp chat --model ~/models/Qwen2-VL-2B-Instruct --greedy",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr) => Run(args, Console.In, stdout, stderr);

    public int Run(Arguments args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        string device = ModelLoading.CheckDevice(args);

        // A model without a chat template cannot chat: say so before loading the weights or waiting for input.
        ModelLoading.RequireChatTemplate(TextInput.LoadTokenizer(directory), directory, "chat");
        using QwenModel model = ModelLoading.LoadEngineModel(directory, device, args, stderr);
        model.Model.RequireGenerates();
        WeightPrefetch.Run(model.Model, Console.Error);
        int context = ModelLoading.Context(args, model.Model.Config, min: 2) ?? model.Model.Config.MaxPositionEmbeddings;
        var options = new TextGenerationOptions
        {
            MaxNewTokens = args.Int("max-new-tokens", 1),
            Sampling = GenerateCommand.OverridesFrom(args),
            Context = context,
            // With a draft model, its guesses a step (the Engine's default without --draft-tokens).
            PromptLookup = ModelLoading.GuessesFrom(args),
        };

        bool interactive = ReferenceEquals(stdin, Console.In) && !Console.IsInputRedirected;
        string? system = args.Value("system");
        var history = new List<ChatMessage>();
        var pictures = new List<AIContent>();
        var conversation = new ConversationCache();
        CancellationTokenSource? answering = null;
        ConsoleCancelEventHandler stopAnswer = (_, e) =>
        {
            if (answering is { } current)
            {
                e.Cancel = true;
                current.Cancel();
            }
        };

        if (interactive)
        {
            Console.CancelKeyPress += stopAnswer;
            stderr.WriteLine(Terminal.Dim("[chat: /image PATH attaches a picture, /reset starts over, /exit quits, Ctrl+C stops an answer]"));
        }

        try
        {
            Reset(history, system);
            while (true)
            {
                if (interactive)
                {
                    stdout.Write(Terminal.Bold("> "));
                    stdout.Flush();
                }

                string? line = stdin.ReadLine();
                if (line is null || line.Trim() == "/exit")
                {
                    break;
                }

                if (line.Trim().Length == 0)
                {
                    continue;
                }

                if (line.TrimStart().StartsWith("/image", StringComparison.Ordinal))
                {
                    AttachPicture(model, line.TrimStart()["/image".Length..].Trim(), pictures, stderr);
                    continue;
                }

                if (line.Trim() == "/reset")
                {
                    Reset(history, system);
                    pictures.Clear();
                    conversation.Dispose();
                    conversation = new ConversationCache();
                    if (interactive)
                    {
                        stderr.WriteLine(Terminal.Dim("[conversation reset]"));
                    }

                    continue;
                }

                history.Add(new ChatMessage(ChatRole.User, [.. pictures, new TextContent(line)]));
                pictures.Clear();
                if (FitToContext(model, history, context, options.MaxNewTokens, stderr) == 0)
                {
                    continue;
                }

                answering = new CancellationTokenSource();
                string answer = Answer(model, history, options, conversation, answering.Token, stdout, stderr, interactive);
                answering.Dispose();
                answering = null;
                history.Add(new ChatMessage(ChatRole.Assistant, answer));
            }
        }
        finally
        {
            if (interactive)
            {
                Console.CancelKeyPress -= stopAnswer;
            }

            conversation.Dispose();
        }

        return 0;
    }

    /// <summary>
    /// The conversation's prompt, with its oldest turns (a user message and its answer) dropped, the system
    /// message kept, until it leaves room for an answer (up to a quarter of the context). A message that does not
    /// fit even alone is refused for this turn only (and taken out of the history): an empty prompt is returned.
    /// </summary>
    private static int FitToContext(QwenModel model, List<ChatMessage> history, int context, int? maxNewTokens, TextWriter stderr)
    {
        int room = Math.Max(1, Math.Min(maxNewTokens ?? model.Model.GenerationConfig.DefaultMaxNewTokens(0), context / 4));
        int first = history.Count > 0 && history[0].Role == ChatRole.System ? 1 : 0;
        int length = model.PromptLength(history);
        int dropped = 0;
        while (length + room > context && history.Count - first > 1)
        {
            // The oldest user message, and the answer to it.
            history.RemoveAt(first);
            if (history.Count - first > 1 && history[first].Role == ChatRole.Assistant)
            {
                history.RemoveAt(first);
            }

            dropped++;
            length = model.PromptLength(history);
        }

        if (length >= context)
        {
            history.RemoveAt(history.Count - 1);
            stderr.WriteLine(Terminal.Dim($"[that message makes a prompt of {length} tokens, more than the context of {context}: not sent]"));
            return 0;
        }

        if (dropped > 0)
        {
            stderr.WriteLine(Terminal.Dim($"[the {dropped} oldest turn{(dropped == 1 ? "" : "s")} dropped to fit the context of {context} tokens]"));
        }

        return length;
    }

    private static void Reset(List<ChatMessage> history, string? system)
    {
        history.Clear();
        if (system is not null)
        {
            history.Add(new ChatMessage(ChatRole.System, system));
        }
    }

    /// <summary>/image PATH: checks the picture now (a bad one is one line, and the chat goes on) and keeps it for the next message.</summary>
    private static void AttachPicture(QwenModel model, string path, List<AIContent> pictures, TextWriter stderr)
    {
        try
        {
            if (model.Model.ImageProcessor is null)
            {
                throw new NotSupportedException("this model takes no pictures (it is not a Qwen2-VL model)");
            }

            if (path.Length == 0)
            {
                throw new ArgumentException("/image needs a path: /image PATH");
            }

            Images.PicturePrompts.Load(path, Directory.GetCurrentDirectory(), model.Model.ImageProcessor);
            byte[] bytes = File.ReadAllBytes(path);
            pictures.Add(new DataContent(bytes, bytes is [0xFF, 0xD8, ..] ? "image/jpeg" : "image/png"));
            stderr.WriteLine(Terminal.Dim($"[picture {path} attached to the next message]"));
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or ArgumentException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"error: {e.Message}");
        }
    }

    /// <summary>Streams one answer to stdout; returns its text (what was written before a Ctrl+C, if one came).</summary>
    private static string Answer(QwenModel model, List<ChatMessage> history, TextGenerationOptions options, ConversationCache conversation,
        CancellationToken cancel, TextWriter stdout, TextWriter stderr, bool interactive)
    {
        var answer = new StringBuilder();
        var clock = Stopwatch.StartNew();
        GenerationUpdate? final = null;

        // With pictures the whole conversation is read again (the kept cache is matched on ids, which cannot tell pictures apart).
        (int[] prompt, Qwen2VL.VisionPrompt? vision) = model.EncodeConversation(history, null, null);
        IAsyncEnumerator<GenerationUpdate> updates = model.StreamAsync(prompt, options, vision is null ? conversation : null, echoPrompt: false, cancel, vision)
            .GetAsyncEnumerator(cancel);
        try
        {
            while (updates.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                GenerationUpdate update = updates.Current;
                answer.Append(update.Text);
                stdout.Write(update.Text);
                stdout.Flush();
                final = update.IsFinal ? update : final;
            }
        }
        catch (OperationCanceledException)
        {
            stdout.Write(interactive ? Terminal.Dim(" [stopped]") : "");
        }
        finally
        {
            updates.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        stdout.WriteLine();
        stdout.Flush();
        if (interactive && final is not null)
        {
            stderr.WriteLine(Terminal.Dim(string.Create(CultureInfo.InvariantCulture,
                $"[{final.GeneratedTokens} tokens, {final.GeneratedTokens / Math.Max(clock.Elapsed.TotalSeconds, 1e-9):F1} tokens/s, {final.PromptTokensRead} of {final.PromptTokens} prompt tokens read]")));
        }

        return answer.ToString();
    }
}
