using System.Text.Json;
using Microsoft.Extensions.AI;
using QwenSharp.Tests.Qwen2VL;

namespace QwenSharp.Tests.Engine;

/// <summary>The Engine and its IChatClient with pictures as DataContent, against the float64 reference.</summary>
public sealed class VisionChatTests
{
    [Fact]
    public async Task Chat_client_takes_a_png_as_data_content()
    {
        using JsonDocument reference = VisionFixture.Case("2_image_b");
        int[] expected = VisionFixture.Ints(reference.RootElement.GetProperty("greedy_new_ids"));
        using QwenModel model = QwenModel.Load(VisionFixture.ModelDirectory);
        using IChatClient client = model.AsChatClient();
        ChatMessage[] messages =
        [
            new(ChatRole.System, "You are a careful observer."),
            new(ChatRole.User,
            [
                new TextContent("Look at this picture."),
                new DataContent(File.ReadAllBytes(VisionFixture.Image("b_100x70_rgb.png")), "image/png"),
                new TextContent("Describe the colors in one sentence."),
            ]),
        ];

        ChatResponse response = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 4 });
        Assert.Equal(model.Tokenizer.Decode(expected[..4]), response.Text);
        Assert.Equal(reference.RootElement.GetProperty("num_prompt_tokens").GetInt32(), (int)response.Usage!.InputTokenCount!.Value);
    }

    [Fact]
    public async Task Generate_over_messages_with_pictures_equals_the_reference()
    {
        using JsonDocument reference = VisionFixture.Case("1_image_a");
        int[] expected = VisionFixture.Ints(reference.RootElement.GetProperty("greedy_new_ids"));
        using QwenModel model = QwenModel.Load(VisionFixture.ModelDirectory);
        var ids = new List<int>();
        ChatMessage[] messages =
        [
            new(ChatRole.User,
            [
                new DataContent(File.ReadAllBytes(VisionFixture.Image("a_56x56_rgb.png")), "image/png"),
                new TextContent("What is in this picture?"),
            ]),
        ];
        await foreach (GenerationUpdate update in model.GenerateAsync(messages, new TextGenerationOptions { MaxNewTokens = 6, Sampling = new() { Greedy = true } }))
        {
            if (!update.IsFinal)
            {
                ids.Add(update.TokenId);
            }
        }

        Assert.Equal(expected[..6], ids);
    }

    [Fact]
    public async Task A_text_model_refuses_pictures_with_a_clear_error()
    {
        using QwenModel model = QwenModel.Load(Support.TestTokenizers.TinyQwenWithTokenizer);
        ChatMessage[] messages = [new(ChatRole.User, [new DataContent(File.ReadAllBytes(VisionFixture.Image("a_56x56_rgb.png")), "image/png"), new TextContent("Hi")])];
        var error = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await foreach (GenerationUpdate _ in model.GenerateAsync(messages))
            {
            }
        });
        Assert.Contains("takes no pictures", error.Message, StringComparison.Ordinal);
    }
}
