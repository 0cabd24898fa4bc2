using System.Net;
using System.Text.Json;
using QwenSharp.Tests.Engine;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <c>/classify</c> (vLLM's classification API) over a sequence classifier: each input's label, probs and logits against
/// llama.cpp's last hidden state mapped by the score head in float64; a conversation as a reward model rates it; and
/// what a classifier or a generating model cannot do, answered 400 naming it.
/// </summary>
public sealed class ClassifyServerTests
{
    private const string Story = "Once upon a time, there was a little girl named Lily.";

    private static void AssertClose(double[] expected, JsonElement actual, string what)
    {
        float[] values = [.. actual.EnumerateArray().Select(v => v.GetSingle())];
        Assert.Equal(expected.Length, values.Length);
        double error = expected.Zip(values, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(error <= 1e-4 * Math.Max(1, expected.Max(Math.Abs)), $"{what}: differs by {error:E3}");
    }

    [Fact]
    public async Task Classify_AnswersEachInputsLabelProbsAndLogits_AsVllmShapesThem()
    {
        await using TestServer server = await TestServer.StartAsync(ClassificationTests.WithChatTemplate(ClassificationTests.ClassifierFolder(3)), null);
        int[] story = server.Model.Tokenizer.Encode(Story, addSpecialTokens: true);
        int[] end = server.Model.Tokenizer.Encode("The end.", addSpecialTokens: true);

        JsonElement body = await server.PostOkAsync("/classify", $$"""{"input": ["{{Story}}", "The end."]}""");

        Assert.Equal("list", body.GetProperty("object").GetString());
        Assert.StartsWith("classify-", body.GetProperty("id").GetString(), StringComparison.Ordinal);
        JsonElement[] data = [.. body.GetProperty("data").EnumerateArray()];
        Assert.Equal(2, data.Length);
        foreach ((int index, int[] ids) in ((int, int[])[])[(0, story), (1, end)])
        {
            double[] logits = ClassificationTests.ReferenceLogits(ids, 3);
            double max = logits.Max(), total = logits.Sum(l => Math.Exp(l - max));
            Assert.Equal(index, data[index].GetProperty("index").GetInt32());
            AssertClose(logits, data[index].GetProperty("logits"), $"input {index} logits");
            AssertClose([.. logits.Select(l => Math.Exp(l - max) / total)], data[index].GetProperty("probs"), $"input {index} probs");
            Assert.Equal(3, data[index].GetProperty("num_classes").GetInt32());
            Assert.Equal(((string[])["negative", "neutral", "positive"])[Array.IndexOf(logits, max)], data[index].GetProperty("label").GetString());
        }

        Assert.Equal(story.Length + end.Length, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // Token ids, trailing padding left out as transformers leaves it out; the /v1 path is the same endpoint.
        JsonElement padded = await server.PostOkAsync("/v1/classify", $$"""{"input": [{{string.Join(',', story)}}, {{ClassificationTests.Pad}}, {{ClassificationTests.Pad}}]}""");
        AssertClose(ClassificationTests.ReferenceLogits(story, 3), padded.GetProperty("data")[0].GetProperty("logits"), "ids with trailing padding");

        // A conversation, rendered as it stands: no assistant turn opened unless asked.
        JsonElement rated = await server.PostOkAsync("/classify", """{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Once upon a time"}]}""");
        AssertClose(ClassificationTests.ReferenceLogits(server.Model.Tokenizer.Encode("user: Hi\nassistant: Once upon a time\n"), 3),
            rated.GetProperty("data")[0].GetProperty("logits"), "the conversation");
        JsonElement opened = await server.PostOkAsync("/classify", """{"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true}""");
        AssertClose(ClassificationTests.ReferenceLogits(server.Model.Tokenizer.Encode("user: Hi\nassistant:"), 3),
            opened.GetProperty("data")[0].GetProperty("logits"), "the conversation, the assistant's turn opened");

        // /metrics counts what was classified, apart from embeddings.
        Assert.Equal(4, await server.MetricAsync("qwensharp_classify_requests_total"));
        Assert.Equal(5, await server.MetricAsync("qwensharp_classify_inputs_total"));
        Assert.Equal(0, await server.MetricAsync("qwensharp_embedding_inputs_total"));
    }

    [Fact]
    public async Task AClassifierRefusesGeneration_AndAGeneratorRefusesClassify_NamingWhy()
    {
        await using (TestServer classifier = await TestServer.StartAsync(ClassificationTests.WithChatTemplate(ClassificationTests.ClassifierFolder(3)), null))
        {
            foreach ((string path, string json) in ((string, string)[])[
                ("/v1/completions", """{"prompt": "Once", "max_tokens": 2}"""),
                ("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Hi"}]}""")])
            {
                (HttpStatusCode status, JsonDocument error) = await classifier.PostAsync(path, json);
                using (error)
                {
                    Assert.Equal(HttpStatusCode.BadRequest, status);
                    Assert.Equal("model_does_not_generate", error.RootElement.GetProperty("error").GetProperty("code").GetString());
                    Assert.Contains("LlamaForSequenceClassification", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
                }
            }

            foreach ((string json, string param) in ((string, string)[])[
                ("""{"input": "a", "messages": [{"role": "user", "content": "Hi"}]}""", "messages"),
                ("""{"input": ""}""", "input"),
                ("""{"input": ["a", ""]}""", "input[1]"),
                ("""{"input": "a", "dimensions": 2}""", "dimensions")])
            {
                (HttpStatusCode status, JsonDocument error) = await classifier.PostAsync("/classify", json);
                using (error)
                {
                    Assert.Equal(HttpStatusCode.BadRequest, status);
                    Assert.Equal(param, error.RootElement.GetProperty("error").GetProperty("param").GetString());
                }
            }
        }

        await using TestServer generator = await TestServer.StartAsync(Fixtures.DemoModel, null);
        (HttpStatusCode refused, JsonDocument body) = await generator.PostAsync("/classify", """{"input": "a"}""");
        using (body)
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused);
            Assert.Equal("model_does_not_classify", body.RootElement.GetProperty("error").GetProperty("code").GetString());
        }
    }
}
