using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// llama-server's <c>GET /slots</c>: each KV cache slot, idle or running a sequence (its prompt, its settings, the
/// tokens it has made and has left), for dashboards and load balancers; with <c>?fail_on_no_slot=1</c>, 503 when every
/// slot is busy, as llama-server answers; and its slot actions (<see cref="ActionAsync"/>), which keep a slot's cache in a
/// file across restarts.
/// </summary>
internal static class SlotsEndpoint
{
    private static readonly HashSet<string> s_query = ["fail_on_no_slot"];
    private static readonly HashSet<string> s_actionQuery = ["action"];
    private static readonly HashSet<string> s_fileFields = ["filename"];

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

    /// <summary>
    /// POST /slots/{id}?action=save|restore|erase, as llama-server's: <c>save</c> writes what the slot holds (its tokens up
    /// to its first picture, and their keys and values) to <c>{"filename": NAME}</c> in <c>--slot-save-path</c>;
    /// <c>restore</c> reads one back, for the next prompt that starts the same way; <c>erase</c> forgets what the slot
    /// holds. An action on a busy slot waits for it to finish its sequence. Save and restore need <c>--slot-save-path</c>
    /// (501 without, as llama-server answers); erase does not.
    /// </summary>
    public static async Task ActionAsync(HttpContext http, ServerState server)
    {
        IQueryCollection query = RequestQuery.Of(http, s_actionQuery);
        string id = http.Request.RouteValues["id"]?.ToString() ?? "";
        if (!int.TryParse(id, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int slot) || slot >= server.Scheduler.Options.Slots)
        {
            throw ApiException.BadField("id_slot", $"slot '{id}' is not one of this server's slots, 0 to {server.Scheduler.Options.Slots - 1} (GET /slots lists them)");
        }

        string action = query["action"].ToString();
        SlotActionKind kind = action switch
        {
            "save" => SlotActionKind.Save,
            "restore" => SlotActionKind.Restore,
            "erase" => SlotActionKind.Erase,
            _ => throw ApiException.BadField("action", $"'action' is '{action}'; expected save, restore or erase"),
        };

        string? name = null, path = null;
        if (kind != SlotActionKind.Erase)
        {
            string directory = server.Options.SlotSavePath
                ?? throw new ApiException(501, $"'action' {action}: this server keeps no slot files; start it with --slot-save-path DIR", "action", "not_supported", "not_supported_error");
            using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
            name = RequestFields.Of(body.RootElement, "", s_fileFields).Required("filename");
            CheckFileName(name);
            path = Path.Combine(directory, name);
        }

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        var job = new SlotAction { Kind = kind, Slot = slot, Path = path, FileName = name, Cancellation = deadline.Token };
        try
        {
            server.Scheduler.Enqueue(job);
        }
        catch (InvalidOperationException)
        {
            throw new ApiException(503, "the server is shutting down", null, "shutting_down", "server_error");
        }

        SlotActionResult result;
        try
        {
            result = await job.Result.Task.ConfigureAwait(false);
        }
        catch (SlotFileException e)
        {
            throw ApiException.BadField("filename", e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ApiException(500, $"'{name}': {e.Message}", "filename", "slot_file_failed", "server_error");
        }
        catch (Exception e) when (e is not ApiException)
        {
            throw Jobs.Translate(e, deadline);
        }

        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("id_slot", slot);
            if (kind == SlotActionKind.Erase)
            {
                w.WriteNumber("n_erased", result.Tokens);
            }
            else
            {
                bool save = kind == SlotActionKind.Save;
                w.WriteString("filename", name);
                w.WriteNumber(save ? "n_saved" : "n_restored", result.Tokens);
                w.WriteNumber(save ? "n_written" : "n_read", result.Bytes);
                w.WriteStartObject("timings");
                w.WriteNumber(save ? "save_ms" : "restore_ms", result.Elapsed.TotalMilliseconds);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// A slot file's name: one file in <c>--slot-save-path</c>, never a path out of it (no separators, not . or ..), at most
    /// 255 bytes, no control characters and no space or dot at its ends (names some file systems refuse or change).
    /// </summary>
    internal static void CheckFileName(string name)
    {
        string? why = name.Length == 0 ? "is empty"
            : System.Text.Encoding.UTF8.GetByteCount(name) > 255 ? "is longer than 255 bytes"
            : name.IndexOfAny(['/', '\\', ':']) >= 0 ? "is a path; give a file name, which is kept in --slot-save-path"
            : name.Any(char.IsControl) ? "holds a control character"
            : name.EndsWith('.') ? "ends with a dot"
            : char.IsWhiteSpace(name[0]) || char.IsWhiteSpace(name[^1]) ? "starts or ends with a space"
            : null;
        if (why is not null)
        {
            throw ApiException.BadField("filename", $"'filename' {why}");
        }
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
