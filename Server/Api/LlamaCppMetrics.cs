using System.Text;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// llama-server's Prometheus series (<c>llamacpp:prompt_tokens_total</c>, <c>llamacpp:n_busy_slots_per_decode</c>, ...)
/// beside this server's own, with its names, types and meanings, so that dashboards, load tests and harnesses that scrape
/// a llama-server read this one unchanged. As there, the two throughput gauges cover the time since the previous scrape
/// (each <c>/metrics</c> read starts a new bucket), the counters everything since the start, and a prompt's tokens count
/// only those read, not those whose keys and values were reused.
/// </summary>
internal sealed class LlamaCppMetrics
{
    private readonly Lock _lock = new();
    private (long PromptTokens, double PromptSeconds, long Predicted, double PredictedSeconds) _lastScrape;

    public void Append(StringBuilder text, BatchScheduler scheduler)
    {
        SchedulerMetrics metrics = scheduler.Metrics;
        long promptTokens = metrics.PromptTokens - metrics.CachedPromptTokens, predicted = metrics.GeneratedTokens, steps = metrics.Steps;
        (double promptSeconds, double predictedSeconds) = metrics.SequenceSeconds;
        (long used, long capacity) = scheduler.KvPositions;
        double promptRate, predictedRate;
        lock (_lock)
        {
            promptRate = Rate(promptTokens - _lastScrape.PromptTokens, promptSeconds - _lastScrape.PromptSeconds);
            predictedRate = Rate(predicted - _lastScrape.Predicted, predictedSeconds - _lastScrape.PredictedSeconds);
            _lastScrape = (promptTokens, promptSeconds, predicted, predictedSeconds);
        }

        void Metric(string name, string type, string help, double value)
        {
            PrometheusText.Family(text, $"llamacpp:{name}", type, help);
            PrometheusText.Sample(text, $"llamacpp:{name}", value);
        }

        Metric("prompt_tokens_total", "counter", "Number of prompt tokens processed.", promptTokens);
        Metric("prompt_seconds_total", "counter", "Prompt process time", promptSeconds);
        Metric("tokens_predicted_total", "counter", "Number of generation tokens processed.", predicted);
        Metric("tokens_predicted_seconds_total", "counter", "Predict process time", predictedSeconds);
        Metric("n_decode_total", "counter", "Total number of llama_decode() calls", steps);
        Metric("n_busy_slots_per_decode", "counter", "Average number of busy slots per llama_decode() call", metrics.BusySlotSteps / (double)Math.Max(steps, 1));
        Metric("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.", promptRate);
        Metric("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.", predictedRate);
        Metric("kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.", capacity == 0 ? 0 : used / (double)capacity);
        Metric("kv_cache_tokens", "gauge", "KV-cache tokens.", used);
        Metric("requests_processing", "gauge", "Number of requests processing.", scheduler.ActiveSlots);
        Metric("requests_deferred", "gauge", "Number of requests deferred.", scheduler.QueueDepth);
    }

    /// <summary>Tokens per second over a bucket, 0 for an empty one (as llama-server gives).</summary>
    private static double Rate(long tokens, double seconds) => tokens > 0 && seconds > 0 ? tokens / seconds : 0;
}
