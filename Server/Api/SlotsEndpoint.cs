using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// llama-server's <c>GET /slots</c>: each KV cache slot, idle or running a sequence (its prompt, its settings, the
/// tokens it has made and has left), for dashboards and load balancers; with <c>?fail_on_no_slot=1</c>, 503 when every
/// slot is busy, as llama-server answers. Slot files (<c>POST /slots/{id}?action=save|restore|erase</c>) are refused:
/// a slot's cache is kept and reused by prompt without them.
/// </summary>
internal static class SlotsEndpoint
{
    private static readonly HashSet<string> s_query = ["fail_on_no_slot"];

    public static Task ListAsync(HttpContext http, ServerState server)
    {
        IQueryCollection query = RequestQuery.Of(http, s_query);
        SlotState[] slots = server.Scheduler.Slots;
        if (query["fail_on_no_slot"].ToString() is "1" or "true" && slots.All(s => s.IsProcessing))
        {
            throw new ApiException(503, "no slot available", null, "unavailable", "unavailable_error");
        }

        return ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartArray();
            foreach (SlotState slot in slots)
            {
                WriteSlot(w, slot, server);
            }

            w.WriteEndArray();
        });
    }

    /// <summary>POST /slots/{id}: llama-server's slot files, which this server has no use for.</summary>
    public static Task ActionAsync(HttpContext http, ServerState server)
    {
        string action = http.Request.Query["action"].ToString();
        throw ApiException.BadField("action", action is "save" or "restore" or "erase"
            ? $"'action' {action}: this server keeps no slot files; each slot's cache is kept and reused by the next prompt that starts the same way"
            : $"'action' is '{action}'; llama-server's are save, restore and erase, which this server has no use for");
    }

    private static void WriteSlot(Utf8JsonWriter w, SlotState slot, ServerState server)
    {
        GenerationJob? job = slot.Job;
        w.WriteStartObject();
        w.WriteNumber("id", slot.Id);
        w.WriteNumber("id_task", job is null ? -1 : System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(job) & int.MaxValue);
        w.WriteNumber("n_ctx", server.Context);
        w.WriteBoolean("is_processing", slot.IsProcessing);
        if (job is not null)
        {
            w.WriteStartObject("params");
            w.WriteNumber("n_predict", job.MaxTokens);
            w.WriteNumber("temperature", job.Sampling.DoSample ? job.Sampling.Temperature : 0);
            w.WriteNumber("top_k", job.Sampling.TopK);
            w.WriteNumber("top_p", job.Sampling.TopP);
            w.WriteNumber("min_p", job.Sampling.MinP);
            w.WriteNumber("seed", job.Seed);
            w.WriteNumber("n_probs", job.Logprobs ?? 0);
            w.WriteEndObject();
        }

        w.WriteString("prompt", slot.Prompt is null ? "" : server.Tokenizer.Decode(slot.Prompt));
        w.WriteNumber("n_prompt_tokens", slot.Prompt?.Length ?? 0);
        w.WriteStartObject("next_token");
        w.WriteBoolean("has_next_token", slot.IsProcessing);
        w.WriteBoolean("has_new_line", false);
        w.WriteNumber("n_remain", job is null ? -1 : Math.Max(0, job.MaxTokens - slot.Decoded));
        w.WriteNumber("n_decoded", slot.Decoded);
        w.WriteString("stopping_word", "");
        w.WriteEndObject();
        w.WriteEndObject();
    }
}
