using System.Net;
using System.Text.Json;
using QwenSharp.Server;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// llama-server's slot actions (<c>POST /slots/{id}?action=save|restore|erase</c> with <c>--slot-save-path</c>): a slot
/// saved by one server and restored by the next (a restart) is reused by the next prompt that starts the same way, which
/// then answers as it did; erase forgets a slot; a file of another model, even one of the same shape, is refused and the
/// slot left empty; an action on a busy slot waits for it; bad names, missing files, a file that is not a slot file (left as it was) and servers without the
/// folder are refused naming why.
/// </summary>
public sealed class SlotActionsTests
{
    private const string Request = """{"prompt": "Once upon a time there was a little dog", "n_predict": 8, "temperature": 0, "cache_prompt": true}""";

    private static ServerOptions WithFolder(string folder, int context = 512) => new() { MaxConcurrent = 1, SlotSavePath = folder, Context = context };

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public async Task SavedSlot_RestoredByTheNextServer_IsReusedAndAnswersAsBefore(string device)
    {
        // Saved on the CPU; restored on the CPU, or on the GPU (the file holds one layout for both).
        TestBackends.RequireDevice(device);
        string folder = Fixtures.TempDirectory();
        int saved;
        await using (TestServer first = await TestServer.StartAsync(WithFolder(folder)))
        {
            JsonElement completion = await first.PostOkAsync("/completion", Request);
            Assert.Equal(0, completion.GetProperty("tokens_cached").GetInt32());

            JsonElement save = await first.PostOkAsync("/slots/0?action=save", """{"filename": "story.bin"}""");
            Assert.Equal(0, save.GetProperty("id_slot").GetInt32());
            Assert.Equal("story.bin", save.GetProperty("filename").GetString());
            saved = save.GetProperty("n_saved").GetInt32();
            int prompt = completion.GetProperty("tokens_evaluated").GetInt32();

            // The prompt and the answer but its last token (never fed).
            Assert.Equal(prompt + 7, saved);
            Assert.Equal(new FileInfo(Path.Combine(folder, "story.bin")).Length, save.GetProperty("n_written").GetInt64());
            Assert.True(save.GetProperty("timings").GetProperty("save_ms").GetDouble() >= 0);
            Assert.Single(Directory.GetFiles(folder));
        }

        await using TestServer next = await TestServer.StartAsync(TestTokenizers.TinyQwenWithTokenizer, WithFolder(folder), device);
        string answer = (await next.PostOkAsync("/completion", Request)).GetProperty("content").GetString()!;

        // The slot then holds another prompt; the restore replaces it.
        await next.PostOkAsync("/completion", """{"prompt": "A cat sat", "n_predict": 2, "temperature": 0}""");
        JsonElement restore = await next.PostOkAsync("/slots/0?action=restore", """{"filename": "story.bin"}""");
        Assert.Equal(saved, restore.GetProperty("n_restored").GetInt32());
        Assert.Equal(new FileInfo(Path.Combine(folder, "story.bin")).Length, restore.GetProperty("n_read").GetInt64());

        JsonElement again = await next.PostOkAsync("/completion", Request);
        Assert.Equal(again.GetProperty("tokens_evaluated").GetInt32() - 1, again.GetProperty("tokens_cached").GetInt32());
        Assert.Equal(answer, again.GetProperty("content").GetString());

        // Erase forgets it: the same prompt is read whole again.
        JsonElement erase = await next.PostOkAsync("/slots/0?action=erase", "{}");
        Assert.True(erase.GetProperty("n_erased").GetInt32() > 0);
        Assert.Equal(0, (await next.PostOkAsync("/completion", Request)).GetProperty("tokens_cached").GetInt32());
    }

    [Fact]
    public async Task SlotFileOfAnotherModel_OfTheSameShape_IsRefused_AndTheSlotLeftEmpty()
    {
        // Two random models of one shape (2 layers, 2 key/value heads of 64, the demo tokenizer): the file's header fits
        // either; only the keys and values computed again tell them apart.
        string folder = Fixtures.TempDirectory();
        await using (TestServer llama = await TestServer.StartAsync(RandomKQuantModel.Folder.Value, WithFolder(folder, context: 256)))
        {
            await llama.PostOkAsync("/completion", Request);
            await llama.PostOkAsync("/slots/0?action=save", """{"filename": "llama.bin"}""");
        }

        await using TestServer qwen = await TestServer.StartAsync(RandomKQuantModel.Qwen2Folder.Value, WithFolder(folder, context: 256));
        await qwen.AssertRefusedAsync("/slots/0?action=restore", """{"filename": "llama.bin"}""", "filename", "'llama.bin': its keys and values are not this model's");
        Assert.Equal(0, (await qwen.PostOkAsync("/completion", Request)).GetProperty("tokens_cached").GetInt32());

        // And a file of another shape is refused by its header.
        await using TestServer tiny = await TestServer.StartAsync(WithFolder(folder));
        await tiny.AssertRefusedAsync("/slots/0?action=restore", """{"filename": "llama.bin"}""", "filename", "'llama.bin': kvDim is 128; this model's KV cache has");
    }

