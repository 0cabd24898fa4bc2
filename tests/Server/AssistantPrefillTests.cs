using System.Text.Json;
using QwenSharp.Server;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization.Chat;

namespace QwenSharp.Tests.Server;

/// <summary>
/// A chat that ends with the assistant's message: continued (assistant prefill) as llama-server and Anthropic's API
/// continue it, the prompt cut after its text as transformers' <c>continue_final_message</c> cuts it (the expected
/// prompts are Qwen2.5's template written out by hand, their tokens counted by the tokenizer, itself checked against Hugging Face's); or answered in
/// a new turn where the request (vLLM's <c>continue_final_message</c>, <c>add_generation_prompt</c>) or the server
/// (<c>--no-prefill-assistant</c>) says so; <c>chat_template_kwargs</c> as the template's variables; and what cannot be
/// continued, refused naming the field.
/// </summary>
public sealed class AssistantPrefillTests : IAsyncLifetime
{
    private const string Conversation = """[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is"}]""";
    private const string Head = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n";
    private const string Continued = Head + "<|im_start|>assistant\nThe answer is";
    private const string NewTurn = Continued + "<|im_end|>\n<|im_start|>assistant\n";
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private async Task<string> PromptAsync(TestServer server, string messages, string extra = "") =>
        (await server.PostOkAsync("/apply-template", $$"""{"messages": {{messages}}{{extra}}}""")).GetProperty("prompt").GetString()!;

