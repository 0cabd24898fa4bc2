using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace QwenSharp.Sampling;

/// <summary>
/// The functions a model may call, as <see cref="ToolCallPrefix"/> holds its calls to them: each name as a call writes it
/// in its JSON string, and the schema each one's arguments follow (<see cref="JsonSchema"/>). Names are kept sorted by
/// their bytes, so the names that begin with what a call has written so far are neighbours.
/// </summary>
public sealed class ToolCallGrammar
{
    /// <param name="tools">Each function's name and its arguments' schema (an object at the root, as JSON Schema's tools have).</param>
    /// <param name="parallel">Whether an answer may hold more than one call (OpenAI's <c>parallel_tool_calls</c>).</param>
    public ToolCallGrammar(IEnumerable<(string Name, JsonSchema Arguments)> tools, bool parallel)
    {
        ArgumentNullException.ThrowIfNull(tools);
        (byte[] Name, JsonSchema Arguments)[] sorted = [.. tools.Select(t => (Encoding.UTF8.GetBytes(WrittenName(t.Name)), t.Arguments))
            .OrderBy(t => t.Item1, ByteOrder.Instance)];
        if (sorted.Length == 0)
        {
            throw new ArgumentException("no tools to call", nameof(tools));
        }

        for (int i = 1; i < sorted.Length; i++)
        {
            if (sorted[i].Name.AsSpan().SequenceEqual(sorted[i - 1].Name))
            {
                throw new ArgumentException($"two tools are named '{Encoding.UTF8.GetString(sorted[i].Name)}'", nameof(tools));
            }
        }

        Names = [.. sorted.Select(t => t.Name)];
        Arguments = [.. sorted.Select(t => t.Arguments)];
        Parallel = parallel;
    }

    /// <summary>The arguments of a function that takes none: the empty object only.</summary>
    public static JsonSchema NoArguments { get; } = JsonSchema.Compile(
        JsonDocument.Parse("""{"type": "object", "properties": {}, "additionalProperties": false}""").RootElement);

    /// <summary>Whether an answer may hold more than one call.</summary>
    public bool Parallel { get; }

    /// <summary>The names as written inside a call's JSON string, sorted by their bytes.</summary>
    internal byte[][] Names { get; }

    /// <summary>The schema of each name's arguments, in <see cref="Names"/>' order.</summary>
    internal JsonSchema[] Arguments { get; }

    /// <summary>
    /// A function's name as a call writes it between its quotes: escaped as JSON requires, and no more (a model writes
    /// "é" and "&lt;" as themselves).
    /// </summary>
    public static string WrittenName(string name) => JsonEncodedText.Encode(name, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).ToString();

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