    [Fact]
    public async Task BadNamesMissingFilesAndOtherFiles_AreRefused_NothingOverwritten()
    {
        string folder = Fixtures.TempDirectory();
        string notes = Path.Combine(folder, "notes.txt");
        await File.WriteAllTextAsync(notes, "mine");
        await using TestServer server = await TestServer.StartAsync(WithFolder(folder));
        await server.PostOkAsync("/completion", Request);

        await server.AssertRefusedAsync("/slots/0?action=save", """{"filename": "../story.bin"}""", "filename", "'filename' is a path");
        await server.AssertRefusedAsync("/slots/0?action=save", """{"filename": ""}""", "filename", "'filename' is required");
        await server.AssertRefusedAsync("/slots/0?action=save", """{"filename": "story.bin."}""", "filename", "'filename' ends with a dot");
        await server.AssertRefusedAsync("/slots/0?action=save", """{"filename": "notes.txt"}""", "filename", "'notes.txt' exists and is not a slot file");
        Assert.Equal("mine", await File.ReadAllTextAsync(notes));
        await server.AssertRefusedAsync("/slots/0?action=restore", """{"filename": "nothing.bin"}""", "filename", "'nothing.bin': no such slot file");
        await server.AssertRefusedAsync("/slots/0?action=restore", """{"filename": "notes.txt"}""", "filename", "'notes.txt': not a slot file");
        await server.AssertRefusedAsync("/slots/0?action=save", "{}", "filename", "filename");
        await server.AssertRefusedAsync("/slots/0?action=copy", "{}", "action", "'action' is 'copy'; expected save, restore or erase");
        await server.AssertRefusedAsync("/slots/1?action=erase", "{}", "id_slot", "slot '1' is not one of this server's slots, 0 to 0");
        await server.AssertRefusedAsync("/slots/0?action=erase&x=1", "{}", "x", "query parameter 'x'");
        Assert.Equal(["notes.txt"], Directory.GetFiles(folder).Select(Path.GetFileName));

        // Saving again under one name replaces the earlier slot file.
        await server.PostOkAsync("/slots/0?action=save", """{"filename": "story.bin"}""");
        await server.PostOkAsync("/completion", """{"prompt": "A cat sat", "n_predict": 2, "temperature": 0}""");
        JsonElement again = await server.PostOkAsync("/slots/0?action=save", """{"filename": "story.bin"}""");
        Assert.Equal(new FileInfo(Path.Combine(folder, "story.bin")).Length, again.GetProperty("n_written").GetInt64());
        Assert.Equal(2, Directory.GetFiles(folder).Length);
    }

    [Fact]
    public async Task WithoutSlotSavePath_SaveAndRestoreAre501_EraseWorks()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { MaxConcurrent = 1 });
        await server.PostOkAsync("/completion", Request);
        foreach (string action in new[] { "save", "restore" })
        {
            (HttpStatusCode status, JsonDocument body) = await server.PostAsync($"/slots/0?action={action}", """{"filename": "story.bin"}""");
            using (body)
            {
                Assert.Equal(HttpStatusCode.NotImplemented, status);
                Assert.Contains("keeps no slot files; start it with --slot-save-path DIR", body.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            }
        }

        Assert.True((await server.PostOkAsync("/slots/0?action=erase", "{}")).GetProperty("n_erased").GetInt32() > 0);

        // An action on a busy slot waits for its sequence to end, then acts on all of it.
        Task<(HttpStatusCode, JsonDocument)> running = server.PostAsync("/completion", """{"prompt": "Once", "n_predict": 300, "ignore_eos": true, "temperature": 0}""");
        while (!running.IsCompleted && !(await server.Http.GetStringAsync("/slots")).Contains("\"is_processing\":true", StringComparison.Ordinal))
        {
            await Task.Delay(5);
        }

        // (Its answer may reach the client after the erase's: the sequence has ended, its HTTP answer not yet gone out.)
        JsonElement erased = await server.PostOkAsync("/slots/0?action=erase", "{}");
        (HttpStatusCode ended, JsonDocument answer) = await running;
        answer.Dispose();
        Assert.Equal(HttpStatusCode.OK, ended);
        Assert.True(erased.GetProperty("n_erased").GetInt32() >= 300, $"erased {erased.GetProperty("n_erased").GetInt32()} positions, not the whole answer's");
    }
}
