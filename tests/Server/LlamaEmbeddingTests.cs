using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// llama-server's own <c>/embedding</c>: a list of <c>{"index", "embedding": [[...]]}</c>, the vectors /v1/embeddings
/// gives (this model's are unit length as it ships them, so llama-server's default Euclidean normalization leaves them
/// within a rounding), and <c>embd_normalize</c> as common_embd_normalize has it: taxicab sums to 1, 0 scales the
/// largest value to 32760, a p-norm is 1; -1 refused for a model that normalizes its own.
/// </summary>
public sealed class LlamaEmbeddingTests
{
    private static float[][] Vectors(JsonElement answer) =>
        [.. answer.EnumerateArray().Select(item => Assert.Single(item.GetProperty("embedding").EnumerateArray()).EnumerateArray().Select(v => v.GetSingle()).ToArray())];

    [Fact]
    public async Task Embedding_IsLlamaServersShape_NormalizedAsAsked()
    {
        await using TestServer server = await TestServer.StartAsync();
        JsonElement openAi = await server.PostOkAsync("/v1/embeddings", """{"input": ["Once upon a time", "The end."]}""");
        float[][] expected = [.. openAi.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle()).ToArray())];

        JsonElement answer = await server.PostOkAsync("/embedding", """{"content": ["Once upon a time", "The end."]}""");
        Assert.Equal([0, 1], answer.EnumerateArray().Select(item => item.GetProperty("index").GetInt32()));
        float[][] vectors = Vectors(answer);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(expected[i].Length, vectors[i].Length);
            Assert.All(expected[i].Zip(vectors[i]), pair => Assert.Equal(pair.First, pair.Second, 1e-6));
        }

        float[] taxicab = Vectors(await server.PostOkAsync("/embeddings", """{"content": "Once upon a time", "embd_normalize": 1}"""))[0];
        Assert.Equal(1, taxicab.Sum(v => Math.Abs((double)v)), 1e-5);
        float[] int16 = Vectors(await server.PostOkAsync("/embedding", """{"input": "Once upon a time", "embd_normalize": 0}"""))[0];
        Assert.Equal(32760, int16.Max(v => Math.Abs(v)), 1e-2);
        float[] cubic = Vectors(await server.PostOkAsync("/embedding", """{"content": "Once upon a time", "embd_normalize": 3}"""))[0];
        Assert.Equal(1, Math.Pow(cubic.Sum(v => Math.Pow(Math.Abs((double)v), 3)), 1.0 / 3), 1e-5);

        await server.AssertRefusedAsync("/embedding", """{"content": "x", "embd_normalize": -1}""", "embd_normalize", "raw lengths are not kept");
        await server.AssertRefusedAsync("/embedding", """{"content": "x", "input": "y"}""", "content", "not both");
        await server.AssertRefusedAsync("/embedding", """{}""", "content", "'content' is required");
    }
}
