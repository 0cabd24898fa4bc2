using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI.Chat;
using QwenSharp.Server;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Many requests at once on loopback, bounded in count and time: results equal those of each request
/// alone, cancelled streams leave nothing behind, a full queue answers 429, a client that stops reading
/// holds up nobody, and stopping the server lets running streams finish. Run alone: one test measures the
/// process's managed memory.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed class ConcurrencyTests
{
    private static string ChatBody(string user, int maxTokens, bool stream = false, double temperature = 0) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = user } },
        ["max_tokens"] = maxTokens,
        ["temperature"] = temperature,
        ["stream"] = stream,
    });

    [Fact]
    public async Task ThirtyTwoConcurrentStreamsGiveWhatEachGivesAlone()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { MaxConcurrent = 8 });
        ChatClient chat = server.Chat();
        // Prompts of different lengths, so prefill chunks and decode rows mix in the same steps.
        string[] questions = [.. Enumerable.Range(0, 32).Select(i => $"Question {i}: {string.Concat(Enumerable.Repeat("tell me more ", i % 7))}?")];
        ChatCompletionOptions Options(int i) => new() { Temperature = i % 2 == 0 ? 0 : 0.8f, MaxOutputTokenCount = 12, TopP = 1 };
#pragma warning disable OPENAI001 // Seed is experimental in the OpenAI package.
        ChatCompletionOptions Seeded(int i)
        {
            ChatCompletionOptions options = Options(i);
            options.Seed = 1000 + i;
            return options;
        }
