using System.Net;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// llama-server's <c>GET /slots</c>: every slot idle at first; while a request runs, its slot processing with the
/// request's settings, prompt and tokens made; <c>fail_on_no_slot=1</c> a 503 while every slot is busy and a 200 once
/// one is free.
/// </summary>
public sealed class SlotsTests
{
    private static async Task<(HttpStatusCode Status, JsonElement Body)> GetAsync(TestServer server, string path)
    {
        using HttpResponseMessage response = await server.Http.GetAsync(path);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement);
    }

    [Fact]
    public async Task Slots_ShowWhatEachSlotRuns_AndFailOnNoSlotSaysWhenAllAreBusy()
    {
        await using TestServer server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { MaxConcurrent = 1, Context = 1024 });

        (HttpStatusCode status, JsonElement idle) = await GetAsync(server, "/slots?fail_on_no_slot=1");
        Assert.Equal(HttpStatusCode.OK, status);
        JsonElement slot = Assert.Single(idle.EnumerateArray());
        Assert.Equal(0, slot.GetProperty("id").GetInt32());
        Assert.Equal(1024, slot.GetProperty("n_ctx").GetInt32());
        Assert.False(slot.GetProperty("is_processing").GetBoolean());
        Assert.Equal(-1, slot.GetProperty("id_task").GetInt32());

        // A long answer; the slots are read while it runs. The test model writes it in a second or two, and on a busy
        // machine (other tests beside it on two cores) the reads may all come after it: then another answer is asked for.
        JsonElement? busy = null;
        HttpStatusCode whileBusy = HttpStatusCode.OK;
        for (int attempt = 0; attempt < 5 && busy is null; attempt++)
        {
            Task<(HttpStatusCode, JsonDocument)> running = server.PostAsync("/v1/completions",
                """{"prompt": "Once upon a time", "max_tokens": 900, "ignore_eos": true, "temperature": 1, "seed": 7}""");
            while (!running.IsCompleted && busy is null)
            {
                (HttpStatusCode code, JsonElement slots) = await GetAsync(server, "/slots");
                if (slots[0].GetProperty("is_processing").GetBoolean() && slots[0].GetProperty("next_token").GetProperty("n_decoded").GetInt32() > 0)
                {
                    // A 200 here counts only while the slot still runs it: an answer that ended between the reads freed it.
                    HttpStatusCode failOnNoSlot = (await GetAsync(server, "/slots?fail_on_no_slot=1")).Status;
                    if (failOnNoSlot == HttpStatusCode.ServiceUnavailable || (await GetAsync(server, "/slots")).Body[0].GetProperty("is_processing").GetBoolean())
                    {
                        busy = slots[0];
                        whileBusy = failOnNoSlot;
                    }
                }
            }

            (HttpStatusCode done, JsonDocument answer) = await running;
            answer.Dispose();
            Assert.Equal(HttpStatusCode.OK, done);
        }

        Assert.True(busy is not null, "five requests ended before a slot showed one");
        JsonElement processing = busy.Value;
        Assert.Equal(900, processing.GetProperty("params").GetProperty("n_predict").GetInt32());
        Assert.Equal(7, processing.GetProperty("params").GetProperty("seed").GetInt32());
        Assert.Equal(1, processing.GetProperty("params").GetProperty("temperature").GetDouble());
        Assert.Equal("Once upon a time", processing.GetProperty("prompt").GetString());
        Assert.Equal(TestTokenizers.Qwen.Encode("Once upon a time").Length, processing.GetProperty("n_prompt_tokens").GetInt32());
        JsonElement next = processing.GetProperty("next_token");
        Assert.Equal(900 - next.GetProperty("n_decoded").GetInt32(), next.GetProperty("n_remain").GetInt32());
        Assert.Equal(HttpStatusCode.ServiceUnavailable, whileBusy);

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(server, "/slots?fail_on_no_slot=1")).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await GetAsync(server, "/slots?colour=red")).Status);
    }
}
