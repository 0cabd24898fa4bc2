using System.ClientModel;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using OpenAIChatMessage = OpenAI.Chat.ChatMessage;

namespace QwenSharp.Tests.Server;

/// <summary>
/// The server through real clients (the official OpenAI .NET package, and Microsoft.Extensions.AI's
/// IChatClient over it) on a loopback socket. Expected answers come from tiny-qwen2's float64 reference:
/// its prompt is a chat (system + user turn), its greedy continuation and log-probs are transformers'.
/// </summary>
public sealed class OpenAiClientTests : IAsyncLifetime
{
    private static readonly Reference s_reference = Reference.Load("tiny-qwen2");
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    /// <summary>The reference prompt's system and user messages (its ids are transformers' render of them).</summary>
    private static List<OpenAIChatMessage> ReferenceMessages()
    {
        (string system, string user) = ReferenceConversation();
        return [new SystemChatMessage(system), new UserChatMessage(user)];
    }

    internal static (string System, string User) ReferenceConversation()
    {
        Tokenizer tokenizer = TestTokenizers.Qwen;
        int[] ids = s_reference.PromptIds;
        // <|im_start|>system\n ... <|im_end|>\n<|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant
        int firstEnd = Array.IndexOf(ids, 151645);
        int secondEnd = Array.IndexOf(ids, 151645, firstEnd + 1);
        return (tokenizer.Decode(ids.AsSpan(3, firstEnd - 3)), tokenizer.Decode(ids.AsSpan(firstEnd + 5, secondEnd - firstEnd - 5)));
    }

    internal static string ReferenceAnswer(int tokens) => TestTokenizers.Qwen.Decode(s_reference.GreedyNewIds.AsSpan(0, tokens), skipSpecialTokens: true);

    [Fact]
    public async Task ChatAnswersWithTheReferenceGreedyContinuation()
    {
        ChatCompletion completion = await _server.Chat().CompleteChatAsync(ReferenceMessages(), new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 });

        Assert.Equal(ReferenceAnswer(24), completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(s_reference.PromptIds.Length, completion.Usage.InputTokenCount);
        Assert.Equal(24, completion.Usage.OutputTokenCount);
        Assert.Equal(s_reference.PromptIds.Length + 24, completion.Usage.TotalTokenCount);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public async Task EveryDeviceServesTheReferenceContinuationToConcurrentRequests(string device)
    {
        TestBackends.RequireDevice(device);
        await using TestServer server = await TestServer.StartAsync(TestTokenizers.TinyQwenWithTokenizer, new QwenSharp.Server.ServerOptions { Context = 128 }, device);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };

        ChatCompletion[] answers = await Task.WhenAll(Enumerable.Range(0, 3).Select(async _ => (await server.Chat().CompleteChatAsync(ReferenceMessages(), options)).Value));

        Assert.All(answers, a => Assert.Equal(ReferenceAnswer(24), a.Content[0].Text));
    }

    [Fact]
    public async Task StreamedChatSendsTheSameAnswerInPiecesThenUsage()
    {
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (StreamingChatCompletionUpdate update in _server.Chat().CompleteChatStreamingAsync(ReferenceMessages(),
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 }))
        {
            updates++;
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage = update.Usage ?? usage;
            finish = update.FinishReason ?? finish;
        }

        Assert.Equal(ReferenceAnswer(24), text.ToString());
        Assert.True(updates > 10, $"{updates} updates: the answer was not streamed token by token");
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(s_reference.PromptIds.Length, usage.InputTokenCount);
        Assert.Equal(24, usage.OutputTokenCount);
    }

    [Fact]
    public async Task LogprobsAreTheReferenceLogprobs()
    {
        ChatCompletion completion = await _server.Chat().CompleteChatAsync(ReferenceMessages(),
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 3, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 });

        Assert.Equal(3, completion.ContentTokenLogProbabilities.Count);
        // The first new token is chosen at the prompt's last position, where the reference has the top logits.
        ReferencePosition last = s_reference.Positions[^1];
        ChatTokenLogProbabilityDetails first = completion.ContentTokenLogProbabilities[0];
        Assert.Equal(last.TopLogits[0] - last.LogSumExp, first.LogProbability, 1e-4);
        Assert.Equal(3, first.TopLogProbabilities.Count);
        for (int k = 0; k < 3; k++)
        {
            Assert.Equal(last.TopLogits[k] - last.LogSumExp, first.TopLogProbabilities[k].LogProbability, 1e-4);
            Assert.Equal(TestTokenizers.Qwen.Decode([last.TopIds[k]]), first.TopLogProbabilities[k].Token);
        }

        Assert.Equal(TestTokenizers.Qwen.Decode([s_reference.GreedyNewIds[0]]), first.Token);
        Assert.All(completion.ContentTokenLogProbabilities, t => Assert.True(t.LogProbability <= 0));
    }

    [Fact]
    public async Task StopStringsCutTheAnswerBeforeThem()
    {
        string full = ReferenceAnswer(24);
        string stop = TestTokenizers.Qwen.Decode(s_reference.GreedyNewIds.AsSpan(6, 2), skipSpecialTokens: true);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };
        options.StopSequences.Add(stop);

        ChatCompletion completion = await _server.Chat().CompleteChatAsync(ReferenceMessages(), options);

        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], completion.Content.Count == 0 ? "" : completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
    }

