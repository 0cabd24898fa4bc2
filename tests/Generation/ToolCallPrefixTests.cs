using System.Text;
using System.Text.Json;
using QwenSharp.Sampling;
using Validator = Json.Schema.JsonSchema;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// <see cref="ToolCallPrefix"/>: Qwen's tool-call blocks to a set of tools, byte by byte. The texts it finishes are checked
/// by the parser the server and chat client read calls with (<see cref="ChatJson.ToolCallBlocks"/>), System.Text.Json, and
/// JsonSchema.Net against each tool's parameters.
/// </summary>
public class ToolCallPrefixTests
{
    private const string Weather = """{"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"], "additionalProperties": false}""";
    private const string Time = """{"type": "object", "properties": {"zone": {"type": "string", "pattern": "^[A-Z]{3}$"}, "hours": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone", "hours"], "additionalProperties": false}""";

    private static readonly Dictionary<string, string?> s_tools = new()
    {
        ["get_weather"] = Weather,
        ["get_time"] = Time,
        ["get"] = null,
        ["café"] = """{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}""",
        ["say \"hi\""] = null,
    };

    private static ToolCallGrammar Grammar(bool parallel, params string[] names) =>
        new((names.Length == 0 ? [.. s_tools.Keys] : names).Select(n => (n, s_tools[n] is string schema
            ? Sampling.JsonSchema.Compile(JsonDocument.Parse(schema).RootElement) : ToolCallGrammar.NoArguments)), parallel);

    /// <summary>The index of the byte the automaton refuses (-1: none), and the state after the rest.</summary>
    private static int RefusedAt(ToolCallGrammar grammar, string text, out ToolCallPrefix state)
    {
        state = ToolCallPrefix.Start(grammar);
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        for (int i = 0; i < bytes.Length; i++)
        {
            if (!state.Feed(bytes[i]))
            {
                return i;
            }
        }

        return -1;
    }

    private static string Call(string name, string arguments) => $"<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {arguments}}}\n</tool_call>";

    [Theory]
    [InlineData("get_weather", """{"city": "Paris"}""")]
    [InlineData("get_weather", """{"city": "Paris", "unit": "celsius"}""")]
    [InlineData("get_time", """{"zone": "CET", "hours": -12}""")]
    [InlineData("get", "{}")]
    [InlineData("café", """{"ok": true}""")]
    [InlineData("say \\\"hi\\\"", "{}")]                     // a quote in a name is escaped, and does not end it
    public void AWholeCallIsTakenAndMayEnd(string name, string arguments)
    {
        ToolCallGrammar grammar = Grammar(parallel: false);

        Assert.Equal(-1, RefusedAt(grammar, Call(name, arguments), out ToolCallPrefix state));
        Assert.True(state.Complete);
        Assert.True(state.CanEnd);
    }