    [Fact]
    public async Task AFinalAssistantMessage_IsContinued_UnlessTheRequestOpensANewTurn()
    {
        Assert.Equal(Continued, await PromptAsync(_server, Conversation));
        Assert.Equal(Continued, await PromptAsync(_server, Conversation, ", \"continue_final_message\": true, \"add_generation_prompt\": false"));
        Assert.Equal(NewTurn, await PromptAsync(_server, Conversation, ", \"continue_final_message\": false"));
        Assert.Equal(NewTurn, await PromptAsync(_server, Conversation, ", \"add_generation_prompt\": true"));
        Assert.Equal(Continued + "<|im_end|>\n", await PromptAsync(_server, Conversation, ", \"add_generation_prompt\": false, \"continue_final_message\": false"));
        Assert.Equal(Head, await PromptAsync(_server, Conversation[..Conversation.LastIndexOf(", {", StringComparison.Ordinal)] + "]", ", \"add_generation_prompt\": false"));

        // transformers' own render of [user "Hi", assistant "Hello!"] with no generation prompt, cut before its end of turn.
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        JsonElement reference = cases.RootElement.EnumerateArray().First(c => c.GetProperty("name").GetString() == "no generation prompt");
        string text = reference.GetProperty("text").GetString()!;
        Assert.EndsWith("<|im_end|>\n", text, StringComparison.Ordinal);
        Assert.Equal(text[..^"<|im_end|>\n".Length], await PromptAsync(_server, reference.GetProperty("messages").GetRawText()));

        // Trailing spaces the template keeps are kept, as transformers keeps them.
        Assert.Equal(Continued + "  ", await PromptAsync(_server, Conversation.Replace("The answer is", "The answer is  ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task AContinuedAnswer_ReadsThePrefilledPrompt_AndAnswersOnlyTheRest()
    {
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions", $$"""{"messages": {{Conversation}}, "max_tokens": 3, "temperature": 0}""");

        Assert.Equal(TestTokenizers.Qwen.Encode(Continued).Length, answer.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        string text = answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.False(text.StartsWith("The answer is", StringComparison.Ordinal), text);

        // Anthropic's Messages API always continues a final assistant turn.
        JsonElement counted = await _server.PostOkAsync("/v1/messages/count_tokens",
            """{"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is"}]}""");
        Assert.Equal(TestTokenizers.Qwen.Encode(Continued).Length, counted.GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public async Task AServerThatDoesNotPrefill_OpensANewTurn_ButAnthropicsAPIStillContinues()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { PrefillAssistant = false });

        Assert.Equal(NewTurn, await PromptAsync(server, Conversation));
        Assert.Equal(Continued, await PromptAsync(server, Conversation, ", \"continue_final_message\": true"));
        JsonElement counted = await server.PostOkAsync("/v1/messages/count_tokens",
            """{"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is"}]}""");
        Assert.Equal(TestTokenizers.Qwen.Encode(Continued).Length, counted.GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public async Task WhatCannotBeContinued_AndBadTemplateArguments_Are400sNamingTheField()
    {
        const string Tool = """[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]""";
        string userLast = """[{"role": "user", "content": "Hi"}]""";
        foreach ((string json, string param, string message) in ((string, string, string)[])[
            ($$"""{"messages": {{Conversation}}, "continue_final_message": true, "add_generation_prompt": true}""", "continue_final_message", "are both true"),
            ($$"""{"messages": {{userLast}}, "continue_final_message": true}""", "continue_final_message", "needs the last message to be the assistant's"),
            ("""{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}]}""", "messages[1].content", "has no text"),
            ("""{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}""",
                "messages[1].tool_calls", "a call cannot be continued"),
            ($$$"""{"messages": {{{Conversation}}}, "tools": {{{Tool}}}, "tool_choice": "required"}""", "tool_choice", "forces a call"),
            ($$$"""{"messages": {{{Conversation}}}, "response_format": {"type": "json_object"}}""", "response_format", "holds the whole answer to a format"),
            ($$"""{"messages": {{userLast}}, "chat_template_kwargs": ["x"]}""", "chat_template_kwargs", "must be an object"),
            ($$$"""{"messages": {{{userLast}}}, "chat_template_kwargs": {"messages": []}}""", "chat_template_kwargs", "template argument 'messages' is set by the call itself")])
        {
            await _server.AssertRefusedAsync("/v1/chat/completions", json, param, message);
        }
    }

    [Theory]
    [InlineData("{% for m in messages %}<{{ m['content'] }}>{% endfor %}", "Go on ", "<Hi><Go on ")]
    [InlineData("{% for m in messages %}<{{ m['content'] | trim }}>{% endfor %}", "Go on ", "<Hi><Go on")]
    [InlineData("{% for m in messages %}<{{ m['content'] }}>{% endfor %}", " Go on ", "<Hi>< Go on")]
    [InlineData("{% for m in messages %}<{{ m['content'] }}>{% endfor %}Go on", "Go on", "<Hi><Go on>Go on")]
    public void ContinueFinalMessage_CutsAfterTheLastPlaceOfTheText_AsTransformersDoes(string source, string final, string expected)
    {
        // transformers: cut at rindex(text.strip()) + len(text.lstrip()) where the template kept the text as given, else + len(text.strip()).
        using JsonDocument messages = JsonDocument.Parse(JsonSerializer.Serialize(new[] { new { role = "user", content = "Hi" }, new { role = "assistant", content = final } }));
        string rendered = ChatTemplate.Parse(source).Render(messages.RootElement, null, addGenerationPrompt: false);

        Assert.Equal(expected, ChatTemplate.ContinueFinalMessage(rendered, messages.RootElement));
    }

    [Fact]
    public void TemplateArguments_AreVariablesOverTheSpecialTokens()
    {
        ChatTemplate template = ChatTemplate.Parse("{{ bos_token }}{% if greeting is defined %}{{ greeting }} {% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}{{ count + 1 }}");
        using JsonDocument messages = JsonDocument.Parse("""[{"role": "user", "content": "Hi"}]""");
        using JsonDocument arguments = JsonDocument.Parse("""{"greeting": "Hello", "count": 1, "bos_token": "<s>"}""");

        string rendered = template.Render(messages.RootElement, null, addGenerationPrompt: true, new Dictionary<string, string> { ["bos_token"] = "[BOS]" }, arguments.RootElement);

        Assert.Equal("<s>Hello Hi2", rendered);
    }
}
