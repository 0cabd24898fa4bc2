using Microsoft.Extensions.AI;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// A chat client's conversation kept in a file (<see cref="QwenChatClient.SaveConversationAsync"/>) and read by another
/// run of the model (<see cref="QwenChatClient.LoadConversationAsync"/>, through <c>GetService</c> inside a builder's
/// pipeline): the next turn reuses it as the first run's own next turn would, and answers as a client that read the
/// whole conversation; a file of another model of the same shape is refused and the client holds nothing; a file that is
/// not a slot file is never written over. On the CPU and the GPU (saved on the CPU).
/// </summary>
public sealed class ConversationFileTests
{
    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public async Task SavedConversation_LoadedByAnotherRun_IsReused_AndAnswersAsReadWhole(string device)
    {
        TestBackends.RequireDevice(device);
        string file = Path.Combine(Fixtures.TempDirectory(), "conversation.bin");
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
        List<ChatMessage> conversation = [new(ChatRole.System, "You tell short stories."), new(ChatRole.User, "Once upon a time")];
        ChatResponse first;
        using (QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer))
        using (IChatClient chat = model.AsChatClient())
        {
            first = await chat.GetResponseAsync(conversation, options);
            long bytes = await chat.GetService<QwenChatClient>()!.SaveConversationAsync(file);
            Assert.Equal(new FileInfo(file).Length, bytes);
        }

        conversation.AddRange(first.Messages);
        conversation.Add(new ChatMessage(ChatRole.User, "And then?"));
        using QwenModel next = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer, new QwenModelOptions { Device = device });
        using IChatClient pipeline = next.AsChatClient().AsBuilder().Build();
        int restored = await pipeline.GetService<QwenChatClient>()!.LoadConversationAsync(file);
        Assert.Equal(first.Usage!.InputTokenCount + first.Usage.OutputTokenCount - 1, restored);

        ChatResponse turn = await pipeline.GetResponseAsync(conversation, options);
        using IChatClient fresh = next.AsChatClient();
        ChatResponse whole = await fresh.GetResponseAsync(conversation, options);

        Assert.True(turn.Usage!.CachedInputTokenCount >= first.Usage.InputTokenCount, $"cached {turn.Usage.CachedInputTokenCount} of the first turn's {first.Usage.InputTokenCount}");
        Assert.Equal(0, whole.Usage!.CachedInputTokenCount);
        Assert.Equal(whole.Text, turn.Text);
    }

    /// <summary>A copy of a model folder whose tokenizer has a plain chat template (the messages' texts one after another).</summary>
    private static string WithChatTemplate(string folder)
    {
        string copy = Fixtures.TempDirectory();
        foreach (string file in Directory.GetFiles(folder))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }

        string config = Path.Combine(copy, "tokenizer_config.json");
        var json = File.Exists(config) ? System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!.AsObject() : [];
        json["chat_template"] = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}";
        File.WriteAllText(config, json.ToJsonString());
        return copy;
    }

    [Fact]
    public async Task AnotherModelsFile_IsRefused_AndAnotherFileNeverWrittenOver()
    {
        // Two random models of one shape: the header fits either; only the keys and values computed again tell them apart.
        string folder = Fixtures.TempDirectory(), file = Path.Combine(folder, "llama.bin"), notes = Path.Combine(folder, "notes.txt");
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 4 };
        ChatMessage[] hello = [new(ChatRole.User, "Hello")];
        using (QwenModel llama = await QwenModel.LoadAsync(WithChatTemplate(RandomKQuantModel.Folder.Value)))
        using (IChatClient chat = llama.AsChatClient())
        {
            await chat.GetResponseAsync(hello, options);
            await chat.GetService<QwenChatClient>()!.SaveConversationAsync(file);
            await File.WriteAllTextAsync(notes, "mine");
            var overwrite = await Assert.ThrowsAsync<QwenSharp.Backend.SlotFile.OtherFileException>(() => chat.GetService<QwenChatClient>()!.SaveConversationAsync(notes));
            Assert.Contains("exists and is not a slot file", overwrite.Message, StringComparison.Ordinal);
            Assert.Equal("mine", await File.ReadAllTextAsync(notes));
        }

        using QwenModel qwen = await QwenModel.LoadAsync(WithChatTemplate(RandomKQuantModel.Qwen2Folder.Value));
        using IChatClient other = qwen.AsChatClient();
        var error = await Assert.ThrowsAsync<InvalidDataException>(() => other.GetService<QwenChatClient>()!.LoadConversationAsync(file));
        Assert.StartsWith(file + ": its keys and values are not this model's", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, (await other.GetResponseAsync(hello, options)).Usage!.CachedInputTokenCount);
    }
}
