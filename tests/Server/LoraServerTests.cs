using System.Net;
using System.Text.Json;
using QwenSharp.Lora;
using QwenSharp.Qwen2;
using QwenSharp.Server;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// A server's LoRA adapters, weighed by each request (llama-server's <c>lora</c> field and <c>/lora-adapters</c>, vLLM's
/// adapter names in <c>model</c>): each answer is llama.cpp's greedy continuation with the adapters at that request's
/// scales, requests with different scales running side by side and after one another over the same prompt.
/// </summary>
public sealed class LoraServerTests
{
    /// <summary>BOS and "Once upon a time" in the demo's vocabulary.</summary>
    private static readonly int[] s_prompt = [1, 403, 407, 261, 378];

    private const int NewTokens = 16;

    private static readonly Qwen2Config s_demo = Qwen2Config.Load(Path.Combine(Fixtures.DemoModel, Qwen2Config.FileName));

    [Theory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public async Task EachRequestRunsTheAdaptersAtItsScales_AsLlamaCppDoes(string device)
    {
        TestBackends.RequireDevice(device);
        string dir = Fixtures.TempDirectory();
        var alpha = RandomLoraAdapter.Make(s_demo, rank: 4, alpha: 8, seed: 21, LoraTargets.All, layers: null);
        var beta = RandomLoraAdapter.Make(s_demo, rank: 2, alpha: 4, seed: 22, [LoraTarget.Q, LoraTarget.Gate, LoraTarget.Down], layers: null);
        string alphaGguf = alpha.WriteGguf(Path.Combine(dir, "alpha.gguf"), s_demo), betaGguf = beta.WriteGguf(Path.Combine(dir, "beta.gguf"), s_demo);
        string gguf = GgufFixture.Write(Fixtures.DemoModel);

        // Loaded as alpha at 1 and beta at 0 (off unless a request turns it on); beta by a name of its own.
        await using TestServer server = await TestServer.StartAsync(Fixtures.DemoModel, new ServerOptions { MaxConcurrent = 4 }, device, adapters:
            [new LoraAdapterOptions(alpha.WritePeft(Path.Combine(dir, "alpha"))), new LoraAdapterOptions(betaGguf, 0f) { Name = "beta" }]);

        (string Body, (string, float)[] Adapters)[] requests =
        [
            (Body(), [(alphaGguf, 1f)]),
            (Body(model: "beta"), [(betaGguf, 1f)]),
            (Body(lora: """[{"id": 0, "scale": 0.5}, {"id": 1, "scale": 1.5}]"""), [(alphaGguf, 0.5f), (betaGguf, 1.5f)]),
            (Body(lora: "[]"), []),
        ];
        string[] expected = [.. requests.Select(r => Continuation(gguf, r.Adapters))];
        Assert.Equal(expected.Length, expected.Distinct().Count());

        // Side by side (the four share steps), then one after another over the prompt a slot already holds.
        string[] together = await Task.WhenAll(requests.Select(r => Text(server, r.Body)));
        Assert.Equal(expected, together);
        foreach (int i in new[] { 3, 0, 2, 1 })
        {
            Assert.Equal(expected[i], await Text(server, requests[i].Body));
        }

        // The server's own scales: listed, then set (beta alone at 1) for requests that give none.
        JsonElement listed = JsonDocument.Parse(await server.Http.GetStringAsync("/lora-adapters")).RootElement;
        Assert.Equal(["alpha", "beta"], listed.EnumerateArray().Select(a => a.GetProperty("name").GetString()));
        Assert.Equal([1.0, 0.0], listed.EnumerateArray().Select(a => a.GetProperty("scale").GetDouble()));
        Assert.Equal(betaGguf, listed[1].GetProperty("path").GetString());
        Assert.True((await server.PostOkAsync("/lora-adapters", """[{"id": 1, "scale": 1}]""")).GetProperty("success").GetBoolean());
        Assert.Equal(expected[1], await Text(server, Body()));
        Assert.Equal(expected[0], await Text(server, Body(lora: """[{"id": 0, "scale": 1}]""")));

        JsonElement models = JsonDocument.Parse(await server.Http.GetStringAsync("/v1/models")).RootElement.GetProperty("data");
        Assert.Equal(["alpha", "beta"], models.EnumerateArray().Skip(1).Select(m => m.GetProperty("id").GetString()));
        Assert.All(models.EnumerateArray().Skip(1), m => Assert.Equal(models[0].GetProperty("id").GetString(), m.GetProperty("parent").GetString()));
    }

    [Fact]
    public async Task BadLoraFieldsAreRefusedNamingTheEntry()
    {
        string dir = Fixtures.TempDirectory();
        string peft = RandomLoraAdapter.Make(s_demo, 4, 8, 23, [LoraTarget.V], [0]).WritePeft(Path.Combine(dir, "peft"));
        await using TestServer server = await TestServer.StartAsync(Fixtures.DemoModel, null, adapters: [new LoraAdapterOptions(peft)]);
        (string Lora, string Param, string Says)[] cases =
        [
            ("""{"id": 0, "scale": 1}""", "lora", "must be a list"),
            ("""[{"id": 1, "scale": 1}]""", "lora[0].id", "from 0 to 0"),
            ("""[{"id": 0}]""", "lora[0].scale", "missing"),
            ("""[{"scale": 1}]""", "lora[0].id", "missing"),
            ("""[{"id": 0, "scale": "high"}]""", "lora[0].scale", "must be a number"),
            ("""[{"id": 0, "scale": 1}, {"id": 0, "scale": 2}]""", "lora[1].id", "listed twice"),
            ("""[{"id": 0, "scale": 1, "alpha": 2}]""", "lora[0].alpha", "unknown field"),
        ];
        foreach ((string lora, string param, string says) in cases)
        {
            (HttpStatusCode status, JsonDocument body) = await server.PostAsync("/v1/completions", Body(lora: lora));
            JsonElement error = body.RootElement.GetProperty("error");
            Assert.True(status == HttpStatusCode.BadRequest, $"{lora}: {(int)status} {body.RootElement}");
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.Contains(says, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        (HttpStatusCode setStatus, JsonDocument setBody) = await server.PostAsync("/lora-adapters", """[{"id": 3, "scale": 1}]""");
        Assert.Equal(HttpStatusCode.BadRequest, setStatus);
        Assert.Equal("body[0].id", setBody.RootElement.GetProperty("error").GetProperty("param").GetString());

        await using TestServer plain = await TestServer.StartAsync(Fixtures.DemoModel, null);
        (HttpStatusCode none, JsonDocument noneBody) = await plain.PostAsync("/v1/completions", Body(lora: """[{"id": 0, "scale": 1}]"""));
        Assert.Equal(HttpStatusCode.BadRequest, none);
        Assert.Contains("no LoRA adapters", noneBody.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.Array, JsonDocument.Parse(await plain.Http.GetStringAsync("/lora-adapters")).RootElement.ValueKind);

        // Embeddings take the field too: with the adapter off they are the model's without it.
        const string Input = "\"input\": \"Once upon a time\"";
        double[] off = Vector(await server.PostOkAsync("/v1/embeddings", $"{{{Input}, \"lora\": []}}"));
        Assert.Equal(Vector(await plain.PostOkAsync("/v1/embeddings", $"{{{Input}}}")), off);
        Assert.NotEqual(Vector(await server.PostOkAsync("/v1/embeddings", $"{{{Input}}}")), off);
    }

    [Fact]
    public async Task AnAdapterNamedAsTheModel_IsNotPickedByTheModelsName()
    {
        // --name stories and an adapter folder of that name, loaded off: a request for "stories" is the model's.
        string peft = RandomLoraAdapter.Make(s_demo, 4, 8, 24, LoraTargets.All, null).WritePeft(Path.Combine(Fixtures.TempDirectory(), "stories"));
        await using TestServer server = await TestServer.StartAsync(Fixtures.DemoModel, new ServerOptions { ModelName = "stories" }, adapters: [new LoraAdapterOptions(peft, 0f)]);
        await using TestServer plain = await TestServer.StartAsync(Fixtures.DemoModel, null);
        string alone = await Text(plain, Body());
        Assert.NotEqual(alone, await Text(server, Body(lora: """[{"id": 0, "scale": 1}]""")));
        Assert.Equal(alone, await Text(server, Body(model: "stories")));
        Assert.Equal(alone, await Text(server, Body()));
        Assert.Single(JsonDocument.Parse(await server.Http.GetStringAsync("/v1/models")).RootElement.GetProperty("data").EnumerateArray());
    }

    private static double[] Vector(JsonElement response) =>
        [.. response.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetDouble())];

    private static string Body(string? model = null, string? lora = null) =>
        $$"""{"prompt": [{{string.Join(", ", s_prompt)}}], "max_tokens": {{NewTokens}}, "temperature": 0, "ignore_eos": true{{(model is null ? "" : $", \"model\": \"{model}\"")}}{{(lora is null ? "" : $", \"lora\": {lora}")}}}""";

    private static async Task<string> Text(TestServer server, string body) =>
        (await server.PostOkAsync("/v1/completions", body)).GetProperty("choices")[0].GetProperty("text").GetString()!;

    /// <summary>llama.cpp's greedy continuation of the prompt with the adapters, as the text that follows the prompt's.</summary>
    private static string Continuation(string gguf, (string Path, float Scale)[] adapters)
    {
        var ids = new List<int>(s_prompt);
        for (int i = 0; i < NewTokens; i++)
        {
            float[] last = LlamaCpp.Logits(gguf, ids, adapters)[^1];
            ids.Add(Array.IndexOf(last, last.Max()));
        }

        return TestTokenizers.Stories.Decode([.. ids])[TestTokenizers.Stories.Decode(s_prompt).Length..];
    }
}
