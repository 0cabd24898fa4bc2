using System.Net;
using System.Text.Json;
using OpenAI.Chat;
using QwenSharp.Tests.Qwen2VL;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>The server with a Qwen2-VL model: pictures as OpenAI image_url parts (data: URLs), against the float64 reference.</summary>
public sealed class VisionServerTests
{
    private static int[] Reference(string name, out JsonDocument json)
    {
        json = VisionFixture.Case(name);
        return VisionFixture.Ints(json.RootElement.GetProperty("greedy_new_ids"));
    }

    [Fact]
    public async Task A_picture_from_the_official_client_gives_the_reference_answer()
    {
        int[] expected = Reference("2_image_b", out JsonDocument reference);
        using (reference)
        {
            await using TestServer server = await TestServer.StartAsync(VisionFixture.ModelDirectory, null);
            ChatMessage[] messages =
            [
                new SystemChatMessage("You are a careful observer."),
                new UserChatMessage(
                    ChatMessageContentPart.CreateTextPart("Look at this picture."),
                    ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(File.ReadAllBytes(VisionFixture.Image("b_100x70_rgb.png"))), "image/png"),
                    ChatMessageContentPart.CreateTextPart("Describe the colors in one sentence.")),
            ];

            // Twice: the second request must not reuse the first one's picture pads from the finished slot.
            for (int round = 0; round < 2; round++)
            {
                ChatCompletion completion = await server.Chat().CompleteChatAsync(messages, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 });
                Assert.Equal(server.Model.Tokenizer.Decode(expected[..5]), completion.Content[0].Text);
                Assert.Equal(reference.RootElement.GetProperty("num_prompt_tokens").GetInt32(), completion.Usage.InputTokenCount);
                // The second time, the text before the picture (up to its first pad) comes from the finished slot, and no more.
                int firstPad = reference.RootElement.GetProperty("images")[0].GetProperty("first_token_index").GetInt32();
                Assert.Equal(round == 0 ? 0 : firstPad, completion.Usage.InputTokenDetails.CachedTokenCount);
            }
        }
    }

    /// <summary>
    /// The same conversation through OpenAI's Responses API (an input_image part as a data: URL, instructions as the system
    /// message) and Anthropic's Messages API (a base64 image block, the system prompt as system): the reference answer.
    /// </summary>
    [Fact]
    public async Task A_picture_through_the_Responses_and_Messages_APIs_gives_the_reference_answer()
    {
        int[] expected = Reference("2_image_b", out JsonDocument reference);
        reference.Dispose();
        await using TestServer server = await TestServer.StartAsync(VisionFixture.ModelDirectory, null);
        string image = Convert.ToBase64String(File.ReadAllBytes(VisionFixture.Image("b_100x70_rgb.png")));
        string answer = server.Model.Tokenizer.Decode(expected[..5]);

        JsonElement responses = await server.PostOkAsync("/v1/responses", $$$"""
            {"instructions": "You are a careful observer.", "temperature": 0, "max_output_tokens": 5,
             "input": [{"role": "user", "content": [
               {"type": "input_text", "text": "Look at this picture."},
               {"type": "input_image", "image_url": "data:image/png;base64,{{{image}}}"},
               {"type": "input_text", "text": "Describe the colors in one sentence."}]}]}
            """);
        JsonElement messages = await server.PostOkAsync("/v1/messages", $$$"""
            {"system": "You are a careful observer.", "temperature": 0, "max_tokens": 5,
             "messages": [{"role": "user", "content": [
               {"type": "text", "text": "Look at this picture."},
               {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "{{{image}}}"}},
               {"type": "text", "text": "Describe the colors in one sentence."}]}]}
            """);

        Assert.Equal(answer, responses.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(answer, messages.GetProperty("content")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Two_different_pictures_in_a_row_are_not_confused()
    {
        int[] first = Reference("1_image_a", out JsonDocument a);
        a.Dispose();
        await using TestServer server = await TestServer.StartAsync(VisionFixture.ModelDirectory, null);
        string Body(string image) => $$$"""
            {"messages": [{"role": "user", "content": [
              {"type": "image_url", "image_url": {"url": "data:image/png;base64,{{{Convert.ToBase64String(File.ReadAllBytes(VisionFixture.Image(image)))}}}"}},
              {"type": "text", "text": "What is in this picture?"}]}],
             "max_tokens": 4, "temperature": 0}
            """;
        JsonElement other = await server.PostOkAsync("/v1/chat/completions", Body("c_64x200_gray.png"));
        JsonElement answer = await server.PostOkAsync("/v1/chat/completions", Body("a_56x56_rgb.png"));
        Assert.Equal(server.Model.Tokenizer.Decode(first[..4]), answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.NotEqual(answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(),
            other.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Theory]
    [InlineData("\"https://example.com/cat.png\"", "must be a data: URL")]
    [InlineData("\"data:image/png;base64,bm90IGFuIGltYWdl\"", "not a PNG or JPEG image")]
    public async Task A_bad_picture_is_a_400_naming_the_part(string url, string expected)
    {
        await using TestServer server = await TestServer.StartAsync(VisionFixture.ModelDirectory, null);
        (HttpStatusCode status, JsonDocument body) = await server.PostAsync("/v1/chat/completions",
            $$$"""{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": {{{url}}}}}, {"type": "text", "text": "Hi"}]}]}""");
        using (body)
        {
            Assert.Equal(HttpStatusCode.BadRequest, status);
            JsonElement error = body.RootElement.GetProperty("error");
            Assert.Equal("messages[0].content[0].image_url.url", error.GetProperty("param").GetString());
            Assert.Contains(expected, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }
}
