using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Images;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;
using QwenSharp.Tokenization;
using QwenSharp.Tokenization.Chat;

namespace QwenSharp.Cli;

/// <summary>
/// A whole conversation given on the command line (<c>--messages M.json</c>, or <c>--image</c> pictures with one
/// <c>--chat</c> text) with its pictures decoded: picture paths in the file are relative to the file.
/// </summary>
internal sealed class ConversationInput : IDisposable
{
    private ConversationInput(JsonDocument messages, JsonDocument? tools, string baseDirectory, string source)
    {
        Messages = messages;
        Tools = tools;
        BaseDirectory = baseDirectory;
        Source = source;
        References = PicturePrompts.References(messages.RootElement);
    }

    public JsonDocument Messages { get; }

    public JsonDocument? Tools { get; }

    public string BaseDirectory { get; }

    /// <summary>Where the conversation came from, for messages: the file, or "--chat".</summary>
    public string Source { get; }

    /// <summary>The pictures' references (paths) in the order the template writes them.</summary>
    public IReadOnlyList<string> References { get; }

    public List<RgbImage> Pictures { get; } = [];

    /// <summary>
    /// Reads a conversation file: a JSON list of messages (as <c>tokenize --messages</c> takes), or an object with
    /// <c>"messages"</c> and optionally <c>"tools"</c>.
    /// </summary>
    public static ConversationInput FromFile(string path)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(TextInput.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }

        JsonElement root = document.RootElement;
        string directory = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        if (root.ValueKind == JsonValueKind.Array)
        {
            return new ConversationInput(document, null, directory, path);
        }

        using (document)
        {
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("messages", out JsonElement messages) || messages.ValueKind != JsonValueKind.Array)
            {
                throw new InvalidDataException($"{path}: expected a JSON list of messages, or an object with a \"messages\" list");
            }

            JsonDocument? tools = null;
            if (root.TryGetProperty("tools", out JsonElement toolList) && toolList.ValueKind != JsonValueKind.Null)
            {
                if (toolList.ValueKind != JsonValueKind.Array)
                {
                    throw new InvalidDataException($"{path}: \"tools\" must be a JSON list of tool definitions");
                }

                tools = JsonDocument.Parse(toolList.GetRawText());
            }

            return new ConversationInput(JsonDocument.Parse(messages.GetRawText()), tools, directory, path);
        }
    }

    /// <summary>One user turn: the pictures (paths as given, relative to the working folder), then the text.</summary>
    public static ConversationInput FromChat(string text, IReadOnlyList<string> imagePaths)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartArray();
            writer.WriteStartObject();
            writer.WriteString("role", "user");
            writer.WriteStartArray("content");
            foreach (string path in imagePaths)
            {
                writer.WriteStartObject();
                writer.WriteString("type", "image");
                writer.WriteString("image", Path.GetFullPath(path));
                writer.WriteEndObject();
            }

            writer.WriteStartObject();
            writer.WriteString("type", "text");
            writer.WriteString("text", text);
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteEndObject();
            writer.WriteEndArray();
        }

        return new ConversationInput(JsonDocument.Parse(stream.ToArray()), null, Directory.GetCurrentDirectory(), "--chat");
    }

    /// <summary>
    /// The config and image processor of a vision model's folder, read without its weights: null for a model without
    /// a vision tower (a GGUF file, a text model).
    /// </summary>
    public static (Qwen2Config Config, ImageProcessorConfig Processor)? VisionOf(string modelDirectory)
    {
        string configPath = Path.Combine(modelDirectory, Qwen2Config.FileName);
        if (!Directory.Exists(modelDirectory) || !File.Exists(configPath))
        {
            return null;
        }

        Qwen2Config config = Qwen2Config.Load(configPath);
        return config.Vision is null ? null : (config, ImageProcessorConfig.LoadOrDefault(modelDirectory, config.Vision));
    }

    /// <summary>Decodes every picture (before any weight is read, so a bad file fails fast); a model without a vision tower refuses them.</summary>
    public void LoadPictures(ImageProcessorConfig? processor, string modelDirectory)
    {
        if (References.Count == 0)
        {
            return;
        }

        if (processor is null)
        {
            throw new UsageException($"{Source}: the conversation has {References.Count} picture(s), and {modelDirectory} is not a vision model (Qwen2-VL)");
        }

        foreach (string reference in References)
        {
            Pictures.Add(PicturePrompts.Load(reference, BaseDirectory, processor));
        }
    }

    /// <summary>
    /// The conversation through the chat template. One to be answered (<paramref name="addGenerationPrompt"/>) that ends
    /// with the assistant's message continues that message (assistant prefill, as <c>serve</c> continues it) instead of
    /// opening a new turn.
    /// </summary>
    /// <param name="tools">Tool definitions given beside the file, in place of its own.</param>
    public string Render(Tokenizer tokenizer, bool addGenerationPrompt, JsonElement? tools = null)
    {
        bool continues = addGenerationPrompt && ChatTemplate.EndsWithAssistantMessage(Messages.RootElement);
        try
        {
            return tokenizer.ApplyChatTemplate(Messages.RootElement, tools ?? Tools?.RootElement, addGenerationPrompt && !continues, templateArguments: null, continues);
        }
        catch (ArgumentException e) when (e.ParamName == "messages")
        {
            throw new InvalidDataException($"{Source}: the last message is the assistant's, which the answer continues, and {e.BareMessage()}");
        }
    }

    public void Dispose()
    {
        Messages.Dispose();
        Tools?.Dispose();
    }
}
