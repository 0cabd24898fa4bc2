using System.Text.Json;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization.Chat;

namespace QwenSharp.Tests.Text;

/// <summary>
/// The real Qwen2.5 chat template rendered by our Jinja interpreter against transformers'
/// apply_chat_template output (tests/fixtures/tokenizer/qwen2.5-chat-cases.json), text and ids.
/// </summary>
public class ChatTemplateTests
{
    public sealed record ChatCase(string Name, string Messages, string? Tools, bool AddGenerationPrompt, string Text, int[] Ids)
    {
        public override string ToString() => Name;
    }

    public static TheoryData<ChatCase> Cases()
    {
        using JsonDocument document = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        var data = new TheoryData<ChatCase>();
        foreach (JsonElement c in document.RootElement.EnumerateArray())
        {
            JsonElement tools = c.GetProperty("tools");
            data.Add(new ChatCase(
                c.GetProperty("name").GetString()!,
                c.GetProperty("messages").GetRawText(),
                tools.ValueKind == JsonValueKind.Null ? null : tools.GetRawText(),
                c.GetProperty("add_generation_prompt").GetBoolean(),
                c.GetProperty("text").GetString()!,
                [.. c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())]));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersAsTransformers(ChatCase c)
    {
        using JsonDocument messages = JsonDocument.Parse(c.Messages);
        using JsonDocument? tools = c.Tools is null ? null : JsonDocument.Parse(c.Tools);
        string text = TestTokenizers.Qwen.ApplyChatTemplate(messages.RootElement, tools?.RootElement, c.AddGenerationPrompt);
        Assert.Equal(c.Text, text);
        Assert.Equal(c.Ids, TestTokenizers.Qwen.Encode(text));
    }

    [Fact]
    public void TheStandaloneJinjaFileIsTheTemplateInTokenizerConfig()
    {
        string file = File.ReadAllText(Fixtures.File("tokenizer", "Qwen-Qwen2.5-7B-Instruct.jinja"));
        Assert.Equal(file.TrimEnd('\n'), TestTokenizers.Qwen.ChatTemplateText!.TrimEnd('\n'));
    }

    [Fact]
    public void RaiseExceptionBecomesATemplateError()
    {
        ChatTemplate template = ChatTemplate.Parse("{% if messages|length == 0 %}{{ raise_exception('no messages') }}{% endif %}ok");
        using JsonDocument empty = JsonDocument.Parse("[]");
        var error = Assert.Throws<TemplateException>(() => template.Render(empty.RootElement, null, true));
        Assert.Contains("no messages", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("line 1\n{% macro greet(x) %}hi{% endmacro %}", "line 2", "macro")]
    [InlineData("{% for m in messages %}\n{{ m.content }}", "endfor", "missing")]
    [InlineData("a\nb\n{{ messages | wordcount }}", "line 3", "wordcount")]
    [InlineData("{% include 'x.jinja' %}", "line 1", "include")]
    [InlineData("{{ messages[0].content.nope() }}", "line 1", "not a function")]
    public void UnsupportedConstructsNameThemselvesAndTheirLine(string source, string where, string what)
    {
        using JsonDocument messages = JsonDocument.Parse("""[{"role":"user","content":"hi"}]""");
        var error = Assert.Throws<TemplateException>(() => ChatTemplate.Parse(source).Render(messages.RootElement, null, true));
        Assert.Contains(where, error.Message, StringComparison.Ordinal);
        Assert.Contains(what, error.Message, StringComparison.Ordinal);
    }

    public sealed record JinjaCase(string Name, string Template, string? Expected, string? Error)
    {
        public override string ToString() => Name;
    }

    public static TheoryData<JinjaCase> JinjaCases()
    {
        using JsonDocument document = Fixtures.Json("tokenizer", "jinja-cases.json");
        var data = new TheoryData<JinjaCase>();
        foreach (JsonElement c in document.RootElement.GetProperty("cases").EnumerateArray())
        {
            data.Add(new JinjaCase(
                c.GetProperty("name").GetString()!,
                c.GetProperty("template").GetString()!,
                c.TryGetProperty("expected", out JsonElement expected) ? expected.GetString() : null,
                c.TryGetProperty("error", out JsonElement error) ? error.GetString() : null));
        }

        return data;
    }

    /// <summary>Templates rendered by Python's jinja2 as transformers configures it (tools/gen_jinja_cases.py).</summary>
    [Theory]
    [MemberData(nameof(JinjaCases))]
    public void JinjaSubsetRendersAsPythonJinja(JinjaCase c)
    {
        using JsonDocument document = Fixtures.Json("tokenizer", "jinja-cases.json");
        JsonElement messages = document.RootElement.GetProperty("messages");
        var variables = new Dictionary<string, string> { ["bos_token"] = "<s>", ["eos_token"] = "</s>" };
        ChatTemplate template = ChatTemplate.Parse(c.Template);
        if (c.Error is not null)
        {
            var error = Assert.Throws<TemplateException>(() => template.Render(messages, null, true, variables));
            Assert.Contains(c.Error, error.Message, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal(c.Expected, template.Render(messages, null, true, variables));
        }
    }
}
