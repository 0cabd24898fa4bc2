using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;
using QwenSharp.Server;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli;

/// <summary>
/// <c>qwensharp bench --serve 1,4,16,64</c>: a load generator against the real server on loopback. At each
/// number of concurrent streams it sends that many streamed /v1/completions requests at once (random
/// prompts, none sharing a prefix, ignore_eos so every stream runs to max_tokens) and measures the total
/// tokens/s (all streams' tokens over the wall time, prefill included), the decode tokens/s (tokens after
/// each stream's first, over the time from the first first-token to the last end), the steady decode tokens/s
/// (the tokens that arrive while every stream decodes: after the last first token, before the first end, so no
/// prefill shares those steps) and each request's time to first token. Levels are interleaved over the rounds
/// and each figure is the median of its rounds.
/// </summary>
internal static class ServeBench
{
    /// <summary>One number of streams' figures; <paramref name="Guessed"/> and <paramref name="Taken"/>: prompt lookup's guesses over all its rounds.</summary>
    public sealed record Level(int Streams, double TokensPerSecond, double DecodeTokensPerSecond, double SteadyDecodeTokensPerSecond,
        double FirstTokenP50, double FirstTokenP99, int Tokens, long Guessed = 0, long Taken = 0);

    public static IReadOnlyList<Level> Run(Qwen2Model model, Tokenizer tokenizer, IReadOnlyList<int> streamCounts, int promptTokens, int newTokens, int rounds,
        int? promptLookup, SamplingOptions? sampling, TextWriter progress)
    {
        int most = streamCounts.Max();
        var options = new ServerOptions
        {
            Port = 0,
            MaxConcurrent = most,
            MaxQueue = most,
            Context = promptTokens + newTokens + 1,
            ModelName = "bench",
            PromptLookup = promptLookup,
        };
        QwenServer server = QwenServer.StartAsync(model, tokenizer, [], options).GetAwaiter().GetResult();
        try
        {
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = most * 2 }) { BaseAddress = server.Address, Timeout = TimeSpan.FromHours(1) };
            var random = new Random(4321);
            int[] Prompt() => [.. Enumerable.Range(0, promptTokens).Select(_ => random.Next(Math.Min(model.Config.VocabSize, tokenizer.VocabularySize)))];

