using System.Text.Json;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp tokenize</c>: text, a file or a chat through the model's tokenizer (and chat template).</summary>
internal sealed class TokenizeCommand : ICommand
{
    public string Name => "tokenize";

    public string Summary => "token ids of a text, a file or a conversation (through the chat template)";

    public string Usage => "qwensharp tokenize [--model DIR] (TEXT | --file F | --messages M.json [--tools T.json] [--no-generation-prompt]) [--json]";

    public int MaxPositionals => 1;

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("file", "F", "tokenize the exact bytes of a UTF-8 file"),
        new("messages", "M.json", "render a conversation (a JSON list of messages, or {\"messages\", \"tools\"}) with the model's chat template, then tokenize; a Qwen2-VL model's picture items expand to one pad per merged patch"),
        new("tools", "T.json", "a JSON list of tool definitions for the chat template (with --messages)"),
        new("no-generation-prompt", null, "render the chat as it stands: no assistant turn opened after it, and a last message of the assistant's not continued (as generate continues it)"),
        new("no-special", null, "treat special-token text such as <|im_start|> as ordinary text"),
        new("json", null, "print JSON: {\"ids\":[...]} (with --messages also \"text\")"),
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp tokenize \"Once upon a time\"",
        "qwensharp tokenize --model ~/models/Qwen2.5-0.5B-Instruct --file notes.txt --json",
        "qwensharp tokenize --model ~/models/Qwen2.5-0.5B-Instruct --messages chat.json --tools tools.json --json",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        int sources = args.Positionals.Count + (args.Has("file") ? 1 : 0) + (args.Has("messages") ? 1 : 0);
        if (sources != 1)
        {
            throw new UsageException(sources == 0 ? "tokenize needs TEXT, --file F or --messages M.json"
                : "give only one of TEXT, --file and --messages");
        }

        if ((args.Has("tools") || args.Flag("no-generation-prompt")) && !args.Has("messages"))
        {
            throw new UsageException("--tools and --no-generation-prompt go with --messages");
        }

        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        string? rendered = null;
        string text;
        List<int>? pictureTokens = null;
        Qwen2.Qwen2Config? config = null;
        if (args.Value("messages") is string messagesPath)
        {
            ModelLoading.RequireChatTemplate(tokenizer, directory, "tokenize --messages");
            using ConversationInput conversation = ConversationInput.FromFile(messagesPath);
            using JsonDocument? tools = args.Value("tools") is string toolsPath ? TextInput.ReadJsonList(toolsPath, "tool definitions") : null;
            rendered = text = conversation.Render(tokenizer, !args.Flag("no-generation-prompt"), tools?.RootElement);

            // Pictures: decoded for their size only (the processor's resize decides how many pads each becomes).
            (Qwen2.Qwen2Config Config, Qwen2VL.ImageProcessorConfig Processor)? vision = ConversationInput.VisionOf(directory);
            conversation.LoadPictures(vision?.Processor, directory);
            if (conversation.Pictures.Count > 0)
            {
                config = vision!.Value.Config;
                pictureTokens = [.. conversation.Pictures.Select(p => Images.PicturePrompts.TokensOf(p, vision.Value.Processor))];
            }
        }
        else
        {
            text = args.Value("file") is string file ? TextInput.ReadUtf8File(file) : args.Positionals[0];
        }

        int[] ids = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: !args.Flag("no-special"));
        if (pictureTokens is not null)
        {
            ids = [.. Qwen2VL.VisionPrompt.ExpandImagePads(ids, pictureTokens, config!)];
        }
        if (args.Flag("json"))
        {
            JsonOutput.Write(stdout, writer =>
            {
                writer.WriteStartObject();
                if (rendered is not null)
                {
                    writer.WriteString("text", rendered);
                }

                writer.WriteStartArray("ids");
                foreach (int id in ids)
                {
                    writer.WriteNumberValue(id);
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            });
            return 0;
        }

        if (rendered is not null)
        {
            stdout.WriteLine(rendered);
            stdout.WriteLine();
        }

        // Each token's text in context (a streaming decode), so spaces show where they are; the bytes of a
        // character split across tokens print with its last token. A token with no text there shows its own bytes:
        // part of a character (as \xNN), or a space the text's start drops (sentencepiece's leading ▁).
        StreamingDecoder pieces = tokenizer.CreateStreamingDecoder(skipSpecialTokens: false);
        for (int i = 0; i < ids.Length; i++)
        {
            string piece = pieces.Append(ids[i]) + (i == ids.Length - 1 ? pieces.Finish() : "");
            byte[] own = tokenizer.TokenBytes(ids[i]);
            string shown = piece.Length == 0 && !tokenizer.IsSpecial(ids[i])
                ? Visible(own) + (System.Text.Unicode.Utf8.IsValid(own) ? "" : "  (part of a character)")
                : Visible(piece) + (tokenizer.IsSpecial(ids[i]) ? "  (special)" : "");
            stdout.WriteLine($"{ids[i],8}  {shown}");
        }

        stderr.WriteLine($"[{ids.Length} tokens]");
        return 0;
    }

    /// <summary>
    /// A token's own bytes (<see cref="Tokenizer.TokenBytes"/>) in quotes: as <see cref="Visible(string)"/> where they are
    /// valid UTF-8, else each byte as \xNN (part of a character split across tokens).
    /// </summary>
    internal static string Visible(byte[] piece) => System.Text.Unicode.Utf8.IsValid(piece)
        ? Visible(System.Text.Encoding.UTF8.GetString(piece))
        : "\"" + string.Concat(piece.Select(b => $"\\x{b:X2}")) + "\"";

    /// <summary>The piece in quotes, with line breaks, tabs and other control characters escaped.</summary>
    internal static string Visible(string piece)
    {
        var builder = new System.Text.StringBuilder("\"");
        foreach (char c in piece)
        {
            builder.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '"' => "\\\"",
                '\\' => "\\\\",
                _ when char.IsControl(c) => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        return builder.Append('"').ToString();
    }
}
