using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// llama-server's <c>/metrics</c> series beside ours: the prompt tokens read (not those reused) and the tokens made, as
/// the requests' own counts say; decode calls as our steps; busy slots per call; the throughput gauges over the time since
/// the previous scrape (0 for an empty bucket); every sample after its HELP and TYPE lines.
/// </summary>
public sealed class LlamaCppMetricsTests
{
    private const string Request = """{"prompt": "Once upon a time", "n_predict": 16, "ignore_eos": true, "temperature": 0}""";

    [Fact]
    public async Task LlamaServerSeries_CountWhatTheRequestsDid()
    {
        await using TestServer server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { MaxConcurrent = 2 });
        JsonElement[] answers = await Task.WhenAll(
            server.PostOkAsync("/completion", Request),
            server.PostOkAsync("/completion", Request.Replace("Once upon a time", "The little dog", StringComparison.Ordinal)));
        JsonElement again = await server.PostOkAsync("/completion", Request);
        answers = [.. answers, again];
        Assert.True(again.GetProperty("tokens_cached").GetInt32() > 0, "the repeated prompt reused nothing: the test reads no reuse");

        string text = await server.Http.GetStringAsync("/metrics");
        double Value(string name) => double.Parse(
            text.Split('\n').Single(l => l.StartsWith($"llamacpp:{name} ", StringComparison.Ordinal))[(name.Length + 10)..], System.Globalization.CultureInfo.InvariantCulture);

        Assert.Equal(answers.Sum(a => a.GetProperty("tokens_evaluated").GetInt32() - a.GetProperty("tokens_cached").GetInt32()), Value("prompt_tokens_total"));
        Assert.Equal(answers.Sum(a => a.GetProperty("tokens_predicted").GetInt32()), Value("tokens_predicted_total"));
        Assert.Equal(await server.MetricAsync("qwensharp_decode_steps_total"), Value("n_decode_total"));
        Assert.InRange(Value("n_busy_slots_per_decode"), 1, 2);
        Assert.True(Value("prompt_seconds_total") > 0);
        Assert.True(Value("tokens_predicted_seconds_total") > 0);
        Assert.True(Value("prompt_tokens_seconds") > 0);
        Assert.True(Value("predicted_tokens_seconds") > 0);
        Assert.Equal(0, Value("requests_processing"));
        Assert.Equal(0, Value("requests_deferred"));
        Assert.Equal(0, Value("kv_cache_tokens"));
        Assert.Equal(0, Value("kv_cache_usage_ratio"));

        // Every llama-server sample follows its HELP and TYPE lines, as Prometheus' text format has them.
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].StartsWith("llamacpp:", StringComparison.Ordinal))
            {
                string name = lines[i][..lines[i].IndexOf(' ', StringComparison.Ordinal)];
                Assert.StartsWith($"# HELP {name} ", lines[i - 2], StringComparison.Ordinal);
                Assert.Matches($"^# TYPE {name} (counter|gauge)$", lines[i - 1]);
            }
        }

        // The next scrape's bucket holds nothing new: the gauges read 0, the counters as they were.
        double predicted = Value("tokens_predicted_total");
        text = await server.Http.GetStringAsync("/metrics");
        Assert.Equal(0, Value("prompt_tokens_seconds"));
        Assert.Equal(0, Value("predicted_tokens_seconds"));
        Assert.Equal(predicted, Value("tokens_predicted_total"));
    }
}