    [Theory]
    [InlineData("<tool_call>\n{\"name\": \"get_", "x")]                                             // no tool begins so
    [InlineData("<tool_call>\n{\"name\": \"get_weather", "s")]                                      // a name runs on
    [InlineData("<tool_call>\n{\"name\": \"ge", "\"")]                                              // a name stops short
    [InlineData("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": ", "5")]        // the schema's type
    [InlineData("<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"", "c")]        // the schema's pattern
    [InlineData("<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\", \"hours\": 1", "5")] // its maximum
    [InlineData("<tool_call>\n{\"name\": \"get\", \"arguments\": {", "\"")]                        // a function without parameters takes {}
    [InlineData("<tool_call>\n{\"name\": \"get\", \"arguments\": {}", "\n")]                       // the call's own brace comes first
    [InlineData("<tool_call>", "{")]                                                                  // the template's line break
    [InlineData("", " ")]
    public void ACallOutsideTheToolsIsRefusedWhereItLeavesThem(string taken, string refused)
    {
        Assert.Equal(taken.Length, RefusedAt(Grammar(parallel: true), taken + refused, out _));
    }

    [Fact]
    public void TheAnswerMayEndAfterTheCallsBraceOrItsTagAndAnotherCallFollowsOnlyWhenParallel()
    {
        string first = Call("get", "{}"), second = Call("get_weather", """{"city": "Oslo"}""");

        Assert.Equal(-1, RefusedAt(Grammar(parallel: true), first[..^"\n</tool_call>".Length], out ToolCallPrefix afterBrace));
        Assert.True(afterBrace.CanEnd);
        Assert.False(afterBrace.Complete);
        Assert.Equal(-1, RefusedAt(Grammar(parallel: true), first, out ToolCallPrefix afterTag));
        Assert.True(afterTag.CanEnd);
        Assert.False(afterTag.Complete);
        Assert.Equal(-1, RefusedAt(Grammar(parallel: true), first + "\n" + second, out ToolCallPrefix afterTwo));
        Assert.True(afterTwo.CanEnd);

        Assert.Equal(first.Length, RefusedAt(Grammar(parallel: false), first + "\n" + second, out _));
        Assert.Equal(-1, RefusedAt(Grammar(parallel: true), first + "\n<tool_call>\n{\"name\": \"", out ToolCallPrefix midway));
        Assert.False(midway.CanEnd);
    }

    [Fact]
    public void ANameThatBeginsAnotherEndsAtItsQuote()
    {
        Assert.Equal(-1, RefusedAt(Grammar(false, "get", "get_weather"), Call("get", "{}"), out _));
        Assert.Equal(-1, RefusedAt(Grammar(false, "get", "get_weather"), Call("get_weather", """{"city": ""}"""), out _));
        Assert.Equal(0, RefusedAt(Grammar(false, "get_weather"), "\"", out _));
        Assert.Equal(25, RefusedAt(Grammar(false, "get_weather"), Call("get", "{}"), out _));
    }

    [Fact]
    public void TheStateCanBeginAfterTheAnswersForcedText()
    {
        ToolCallGrammar grammar = Grammar(parallel: false);
        foreach (string written in (string[])["<tool_call>", "<tool_call>\n", "<tool_call>\n{\"name\": \"get_time\", \"arguments\": "])
        {
            ToolCallPrefix state = ToolCallPrefix.Start(grammar, Encoding.UTF8.GetBytes(written));
            string rest = Call("get_time", """{"zone": "UTC", "hours": 0}""")[written.Length..];
            foreach (byte b in Encoding.UTF8.GetBytes(rest))
            {
                Assert.True(state.Feed(b), $"after '{written}', '{rest}' was refused");
            }

            Assert.True(state.Complete);
        }

        ArgumentException e = Assert.Throws<ArgumentException>(() => ToolCallPrefix.Start(grammar, Encoding.UTF8.GetBytes("<tool_call>\n{\"name\": \"nope")));
        Assert.Contains("does not begin a call", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DuplicateNamesAreRefused()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => new ToolCallGrammar([("a", ToolCallGrammar.NoArguments), ("a", ToolCallGrammar.NoArguments)], parallel: false));
        Assert.Contains("two tools are named 'a'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RandomCallsParseAndTheirArgumentsMeetTheirTools()
    {
        ToolCallGrammar grammar = Grammar(parallel: false);
        List<string> texts = SchemaWalks.Finished(() => ToolCallPrefix.Start(grammar), 300, 11);

        Assert.True(texts.Count >= 250, $"only {texts.Count} of 300 walks finished");
        var called = new HashSet<string>();
        foreach (string text in texts)
        {
            ToolCallBlock block = Assert.Single(ChatJson.ToolCallBlocks(text));
            Assert.Equal(text.Length, block.End);
            string? schema = s_tools[block.Name];
            using JsonDocument arguments = JsonDocument.Parse(block.ArgumentsJson);
            Assert.True(schema is null ? arguments.RootElement.EnumerateObject().Count() == 0 : Validator.FromText(schema).Evaluate(arguments.RootElement).IsValid,
                $"{block.Name}'s arguments break its schema: {block.ArgumentsJson}");
            called.Add(block.Name);
        }

        Assert.Equal(s_tools.Count, called.Count);
    }

    [Fact]
    public void EitherACallOrAnAnswerInTheFormatIsTakenAndNeverAMixOfThem()
    {
        const string Answer = """{"type": "object", "properties": {"temp": {"type": "integer", "minimum": -50, "maximum": 50}}, "required": ["temp"], "additionalProperties": false}""";
        ToolCallGrammar grammar = Grammar(parallel: false, "get_time");
        var format = Sampling.JsonSchema.Compile(JsonDocument.Parse(Answer).RootElement);
        EitherPrefix<ToolCallPrefix, JsonSchemaPrefix> Start() => new(ToolCallPrefix.Start(grammar), JsonSchemaPrefix.Start(format));
        int RefusedAt(string text, out EitherPrefix<ToolCallPrefix, JsonSchemaPrefix> state)
        {
            state = Start();
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            for (int i = 0; i < bytes.Length; i++)
            {
                if (!state.Feed(bytes[i]))
                {
                    return i;
                }
            }

            return -1;
        }

        Assert.Equal(-1, RefusedAt("""{"temp": -3}""", out EitherPrefix<ToolCallPrefix, JsonSchemaPrefix> answered));
        Assert.True(answered.Complete);
        Assert.Equal(-1, RefusedAt(Call("get_time", """{"zone": "UTC", "hours": 1}"""), out EitherPrefix<ToolCallPrefix, JsonSchemaPrefix> called));
        Assert.True(called.Complete);
        Assert.Equal(2, RefusedAt("""{"name": "get_time"}""", out _));
        Assert.Equal(0, RefusedAt("Hello", out _));
        Assert.Equal(-1, RefusedAt("{", out EitherPrefix<ToolCallPrefix, JsonSchemaPrefix> begun));
        Assert.False(begun.CanEnd);

        List<string> texts = SchemaWalks.Finished(Start, 300, 5);
        Assert.True(texts.Count >= 250, $"only {texts.Count} of 300 walks finished");
        int calls = 0, answers = 0;
        foreach (string text in texts)
        {
            if (text.StartsWith('<'))
            {
                ToolCallBlock block = Assert.Single(ChatJson.ToolCallBlocks(text));
                Assert.True(Validator.FromText(Time).Evaluate(JsonDocument.Parse(block.ArgumentsJson).RootElement).IsValid, text);
                calls++;
            }
            else
            {
                Assert.True(Validator.FromText(Answer).Evaluate(JsonDocument.Parse(text).RootElement).IsValid, text);
                answers++;
            }
        }

        Assert.True(calls > 50 && answers > 50, $"{calls} calls, {answers} answers");
    }
}