            // Warm-up, not measured: every kernel and the HTTP path at the largest batch.
            Measure(http, [.. Enumerable.Range(0, most).Select(_ => Prompt())], Math.Min(newTokens, 8), sampling);
            var results = streamCounts.ToDictionary(n => n, _ => new List<Level>());
            for (int round = 0; round < rounds; round++)
            {
                foreach (int streams in streamCounts)
                {
                    (long guessedBefore, long takenBefore) = LookupCounts(http);
                    Level level = Measure(http, [.. Enumerable.Range(0, streams).Select(_ => Prompt())], newTokens, sampling);
                    (long guessed, long taken) = LookupCounts(http);
                    level = level with { Guessed = guessed - guessedBefore, Taken = taken - takenBefore };
                    results[streams].Add(level);
                    progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"  round {round + 1}: {streams,3} streams  {level.TokensPerSecond,8:F1} tokens/s  decode {level.DecodeTokensPerSecond,8:F1} tokens/s  first token p50 {level.FirstTokenP50 * 1000,7:F0} ms  p99 {level.FirstTokenP99 * 1000,7:F0} ms"));
                }
            }

            return [.. streamCounts.Select(n => new Level(n, Median(results[n].Select(l => l.TokensPerSecond)), Median(results[n].Select(l => l.DecodeTokensPerSecond)),
                MedianOfFinite(results[n].Select(l => l.SteadyDecodeTokensPerSecond)), Median(results[n].Select(l => l.FirstTokenP50)),
                Median(results[n].Select(l => l.FirstTokenP99)), results[n][0].Tokens, results[n].Sum(l => l.Guessed), results[n].Sum(l => l.Taken)))];
        }
        finally
        {
            server.StopAsync().GetAwaiter().GetResult();
        }
    }

    private static Level Measure(HttpClient http, int[][] prompts, int newTokens, SamplingOptions? sampling)
    {
        var clock = Stopwatch.StartNew();
        StreamTimes[] streams = Task.WhenAll(prompts.Select(p => StreamAsync(http, p, newTokens, sampling, clock))).GetAwaiter().GetResult();
        double seconds = clock.Elapsed.TotalSeconds;
        double[] firstTokens = [.. streams.Select(s => s.FirstToken).Order()];
        int tokens = streams.Sum(s => s.Tokens);
        double decodeSeconds = streams.Max(s => s.End) - firstTokens[0];

        // The window in which every stream is decoding; the chunks after each first one that land in it are its tokens.
        double from = firstTokens[^1], to = streams.Min(s => s.End);
        int steadyTokens = streams.Sum(s => s.Chunks.Count(t => t > from && t <= to));
        double steady = to > from ? steadyTokens / (to - from) : double.NaN;
        return new Level(prompts.Length, tokens / seconds, (tokens - streams.Length) / Math.Max(decodeSeconds, 1e-9), steady,
            Percentile(firstTokens, 0.5), Percentile(firstTokens, 0.99), tokens);
    }

    /// <summary>The server's prompt lookup counters so far: tokens guessed, and of them taken.</summary>
    private static (long Guessed, long Taken) LookupCounts(HttpClient http)
    {
        string[] lines = http.GetStringAsync("/metrics").GetAwaiter().GetResult().Split('\n');
        long Counter(string name) => (long)double.Parse(lines.First(l => l.StartsWith(name + " ", StringComparison.Ordinal))[(name.Length + 1)..], CultureInfo.InvariantCulture);
        return (Counter("qwensharp_lookup_draft_tokens_total"), Counter("qwensharp_lookup_accepted_tokens_total"));
    }

    /// <summary>One stream's times in seconds from the start of its level: first token, every text chunk (one a token), end; and its token count from the usage chunk.</summary>
    private sealed record StreamTimes(double FirstToken, IReadOnlyList<double> Chunks, double End, int Tokens);

    /// <summary>
    /// One streamed request. Each token comes as its own chunk but for one that ends inside a character (its text waits
    /// for the next); the random prompts' continuations have few.
    /// </summary>
    private static async Task<StreamTimes> StreamAsync(HttpClient http, int[] prompt, int newTokens, SamplingOptions? sampling, Stopwatch clock)
    {
        // Greedy, or sampled with the settings given (top_k and repetition_penalty as vLLM's extra fields).
        string choice = sampling is null ? "\"temperature\":0" : string.Create(CultureInfo.InvariantCulture,
            $"\"temperature\":{sampling.Temperature},\"top_p\":{sampling.TopP},\"top_k\":{sampling.TopK},\"repetition_penalty\":{sampling.RepetitionPenalty}");
        string body = $"{{\"prompt\":[{string.Join(',', prompt)}],\"max_tokens\":{newTokens},{choice},\"ignore_eos\":true,\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}";
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = content };
        using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"the server answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync().ConfigureAwait(false)}");
        }

        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync().ConfigureAwait(false));
        double firstToken = -1;
        var chunks = new List<double>();
        int tokens = 0;
        while (await reader.ReadLineAsync().ConfigureAwait(false) is string line)
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal))
            {
                continue;
            }

            // One clock reading per chunk: the first token's chunk then sits exactly at the stream's first token, which the
            // window of "every stream decoding" starts after.
            double now = clock.Elapsed.TotalSeconds;
            if (firstToken < 0)
            {
                firstToken = now;
            }

            using JsonDocument chunk = JsonDocument.Parse(line.AsMemory(6));
            if (chunk.RootElement.TryGetProperty("usage", out JsonElement usage) && usage.ValueKind == JsonValueKind.Object)
            {
                tokens = usage.GetProperty("completion_tokens").GetInt32();
            }
            else if (chunk.RootElement.TryGetProperty("choices", out JsonElement choices) && choices.GetArrayLength() > 0
                && choices[0].TryGetProperty("finish_reason", out JsonElement reason) && reason.ValueKind == JsonValueKind.Null)
            {
                // A token's chunk (the choice's last chunk, with its finish reason, carries no new token).
                chunks.Add(now);
            }
        }

        return new StreamTimes(firstToken, chunks, clock.Elapsed.TotalSeconds, tokens);
    }

    private static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    /// <summary>The median of the rounds that had a window with every stream decoding (a stream can end before the last one starts), else NaN.</summary>
    private static double MedianOfFinite(IEnumerable<double> values)
    {
        double[] finite = [.. values.Where(double.IsFinite)];
        return finite.Length == 0 ? double.NaN : Median(finite);
    }

    private static double Median(IEnumerable<double> values)
    {
        double[] sorted = [.. values.Order()];
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