#pragma warning disable OPENAI001 // Seed is marked experimental in the OpenAI package.
    [Fact]
    public async Task TheSameSeedGivesTheSameSampleAndAnotherSeedAnother()
    {
        ChatClient chat = _server.Chat();
        async Task<string> Sample(long seed) => (await chat.CompleteChatAsync(ReferenceMessages(),
            new ChatCompletionOptions { Temperature = 1, TopP = 1, Seed = seed, MaxOutputTokenCount = 12 })).Value.Content[0].Text;

        string first = await Sample(7);
        Assert.Equal(first, await Sample(7));
        Assert.NotEqual(first, await Sample(8));
    }
#pragma warning restore OPENAI001

    [Fact]
    public async Task NChoicesAreIndependentStreamsOfTheSeed()
    {
        (string system, string user) = ReferenceConversation();
        string Body(int n) => JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "system", ["content"] = system }, new Dictionary<string, string> { ["role"] = "user", ["content"] = user } },
            ["n"] = n,
            ["seed"] = 5,
            ["temperature"] = 1.0,
            ["max_tokens"] = 10,
        });

        JsonElement three = await _server.PostOkAsync("/v1/chat/completions", Body(3));
        JsonElement one = await _server.PostOkAsync("/v1/chat/completions", Body(1));

        string[] answers = [.. three.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()!)];
        Assert.Equal(3, answers.Length);
        Assert.Equal([0, 1, 2], three.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("index").GetInt32()));
        // Choice 0 draws from the seed's first stream, as a single choice does; the others from their own.
        Assert.Equal(one.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), answers[0]);
        Assert.Equal(3, answers.Distinct().Count());
        Assert.Equal(30, three.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(s_reference.PromptIds.Length, three.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task ASharedPromptIsReadOnceAndReused()
    {
        ChatClient chat = _server.Chat();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 };
        ChatCompletion first = await chat.CompleteChatAsync(ReferenceMessages(), options);
        ChatCompletion second = await chat.CompleteChatAsync(ReferenceMessages(), options);

        Assert.Equal(ReferenceAnswer(8), first.Content[0].Text);
        Assert.Equal(ReferenceAnswer(8), second.Content[0].Text);
        // All but the last prompt token came from the first request's KV cache.
        Assert.Equal(s_reference.PromptIds.Length - 1, second.Usage.InputTokenDetails.CachedTokenCount);
    }

    [Fact]
    public async Task CompletionsTakeTokenIdsAndGiveLegacyLogprobs()
    {
        string body = $"{{\"prompt\": [{string.Join(",", s_reference.PromptIds)}], \"max_tokens\": 24, \"temperature\": 0, \"logprobs\": 2}}";
        JsonElement response = await _server.PostOkAsync("/v1/completions", body);

        JsonElement choice = response.GetProperty("choices")[0];
        Assert.Equal(ReferenceAnswer(24), choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        JsonElement logprobs = choice.GetProperty("logprobs");
        Assert.Equal(24, logprobs.GetProperty("token_logprobs").GetArrayLength());
        ReferencePosition last = s_reference.Positions[^1];
        Assert.Equal(last.TopLogits[0] - last.LogSumExp, logprobs.GetProperty("token_logprobs")[0].GetDouble(), 1e-4);
        Assert.Equal(2, logprobs.GetProperty("top_logprobs")[0].EnumerateObject().Count());
        Assert.Equal("text_completion", response.GetProperty("object").GetString());
    }

    [Fact]
    public async Task LogitBiasBansAndForcesTokens()
    {
        ReferencePosition last = s_reference.Positions[^1];
        string Body(string bias) => $"{{\"prompt\": [{string.Join(",", s_reference.PromptIds)}], \"max_tokens\": 3, \"temperature\": 0, \"logprobs\": 1, \"logit_bias\": {bias}}}";
        static string[] Tokens(JsonElement response) =>
            [.. response.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!)];
        static string[] Pieces(params int[] ids) => [.. ids.Select(id => Encoding.UTF8.GetString(TestTokenizers.Qwen.TokenBytes(id)))];

        // Banning transformers' greedy first token leaves its second most likely; +100 on a token makes it every token.
        JsonElement banned = await _server.PostOkAsync("/v1/completions", Body($"{{\"{last.TopIds[0]}\": -100}}"));
        JsonElement forced = await _server.PostOkAsync("/v1/completions", Body("{\"1234\": 100}"));
        JsonElement empty = await _server.PostOkAsync("/v1/completions", Body("{}"));

        Assert.Equal(Pieces(last.TopIds[1]), Tokens(banned)[..1]);
        Assert.Equal(Pieces(1234, 1234, 1234), Tokens(forced));
        Assert.Equal(Pieces(s_reference.GreedyNewIds[..3]), Tokens(empty));
        // Log-probs stay the model's own: the bias chooses, it does not rewrite the distribution reported.
        Assert.Equal(last.TopLogits[1] - last.LogSumExp, banned.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs")[0].GetDouble(), 1e-4);
    }

    [Fact]
    public async Task CompletionsEchoThePromptAndTakeSeveralPrompts()
    {
        JsonElement response = await _server.PostOkAsync("/v1/completions", "{\"prompt\": [\"Hello there\", \"Goodbye\"], \"max_tokens\": 3, \"temperature\": 0, \"echo\": true}");

        JsonElement choices = response.GetProperty("choices");
        Assert.Equal(2, choices.GetArrayLength());
        Assert.StartsWith("Hello there", choices[0].GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("Goodbye", choices[1].GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.Equal(6, response.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ToolsAndToolMessagesRenderAsTransformersRendersThem()
    {
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        JsonElement c = cases.RootElement.EnumerateArray().First(e => e.GetProperty("name").GetString() == "tool call and responses");
        var messages = new List<OpenAIChatMessage>();
        int call = 0;
        foreach (JsonElement message in c.GetProperty("messages").EnumerateArray())
        {
            string role = message.GetProperty("role").GetString()!;
            string content = message.TryGetProperty("content", out JsonElement text) && text.ValueKind == JsonValueKind.String ? text.GetString()! : "";
            messages.Add(role switch
            {
                "system" => new SystemChatMessage(content),
                "user" => new UserChatMessage(content),
                "tool" => new ToolChatMessage($"call-{call}", content),
                _ when message.TryGetProperty("tool_calls", out JsonElement calls) => new AssistantChatMessage([.. calls.EnumerateArray().Select(t =>
                {
                    JsonElement function = t.TryGetProperty("function", out JsonElement f) ? f : t;
                    return ChatToolCall.CreateFunctionToolCall($"call-{++call}", function.GetProperty("name").GetString()!, BinaryData.FromString(function.GetProperty("arguments").GetRawText()));
                })]),
                _ => new AssistantChatMessage(content),
            });
        }

        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 1 };
        foreach (JsonElement tool in c.GetProperty("tools").EnumerateArray())
        {
            JsonElement function = tool.GetProperty("function");
            options.Tools.Add(ChatTool.CreateFunctionTool(function.GetProperty("name").GetString()!, function.GetProperty("description").GetString(),
                BinaryData.FromString(function.GetProperty("parameters").GetRawText())));
        }

        ChatCompletion completion = await _server.Chat().CompleteChatAsync(messages, options);

        Assert.Equal(c.GetProperty("ids").GetArrayLength(), completion.Usage.InputTokenCount);
    }

    [Fact]
    public async Task MicrosoftExtensionsAiChatClientWorksOverTheServer()
    {
        IChatClient client = _server.Chat().AsIChatClient();
        (string system, string user) = ReferenceConversation();
        List<AIChatMessage> messages = [new(ChatRole.System, system), new(ChatRole.User, user)];

        ChatResponse response = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 24 });
        string streamed = string.Concat(await client.GetStreamingResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 24 })
            .Select(u => u.Text).ToListAsync());

        Assert.Equal(ReferenceAnswer(24), response.Text);
        Assert.Equal(ReferenceAnswer(24), streamed);
        Assert.Equal(s_reference.PromptIds.Length, response.Usage!.InputTokenCount);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason);
    }

    [Fact]
    public async Task TokenizeAndDetokenizeUseTheModelsTokenizer()
    {
        const string text = "Hello, world! Ünïcödé 你好";
        JsonElement tokens = await _server.PostOkAsync("/tokenize", JsonSerializer.Serialize(new Dictionary<string, string> { ["content"] = text }));
        int[] ids = [.. tokens.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32())];
        JsonElement back = await _server.PostOkAsync("/detokenize", JsonSerializer.Serialize(new Dictionary<string, int[]> { ["tokens"] = ids }));

        Assert.Equal(TestTokenizers.Qwen.Encode(text), ids);
        Assert.Equal(text, back.GetProperty("content").GetString());
    }

    [Fact]
    public async Task ModelsAndHealthAnswer()
    {
        using JsonDocument models = JsonDocument.Parse(await _server.Http.GetStringAsync("/v1/models"));
        using JsonDocument health = JsonDocument.Parse(await _server.Http.GetStringAsync("/health"));

        Assert.Equal("list", models.RootElement.GetProperty("object").GetString());
        Assert.Equal(Path.GetFileName(TestTokenizers.TinyQwenWithTokenizer), models.RootElement.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task AnApiKeyIsRequiredWhenSet()
    {
        await using TestServer server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { ApiKey = "sesame" });
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 2 };

        ClientResultException refused = await Assert.ThrowsAsync<ClientResultException>(() => server.Chat("wrong").CompleteChatAsync(ReferenceMessages(), options));
        ChatCompletion accepted = await server.Chat("sesame").CompleteChatAsync(ReferenceMessages(), options);

        Assert.Equal(401, refused.Status);
        Assert.Equal(ReferenceAnswer(2), accepted.Content[0].Text);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await server.Http.GetAsync("/health")).StatusCode);
    }
}