#pragma warning restore OPENAI001

        var alone = new string[questions.Length];
        for (int i = 0; i < questions.Length; i++)
        {
            alone[i] = (await chat.CompleteChatAsync([new UserChatMessage(questions[i])], Seeded(i))).Value.Content[0].Text;
        }

        async Task<string> Streamed(int i)
        {
            var text = new StringBuilder();
            await foreach (StreamingChatCompletionUpdate update in chat.CompleteChatStreamingAsync([new UserChatMessage(questions[i])], Seeded(i)))
            {
                foreach (ChatMessageContentPart part in update.ContentUpdate)
                {
                    text.Append(part.Text);
                }
            }

            return text.ToString();
        }

        string[] together = await Task.WhenAll(Enumerable.Range(0, questions.Length).Select(Streamed)).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(alone, together);
        Assert.True(await server.MetricAsync("qwensharp_decode_steps_total") > 0);
    }

    [Fact]
    public async Task AHundredCancelledStreamsLeaveNothingBehind()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { MaxConcurrent = 8, MaxQueue = 128, Context = 4096 });
        long memoryBefore = GC.GetTotalMemory(forceFullCollection: true);

        async Task CancelMidStream(int i)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = new StringContent(ChatBody($"Story number {i}", maxTokens: 4000, stream: true), Encoding.UTF8, "application/json"),
            };
            using HttpResponseMessage response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            // The role chunk and one token, then the client goes away.
            for (int events = 0; events < 2;)
            {
                string? line = await reader.ReadLineAsync();
                Assert.NotNull(line);
                events += line.StartsWith("data: ", StringComparison.Ordinal) ? 1 : 0;
            }
        }

        for (int round = 0; round < 10; round++)
        {
            await Task.WhenAll(Enumerable.Range(round * 10, 10).Select(CancelMidStream)).WaitAsync(TimeSpan.FromMinutes(1));
        }

        // Every slot is free again, nothing waits, and only the metrics request itself is in flight.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (await server.MetricAsync("qwensharp_slots_active") > 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.Equal(0, await server.MetricAsync("qwensharp_slots_active"));
        Assert.Equal(0, await server.MetricAsync("qwensharp_queue_depth"));
        Assert.Equal(0, await server.MetricAsync("qwensharp_kv_cache_positions_used"));
        Assert.Equal(1, await server.MetricAsync("qwensharp_requests_in_flight"));
        double cancelled = await server.MetricAsync("qwensharp_generation_requests_total{outcome=\"cancelled\"}");
        Assert.True(cancelled >= 90, $"{cancelled} of 100 requests were cancelled; the others ran to the end before their client left\n{await server.Http.GetStringAsync("/metrics")}");
        long memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
        Assert.True(memoryAfter - memoryBefore < 64 << 20, $"managed memory grew by {(memoryAfter - memoryBefore) >> 20} MiB");

        // And the server still answers.
        JsonElement answer = await server.PostOkAsync("/v1/chat/completions", ChatBody("Still there?", 4));
        Assert.Equal(4, answer.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task AFullQueueAnswers429WithRetryAfter()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { MaxConcurrent = 1, MaxQueue = 1, Context = 8192 });
        using var running = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent(ChatBody("A long story", maxTokens: 8000, stream: true), Encoding.UTF8, "application/json"),
        };
        using HttpResponseMessage stream = await server.Http.SendAsync(running, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await stream.Content.ReadAsStreamAsync());
        await reader.ReadLineAsync();

        // The one slot is busy: the next request waits in the queue, the one after finds it full.
        Task<(HttpStatusCode, JsonDocument)> queued = server.PostAsync("/v1/chat/completions", ChatBody("Queued", 2));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (await server.MetricAsync("qwensharp_queue_depth") < 1 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(10);
        }

        using var content = new StringContent(ChatBody("Refused", 2), Encoding.UTF8, "application/json");
        using HttpResponseMessage refused = await server.Http.PostAsync("/v1/chat/completions", content);
        using JsonDocument error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("1", refused.Headers.RetryAfter?.ToString());
        Assert.Equal("rate_limit_exceeded", error.RootElement.GetProperty("error").GetProperty("code").GetString());

        // The long stream's client goes away; the queued request then runs.
        stream.Dispose();
        (HttpStatusCode status, JsonDocument body) = await queued.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(HttpStatusCode.OK, status);
        body.Dispose();
    }

    [Fact]
    public async Task WithNoQueueAFreeSlotStillTakesARequest()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { MaxConcurrent = 1, MaxQueue = 0 });

        JsonElement answer = await server.PostOkAsync("/v1/chat/completions", ChatBody("Hello", 3));

        Assert.Equal(3, answer.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task AClientThatStopsReadingHoldsUpNobody()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { MaxConcurrent = 4, Context = 4096 });
        using var stalled = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent(ChatBody("Never read", maxTokens: 4000, stream: true), Encoding.UTF8, "application/json"),
        };
        // Headers only: the body is never read, so the socket's buffers fill up.
        using HttpResponseMessage unread = await server.Http.SendAsync(stalled, HttpCompletionOption.ResponseHeadersRead);

        for (int i = 0; i < 5; i++)
        {
            JsonElement answer = await server.PostOkAsync("/v1/chat/completions", ChatBody($"Quick {i}", 16)).WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(16, answer.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }
    }

    [Fact]
    public async Task ARequestOverTheTimeLimitIsCutWith504AndFreesItsSlot()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { Context = 8192, RequestTimeout = TimeSpan.FromMilliseconds(300) });

        (HttpStatusCode status, JsonDocument error) = await server.PostAsync("/v1/chat/completions", ChatBody("A very long story", 8000));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new StringContent(ChatBody("Another long story", maxTokens: 8000, stream: true), Encoding.UTF8, "application/json"),
        };
        using HttpResponseMessage stream = await server.Http.SendAsync(request);
        string events = await stream.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.GatewayTimeout, status);
        Assert.Equal("timeout", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        error.Dispose();
        // A stream that already sent tokens ends with the error as its last event.
        Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
        Assert.Contains("\"code\":\"timeout\"", events.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[^1], StringComparison.Ordinal);
        Assert.Equal(0, await server.MetricAsync("qwensharp_slots_active"));
    }

    [Fact]
    public async Task StoppingTheServerLetsRunningStreamsFinish()
    {
        TestServer server = await TestServer.StartAsync(new ServerOptions { DrainTimeout = TimeSpan.FromSeconds(60) });
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
            {
                Content = new StringContent(ChatBody("Finish me", maxTokens: 200, stream: true), Encoding.UTF8, "application/json"),
            };
            using HttpResponseMessage response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            await reader.ReadLineAsync();

            Task stopping = server.Server.StopAsync();
            string rest = await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromMinutes(1));
            await stopping.WaitAsync(TimeSpan.FromMinutes(1));

            Assert.Contains("\"finish_reason\":\"length\"", rest, StringComparison.Ordinal);
            Assert.EndsWith("data: [DONE]\n\n", rest, StringComparison.Ordinal);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
