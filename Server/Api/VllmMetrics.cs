using System.Globalization;
using System.Text;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// vLLM's Prometheus series (<c>vllm:num_requests_waiting</c>, <c>vllm:time_to_first_token_seconds</c>, ...) beside this
/// server's own, with its names, types, histogram bounds and <c>model_name</c> label, so that its Grafana dashboards and
/// the autoscalers that watch it (KEDA or a HorizontalPodAutoscaler on requests waiting or KV cache use) read this server
/// unchanged. Prompt tokens count every prompt token (vLLM's <c>prompt_tokens_total</c>); the prefix cache's queries and
/// hits are the prompt tokens and those whose keys and values were reused; nothing is ever preempted here.
/// </summary>
internal static class VllmMetrics
{
    public static void Append(StringBuilder text, ServerState server)
    {
        BatchScheduler scheduler = server.Scheduler;
        SchedulerMetrics metrics = scheduler.Metrics;
        (long used, long capacity) = scheduler.KvPositions;
        string labels = $"model_name=\"{Escape(server.ModelName)}\",engine=\"0\"";

        void Head(string name, string type, string help) => PrometheusText.Family(text, $"vllm:{name}", type, help);
        void Sample(string name, double value, string extra = "") => PrometheusText.Sample(text, $"vllm:{name}", value, $"{{{extra}{labels}}}");
        void Metric(string name, string type, string help, double value)
        {
            Head(name, type, help);
            Sample(name, value);
        }

        void HistogramOf(string name, string help, Histogram histogram)
        {
            Head(name, "histogram", help);
            (long[] cumulative, double sum, long count) = histogram.Read();
            for (int i = 0; i < cumulative.Length; i++)
            {
                Sample($"{name}_bucket", cumulative[i], $"le=\"{Bound(histogram.Bounds[i])}\",");
            }

            Sample($"{name}_bucket", count, "le=\"+Inf\",");
            Sample($"{name}_sum", sum);
            Sample($"{name}_count", count);
        }

        double usage = capacity == 0 ? 0 : used / (double)capacity;
        Metric("num_requests_running", "gauge", "Number of requests in model execution batches.", scheduler.ActiveSlots);
        Metric("num_requests_waiting", "gauge", "Number of requests waiting to be processed.", scheduler.QueueDepth);
        Metric("kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", usage);
        Metric("gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage (the KV cache's, on any device).", usage);
        Metric("num_preemptions_total", "counter", "Cumulative number of preemption from the engine.", 0);
        Metric("prompt_tokens_total", "counter", "Number of prefill tokens processed.", metrics.PromptTokens);
        Metric("generation_tokens_total", "counter", "Number of generation tokens processed.", metrics.GeneratedTokens);
        Metric("prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.", metrics.PromptTokens);
        Metric("prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", metrics.CachedPromptTokens);
        Head("request_success_total", "counter", "Count of successfully processed requests.");
        foreach ((string reason, long count) in metrics.RequestsEnded)
        {
            Sample("request_success_total", count, $"finished_reason=\"{reason}\",");
        }

        HistogramOf("time_to_first_token_seconds", "Histogram of time to first token in seconds.", metrics.TimeToFirstTokenHistogram);
        HistogramOf("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", metrics.InterTokenLatency);
        HistogramOf("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", metrics.EndToEndLatency);
        HistogramOf("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", metrics.QueueTime);
        HistogramOf("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", metrics.PrefillTime);
        HistogramOf("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", metrics.DecodeTime);
        HistogramOf("request_prompt_tokens", "Number of prefill tokens processed.", metrics.RequestPromptTokens);
        HistogramOf("request_generation_tokens", "Number of generation tokens processed.", metrics.RequestGenerationTokens);
    }

    /// <summary>A bucket's bound as vLLM's Python client writes it: 1.0, 0.025, 2560.0.</summary>
    private static string Bound(double value) => value == Math.Floor(value)
        ? value.ToString("F1", CultureInfo.InvariantCulture)
        : value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>A label value as Prometheus' text format writes it: backslash, quote and newline escaped.</summary>
    private static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
