using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// vLLM's <c>/metrics</c> series beside ours: tokens, prefix-cache hits and finished reasons as the requests' own usage
/// says; every histogram's buckets cumulative, its +Inf bucket its count, and its counts and sums those of the requests
/// (one time to first token and one end-to-end latency a request, an inter-token latency a token after the first); every
/// sample labelled with the served model's name and declared by HELP and TYPE lines.
/// </summary>
public sealed partial class VllmMetricsTests
{
    [GeneratedRegex("""^(vllm:[a-z0-9_]+)\{(.*)\} (\S+)$""")]
    private static partial Regex Sample();

    [Fact]
    public async Task VllmSeries_CountWhatTheRequestsDid()
    {
        await using TestServer server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { MaxConcurrent = 2, ModelName = "tiny \"qwen\"" });
        const string Request = """{"prompt": "Once upon a time", "max_tokens": 12, "ignore_eos": true, "temperature": 0}""";
        JsonElement[] answers = await Task.WhenAll(
            server.PostOkAsync("/v1/completions", Request),
            server.PostOkAsync("/v1/completions", Request.Replace("Once upon a time", "The little dog", StringComparison.Ordinal)));
        answers = [.. answers, await server.PostOkAsync("/v1/completions", Request)];
        int Usage(JsonElement answer, string field) => answer.GetProperty("usage").GetProperty(field).GetInt32();
        int prompt = answers.Sum(a => Usage(a, "prompt_tokens")), made = answers.Sum(a => Usage(a, "completion_tokens"));
        int cached = answers.Sum(a => a.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        Assert.True(cached > 0, "the repeated prompt reused nothing: the test reads no prefix-cache hits");

        string text = await server.Http.GetStringAsync("/metrics");
        var samples = new List<(string Name, string Labels, double Value)>();
        var declared = new HashSet<string>(StringComparer.Ordinal);
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith("# TYPE vllm:", StringComparison.Ordinal))
            {
                declared.Add(line.Split(' ')[2]);
            }

            Match match = Sample().Match(line);
            if (match.Success)
            {
                samples.Add((match.Groups[1].Value, match.Groups[2].Value, double.Parse(match.Groups[3].Value, CultureInfo.InvariantCulture)));
            }
        }

        Assert.All(samples, s => Assert.EndsWith("model_name=\"tiny \\\"qwen\\\"\",engine=\"0\"", s.Labels, StringComparison.Ordinal));
        Assert.All(samples, s => Assert.Contains(declared, family => s.Name == family || s.Name.StartsWith(family + "_", StringComparison.Ordinal)));
        double Value(string name, string label = "") => samples.Single(s => s.Name == name && s.Labels.StartsWith(label, StringComparison.Ordinal)).Value;

        Assert.Equal(prompt, Value("vllm:prompt_tokens_total"));
        Assert.Equal(made, Value("vllm:generation_tokens_total"));
        Assert.Equal(prompt, Value("vllm:prefix_cache_queries_total"));
        Assert.Equal(cached, Value("vllm:prefix_cache_hits_total"));
        Assert.Equal(3, Value("vllm:request_success_total", "finished_reason=\"length\""));
        Assert.Equal(0, Value("vllm:request_success_total", "finished_reason=\"stop\""));
        Assert.Equal(0, Value("vllm:num_requests_running"));
        Assert.Equal(0, Value("vllm:num_requests_waiting"));
        Assert.Equal(0, Value("vllm:kv_cache_usage_perc"));

        foreach ((string histogram, double count, double? sum) in new (string, double, double?)[]
        {
            ("vllm:time_to_first_token_seconds", 3, null),
            ("vllm:e2e_request_latency_seconds", 3, null),
            ("vllm:request_queue_time_seconds", 3, null),
            ("vllm:request_prefill_time_seconds", 3, null),
            ("vllm:request_decode_time_seconds", 3, null),
            ("vllm:inter_token_latency_seconds", made - 3, null),
            ("vllm:request_prompt_tokens", 3, prompt),
            ("vllm:request_generation_tokens", 3, made),
        })
        {
            Assert.Equal(count, Value(histogram + "_count"));
            Assert.Equal(count, Value(histogram + "_bucket", "le=\"+Inf\""));
            double[] buckets = [.. samples.Where(s => s.Name == histogram + "_bucket").Select(s => s.Value)];
            Assert.True(buckets.Zip(buckets.Skip(1)).All(pair => pair.First <= pair.Second), $"{histogram}'s buckets are not cumulative: {string.Join(", ", buckets)}");
            if (sum is double expected)
            {
                Assert.Equal(expected, Value(histogram + "_sum"));
            }
            else
            {
                Assert.True(Value(histogram + "_sum") > 0, $"{histogram} summed to nothing");
            }
        }

        // vLLM's bounds as its Python client writes them.
        Assert.Contains(samples, s => s.Name == "vllm:time_to_first_token_seconds_bucket" && s.Labels.StartsWith("le=\"0.001\"", StringComparison.Ordinal));
        Assert.Contains(samples, s => s.Name == "vllm:e2e_request_latency_seconds_bucket" && s.Labels.StartsWith("le=\"7680.0\"", StringComparison.Ordinal));
    }
}
