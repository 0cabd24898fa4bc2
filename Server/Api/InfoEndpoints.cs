using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// The small endpoints: <c>GET /v1/models</c>, <c>GET /health</c>, <c>GET /metrics</c> (Prometheus text), and
/// llama-server's <c>POST /tokenize</c>, <c>/detokenize</c>, <c>/apply-template</c> and <c>GET /props</c>.
/// </summary>
internal static class InfoEndpoints
{
    private static readonly HashSet<string> s_tokenizeFields = ["content", "add_special", "parse_special", "with_pieces", "model"];
    private static readonly HashSet<string> s_detokenizeFields = ["tokens", "model"];
    private static readonly HashSet<string> s_vllmTokenizeFields = ["model", "prompt", "add_special_tokens", "return_token_strs"];
    private static readonly HashSet<string> s_vllmChatTokenizeFields =
        ["model", "messages", "add_generation_prompt", "continue_final_message", "add_special_tokens", "return_token_strs", "tools", "chat_template_kwargs"];
    private static readonly HashSet<string> s_applyTemplateFields = ["messages", "tools", "tool_choice", "model", "add_generation_prompt", "continue_final_message", "chat_template_kwargs"];

    /// <summary>
    /// llama-server's <c>GET /props</c>: the context per slot, the slots, the chat template, whether pictures are read,
    /// and the sampling a request gets for the fields it leaves out (generation_config.json's, here).
    /// </summary>
    public static Task PropsAsync(HttpContext http, ServerState server) => ResponseJson.WriteAsync(http, 200, w =>
    {
        Sampling.SamplingOptions defaults = new Sampling.SamplingOverrides().Resolve(server.Model.GenerationConfig);
        w.WriteStartObject();
        w.WriteStartObject("default_generation_settings");
        w.WriteNumber("n_ctx", server.Context);
        w.WriteStartObject("params");
        w.WriteNumber("n_predict", -1);
        w.WriteNumber("temperature", defaults.IsGreedy ? 0 : defaults.Temperature);
        w.WriteNumber("top_k", defaults.TopK);
        w.WriteNumber("top_p", defaults.TopP);
        w.WriteNumber("min_p", defaults.MinP);
        w.WriteNumber("repeat_penalty", defaults.RepetitionPenalty);
        w.WriteNumber("repeat_last_n", -1);
        w.WriteNumber("seed", -1);
        w.WriteStartArray("stop");
        w.WriteEndArray();
        w.WriteBoolean("ignore_eos", false);
        w.WriteBoolean("stream", false);
        w.WriteNumber("n_probs", 0);
        w.WriteString("grammar", "");
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteNumber("total_slots", server.Scheduler.Options.Slots);
        w.WriteString("model_alias", server.ModelName);
        w.WriteString("chat_template", server.Tokenizer.ChatTemplateText ?? "");
        w.WriteStartObject("modalities");
        w.WriteBoolean("vision", server.Model.ImageProcessor is not null);
        w.WriteEndObject();
        w.WriteString("build_info", QwenServer.Fingerprint);
        w.WriteBoolean("is_sleeping", false);
        w.WriteEndObject();
    });

