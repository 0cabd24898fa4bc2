using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace QwenSharp;

/// <summary>
/// Microsoft.Extensions.AI messages and tools as the JSON chat templates take (transformers' / OpenAI's
/// shapes): assistant function calls as <c>tool_calls</c> with a <c>function</c> wrapper and object
/// arguments, function results as <c>tool</c> messages, tools as <c>{"type": "function", "function": {...}}</c>.
/// And back: Qwen's <c>&lt;tool_call&gt;{...}&lt;/tool_call&gt;</c> blocks in generated text as function calls.
/// </summary>
internal static class ChatJson
{
    public static JsonDocument Messages(IEnumerable<ChatMessage> messages, string? instructions)
    {
        List<ChatMessage> list = [.. messages];
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartArray();
            if (instructions is not null && !list.Any(m => m.Role == ChatRole.System))
            {
                WriteText(writer, "system", instructions);
            }

            foreach (ChatMessage message in list)
            {
                WriteMessage(writer, message);
            }

            writer.WriteEndArray();
        }

        return JsonDocument.Parse(stream.ToArray());
    }

    public static JsonDocument? Tools(IList<AITool>? tools)
    {
        AIFunctionDeclaration[] functions = tools is null ? [] : [.. tools.OfType<AIFunctionDeclaration>()];
        if (tools is not null && functions.Length != tools.Count)
        {
            throw new NotSupportedException($"only function tools can go through a chat template; got {tools.First(t => t is not AIFunctionDeclaration).GetType().Name}");
        }

        if (functions.Length == 0)
        {
            return null;
        }

        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartArray();
            foreach (AIFunctionDeclaration function in functions)
            {
                writer.WriteStartObject();
                writer.WriteString("type", "function");
                writer.WriteStartObject("function");
                writer.WriteString("name", function.Name);
                writer.WriteString("description", function.Description);
                writer.WritePropertyName("parameters");
                function.JsonSchema.WriteTo(writer);
                writer.WriteEndObject();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        }

        return JsonDocument.Parse(stream.ToArray());
    }

    private static void WriteText(Utf8JsonWriter writer, string role, string content)
    {
        writer.WriteStartObject();
        writer.WriteString("role", role);
        writer.WriteString("content", content);
        writer.WriteEndObject();
    }

    private static void WriteMessage(Utf8JsonWriter writer, ChatMessage message)
    {
        FunctionResultContent[] results = [.. message.Contents.OfType<FunctionResultContent>()];
        foreach (FunctionResultContent result in results)
        {
            // Each function result is a tool message of its own, as transformers' templates expect.
            WriteText(writer, "tool", result.Result switch
            {
                null => "",
                string text => text,
                JsonElement element => element.ValueKind == JsonValueKind.String ? element.GetString()! : element.GetRawText(),
                object value => JsonSerializer.Serialize(value, AIJsonUtilities.DefaultOptions.GetTypeInfo(value.GetType())),
            });
        }

        FunctionCallContent[] calls = [.. message.Contents.OfType<FunctionCallContent>()];
        if (results.Length > 0 && calls.Length == 0 && message.Text.Length == 0)
        {
            return;
        }

        writer.WriteStartObject();
        writer.WriteString("role", message.Role.Value);
        if (message.Contents.Any(c => c is DataContent))
        {
            WriteParts(writer, message);
        }
        else
        {
            writer.WriteString("content", message.Text);
        }

        if (calls.Length > 0)
        {
            writer.WriteStartArray("tool_calls");
            foreach (FunctionCallContent call in calls)
            {
                writer.WriteStartObject();
                writer.WriteString("type", "function");
                writer.WriteStartObject("function");
                writer.WriteString("name", call.Name);
                writer.WritePropertyName("arguments");
                JsonSerializer.Serialize(writer, call.Arguments ?? new Dictionary<string, object?>(),
                    AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>)));
                writer.WriteEndObject();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndObject();
    }

    /// <summary>
    /// Content with pictures as Qwen2-VL's template takes it: a list of parts in order, text as
    /// <c>{"type": "text", "text"}</c>, a PNG or JPEG as <c>{"type": "image", "image": data URL}</c>.
    /// </summary>
    private static void WriteParts(Utf8JsonWriter writer, ChatMessage message)
    {
        writer.WriteStartArray("content");
        foreach (AIContent content in message.Contents)
        {
            switch (content)
            {
                case TextContent text:
                    writer.WriteStartObject();
                    writer.WriteString("type", "text");
                    writer.WriteString("text", text.Text);
                    writer.WriteEndObject();
                    break;
                case DataContent data when data.MediaType is "image/png" or "image/jpeg" or "image/jpg":
                    writer.WriteStartObject();
                    writer.WriteString("type", "image");
                    writer.WriteString("image", data.Uri);
                    writer.WriteEndObject();
                    break;
                case DataContent data:
                    throw new NotSupportedException($"a {message.Role} message holds {data.MediaType} data; QwenSharp takes pictures as image/png or image/jpeg");
            }
        }

        writer.WriteEndArray();
    }

    /// <summary>
    /// The <c>&lt;tool_call&gt;{"name": ..., "arguments": {...}}&lt;/tool_call&gt;</c> blocks of a generated
    /// answer (the format Qwen2.5's template asks for); a block that is not valid JSON is left as text.
    /// </summary>
    public static List<FunctionCallContent> ParseToolCalls(string text, string responseId) => FunctionCalls(ToolCallBlocks(text), responseId);

    /// <summary>Tool-call blocks (<see cref="ToolCallBlocks"/>) as function calls, their ids the response's with the call's number.</summary>
    public static List<FunctionCallContent> FunctionCalls(List<ToolCallBlock> blocks, string responseId)
    {
        var calls = new List<FunctionCallContent>();
        foreach (ToolCallBlock block in blocks)
        {
            using JsonDocument arguments = JsonDocument.Parse(block.ArgumentsJson);
            calls.Add(new FunctionCallContent($"{responseId}-{calls.Count}", block.Name,
                arguments.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone())));
        }

        return calls;
    }

    /// <summary>
    /// How much of an answer a stream can show while the model may be calling a tool: up to its first &lt;tool_call&gt;, or
    /// up to what may be one's beginning at its end. The rest becomes function calls at the end, not text.
    /// </summary>
    public static int ReleasableLength(string answer)
    {
        const string open = "<tool_call>";
        int at = answer.IndexOf(open, StringComparison.Ordinal);
        if (at >= 0)
        {
            return at;
        }

        for (int k = Math.Min(open.Length - 1, answer.Length); k > 0; k--)
        {
            if (answer.AsSpan(answer.Length - k).SequenceEqual(open.AsSpan(0, k)))
            {
                return answer.Length - k;
            }
        }

        return answer.Length;
    }

    /// <summary>The answer from <paramref name="from"/> on, without its tool-call blocks (<see cref="ToolCallBlocks"/>).</summary>
    public static string WithoutToolCalls(string answer, List<ToolCallBlock> calls, int from)
    {
        var text = new StringBuilder();
        int at = from;
        foreach (ToolCallBlock call in calls)
        {
            if (call.Start > at)
            {
                text.Append(answer, at, call.Start - at);
            }

            at = Math.Max(at, call.End);
        }

        if (at < answer.Length)
        {
            text.Append(answer, at, answer.Length - at);
        }

        return text.ToString();
    }

    /// <summary>
    /// Where the answer's valid tool-call blocks are, each with its function name and arguments (a JSON
    /// object's text; "{}" when the block gives none), in order.
    /// </summary>
    public static List<ToolCallBlock> ToolCallBlocks(string text)
    {
        const string open = "<tool_call>", close = "</tool_call>";
        var blocks = new List<ToolCallBlock>();
        for (int start = text.IndexOf(open, StringComparison.Ordinal); start >= 0; start = text.IndexOf(open, start + open.Length, StringComparison.Ordinal))
        {
            int end = text.IndexOf(close, start, StringComparison.Ordinal);
            int stop = end < 0 ? text.Length : end + close.Length;
            string body = (end < 0 ? text[(start + open.Length)..] : text[(start + open.Length)..end]).Trim();
            try
            {
                using JsonDocument call = JsonDocument.Parse(body);
                if (call.RootElement.ValueKind != JsonValueKind.Object || !call.RootElement.TryGetProperty("name", out JsonElement name)
                    || name.ValueKind != JsonValueKind.String)
                {
                    continue;
                }

                string arguments = call.RootElement.TryGetProperty("arguments", out JsonElement args) && args.ValueKind == JsonValueKind.Object
                    ? args.GetRawText() : "{}";
                blocks.Add(new ToolCallBlock(name.GetString()!, arguments, start, stop));
            }
            catch (JsonException)
            {
                // Not a call after all: the text stays as it is.
            }
        }

        return blocks;
    }
}

/// <summary>One tool call in generated text: the function, its arguments as JSON object text, and where the block is.</summary>
internal sealed record ToolCallBlock(string Name, string ArgumentsJson, int Start, int End);