    /// <summary>llama-server's <c>POST /apply-template</c>: the messages (and tools) through the chat template, the assistant's turn opened, as <c>prompt</c>.</summary>
    public static async Task ApplyTemplateAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_applyTemplateFields);
        request.String("model", 256);
        string prompt = ChatPrompt.Render(request, server.Tokenizer, server.Model.ImageProcessor, prefillAssistant: server.Options.PrefillAssistant).Prompt;
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("prompt", prompt);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    public static Task ModelsAsync(HttpContext http, ServerState server) => ResponseJson.WriteAsync(http, 200, w =>
    {
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        w.WriteStartObject();
        w.WriteString("id", server.ModelName);
        w.WriteString("object", "model");
        w.WriteNumber("created", server.Started.ToUnixTimeSeconds());
        w.WriteString("owned_by", "qwensharp");
        w.WriteNumber("context_length", server.Context);
        w.WriteEndObject();
        foreach (string adapter in server.Adapters.SelectableNames)
        {
            // A LoRA adapter a request picks by this name (vLLM lists its adapters so, with the model as their parent).
            w.WriteStartObject();
            w.WriteString("id", adapter);
            w.WriteString("object", "model");
            w.WriteNumber("created", server.Started.ToUnixTimeSeconds());
            w.WriteString("owned_by", "qwensharp");
            w.WriteString("parent", server.ModelName);
            w.WriteNumber("context_length", server.Context);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
    });

    public static Task HealthAsync(HttpContext http, ServerState server) => ResponseJson.WriteAsync(http, 200, w =>
    {
        w.WriteStartObject();
        w.WriteString("status", "ok");
        w.WriteNumber("slots_idle", server.Scheduler.Options.Slots - server.Scheduler.ActiveSlots);
        w.WriteNumber("slots_processing", server.Scheduler.ActiveSlots);
        w.WriteEndObject();
    });

    public static Task MetricsAsync(HttpContext http, ServerState server)
    {
        BatchScheduler scheduler = server.Scheduler;
        SchedulerMetrics metrics = scheduler.Metrics;
        (long used, long capacity) = scheduler.KvPositions;
        (double firstTokenSeconds, long firstTokens) = metrics.TimeToFirstToken;
        (long guessed, long accepted) = metrics.LookupTokens;
        var text = new StringBuilder();
        void Metric(string name, string type, string help, double value, string labels = "")
        {
            if (labels.Length == 0 || !text.ToString().Contains($"# TYPE qwensharp_{name} ", StringComparison.Ordinal))
            {
                PrometheusText.Family(text, $"qwensharp_{name}", type, help);
            }

            PrometheusText.Sample(text, $"qwensharp_{name}", value, labels);
        }

        Metric("requests_total", "counter", "HTTP requests received", server.Requests);
        Metric("requests_in_flight", "gauge", "HTTP requests being answered", server.InFlight);
        Metric("generation_requests_total", "counter", "Generation requests by outcome", metrics.JobsFinished, "{outcome=\"finished\"}");
        Metric("generation_requests_total", "counter", "Generation requests by outcome", metrics.JobsCancelled, "{outcome=\"cancelled\"}");
        Metric("generation_requests_total", "counter", "Generation requests by outcome", metrics.JobsFailed, "{outcome=\"failed\"}");
        Metric("rejected_requests_total", "counter", "Requests answered 429 (queue full)", server.Rejected);
        Metric("bad_requests_total", "counter", "Requests answered with a 4xx error", server.BadRequests);
        Metric("prompt_tokens_total", "counter", "Prompt tokens of started requests", metrics.PromptTokens);
        Metric("prompt_tokens_cached_total", "counter", "Prompt tokens whose KV cache was reused", metrics.CachedPromptTokens);
        Metric("generation_tokens_total", "counter", "Tokens generated", metrics.GeneratedTokens);
        Metric("decode_steps_total", "counter", "Forward steps run", metrics.Steps);
        Metric("lookup_draft_tokens_total", "counter", "Tokens guessed by prompt lookup", guessed);
        Metric("lookup_accepted_tokens_total", "counter", "Guessed tokens the model chose", accepted);
        (long embeddingJobs, long embeddingInputs, long embeddingTokens) = metrics.Embeddings;
        Metric("embedding_requests_total", "counter", "Embedding requests answered", embeddingJobs);
        Metric("embedding_inputs_total", "counter", "Texts embedded", embeddingInputs);
        Metric("embedding_tokens_total", "counter", "Tokens of the texts embedded", embeddingTokens);
        (long classifyJobs, long classifyInputs, long classifyTokens) = metrics.Classifications;
        Metric("classify_requests_total", "counter", "Classification requests answered", classifyJobs);
        Metric("classify_inputs_total", "counter", "Inputs classified", classifyInputs);
        Metric("classify_tokens_total", "counter", "Tokens of the inputs classified", classifyTokens);
        Metric("tokens_per_second", "gauge", "Tokens generated per second over the last 10 seconds", metrics.RecentTokensPerSecond);
        Metric("time_to_first_token_seconds_sum", "counter", "Seconds from queueing to the first token, summed", firstTokenSeconds);
        Metric("time_to_first_token_seconds_count", "counter", "Requests that got a first token", firstTokens);
        Metric("queue_depth", "gauge", "Requests waiting for a slot", scheduler.QueueDepth);
        Metric("slots_active", "gauge", "KV slots held by running sequences", scheduler.ActiveSlots);
        Metric("slots_total", "gauge", "KV slots", scheduler.Options.Slots);
        Metric("kv_cache_positions_used", "gauge", "KV cache positions held by running sequences", used);
        Metric("kv_cache_usage_ratio", "gauge", "KV cache positions held by running sequences, of all", capacity == 0 ? 0 : used / (double)capacity);
        server.LlamaCppMetrics.Append(text, scheduler);
        VllmMetrics.Append(text, server);
        return ResponseJson.WriteTextAsync(http, "text/plain; version=0.0.4; charset=utf-8", text.ToString());
    }

    /// <summary>
    /// <c>POST /tokenize</c>: llama-server's (<c>content</c>; <c>tokens</c> back, with <c>with_pieces</c> each token's
    /// piece), or vLLM's when the body has its <c>prompt</c> or <c>messages</c> (<see cref="TokenizeAsVllmAsync"/>).
    /// </summary>
    public static async Task TokenizeAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        if (body.RootElement.ValueKind == JsonValueKind.Object && (body.RootElement.TryGetProperty("prompt", out _) || body.RootElement.TryGetProperty("messages", out _)))
        {
            await TokenizeAsVllmAsync(http, server, body.RootElement).ConfigureAwait(false);
            return;
        }

        RequestFields request = RequestFields.Of(body.RootElement, "", s_tokenizeFields);
        string content = request.String("content") ?? throw ApiException.BadField("content", "'content' is missing");
        bool addSpecial = request.Bool("add_special") ?? false;
        bool parseSpecial = request.Bool("parse_special") ?? true;
        bool withPieces = request.Bool("with_pieces") ?? false;
        int[] ids = server.Tokenizer.Encode(content, addSpecial, parseSpecial);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("tokens");
            foreach (int id in ids)
            {
                if (withPieces)
                {
                    w.WriteStartObject();
                    w.WriteNumber("id", id);
                    WritePiece(w, server.Tokenizer.TokenBytes(id));
                    w.WriteEndObject();
                }
                else
                {
                    w.WriteNumberValue(id);
                }
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// vLLM's <c>POST /tokenize</c>: a <c>prompt</c> (<c>add_special_tokens</c>, true by default) or <c>messages</c> through
    /// the chat template (<c>add_generation_prompt</c>, <c>continue_final_message</c>, <c>tools</c>,
    /// <c>chat_template_kwargs</c>; the template's own special tokens, so <c>add_special_tokens</c> false by default), answered
    /// with <c>count</c>, <c>max_model_len</c> (the server's context), <c>tokens</c> and, with <c>return_token_strs</c>,
    /// each token as the vocabulary spells it (transformers' convert_ids_to_tokens, as vLLM gives them).
    /// </summary>
    private static async Task TokenizeAsVllmAsync(HttpContext http, ServerState server, JsonElement body)
    {
        bool chat = body.TryGetProperty("messages", out _);
        RequestFields request = RequestFields.Of(body, "", chat ? s_vllmChatTokenizeFields : s_vllmTokenizeFields);
        request.String("model", 256);
        bool strings = request.Bool("return_token_strs") ?? false;
        int[] ids;
        if (chat)
        {
            request.Bool("add_special_tokens");
            ids = server.Tokenizer.Encode(ChatPrompt.Render(request, server.Tokenizer, server.Model.ImageProcessor, prefillAssistant: server.Options.PrefillAssistant).Prompt);
        }
        else
        {
            ids = server.Tokenizer.Encode(request.String("prompt") ?? "", request.Bool("add_special_tokens") ?? true);
        }

        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("count", ids.Length);
            w.WriteNumber("max_model_len", server.Context);
            w.WriteStartArray("tokens");
            foreach (int id in ids)
            {
                w.WriteNumberValue(id);
            }

            w.WriteEndArray();
            if (strings)
            {
                w.WriteStartArray("token_strs");
                foreach (int id in ids)
                {
                    w.WriteStringValue(server.Tokenizer.IdToToken(id) ?? "");
                }

                w.WriteEndArray();
            }
            else
            {
                w.WriteNull("token_strs");
            }

            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>A token's piece as llama-server gives it: its text where its bytes are valid UTF-8 alone, else the bytes (part of a character).</summary>
    private static void WritePiece(Utf8JsonWriter w, byte[] bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes))
        {
            w.WriteString("piece", Encoding.UTF8.GetString(bytes));
            return;
        }

        w.WriteStartArray("piece");
        foreach (byte b in bytes)
        {
            w.WriteNumberValue(b);
        }

        w.WriteEndArray();
    }

    public static async Task DetokenizeAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_detokenizeFields);
        JsonElement tokens = request.Get("tokens") ?? throw ApiException.BadField("tokens", "'tokens' is missing");
        if (tokens.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField("tokens", $"'tokens' must be a list of token ids, not {RequestFields.Kind(tokens)}");
        }

        var ids = new List<int>();
        int vocabulary = server.Model.Config.VocabSize;
        foreach (JsonElement id in tokens.EnumerateArray())
        {
            if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int value) || value < 0 || value >= vocabulary)
            {
                throw ApiException.BadField($"tokens[{ids.Count}]", $"'tokens[{ids.Count}]' is {RequestFields.Show(id)}; token ids run from 0 to {vocabulary - 1}");
            }

            ids.Add(value);
        }

        string content = server.Tokenizer.Decode(ids);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("content", content);

            // vLLM's /detokenize answers the same text as "prompt".
            w.WriteString("prompt", content);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }
}
