using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using QwenSharp.Server;

namespace QwenSharp.Tests.Support;

/// <summary>A <see cref="QwenServer"/> on a free loopback port over a fixture model, with clients for it.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private TestServer(QwenModel model, QwenServer server)
    {
        Model = model;
        Server = server;
        // A response disposed before its end closes the connection at once (by default the client would read
        // on for up to 2 s to reuse it), as a client that goes away does.
        Http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(2) };
    }

    public QwenModel Model { get; }

    public QwenServer Server { get; }

    public HttpClient Http { get; }

    /// <summary>Tiny Qwen2 weights with the real Qwen2.5 tokenizer and chat template.</summary>
    public static Task<TestServer> StartAsync(ServerOptions? options = null) => StartAsync(TestTokenizers.TinyQwenWithTokenizer, options);

    public static async Task<TestServer> StartAsync(string modelDirectory, ServerOptions? options, string device = "cpu", int? modelPromptLookup = null,
        string? draftModel = null, IReadOnlyList<LoraAdapterOptions>? adapters = null)
    {
        QwenModel model = await QwenModel.LoadAsync(modelDirectory,
            new QwenModelOptions { Threads = 2, Device = device, PromptLookup = modelPromptLookup, DraftModel = draftModel, LoraAdapters = adapters ?? [] });
        try
        {
            QwenServer server = await QwenServer.StartAsync(model, (options ?? new ServerOptions()) with { Port = 0, Context = options?.Context ?? 512 });
            return new TestServer(model, server);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The official OpenAI client, pointed at this server.</summary>
    public ChatClient Chat(string apiKey = "unused") =>
        new("tiny", new ApiKeyCredential(apiKey), new OpenAIClientOptions { Endpoint = new Uri(Server.Address, "v1"), NetworkTimeout = TimeSpan.FromMinutes(2) });

    public async Task<(HttpStatusCode Status, JsonDocument Body)> PostAsync(string path, string json)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await Http.PostAsync(path, content);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsByteArrayAsync()));
    }

    /// <summary>Posts and expects a 400 whose error names <paramref name="param"/> and says <paramref name="message"/>.</summary>
    public async Task AssertRefusedAsync(string path, string json, string param, string message)
    {
        (HttpStatusCode status, JsonDocument body) = await PostAsync(path, json);
        using (body)
        {
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(param, body.RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains(message, body.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }

    /// <summary>Posts and expects 200; the JSON answer.</summary>
    public async Task<JsonElement> PostOkAsync(string path, string json)
    {
        (HttpStatusCode status, JsonDocument body) = await PostAsync(path, json);
        Assert.True(status == HttpStatusCode.OK, $"{path}: {(int)status} {body.RootElement}");
        return body.RootElement;
    }

    /// <summary>The value of one Prometheus metric (the first line that starts with its name and labels).</summary>
    public async Task<double> MetricAsync(string nameAndLabels)
    {
        string text = await Http.GetStringAsync("/metrics");
        string line = text.Split('\n').First(l => l.StartsWith(nameAndLabels + " ", StringComparison.Ordinal));
        return double.Parse(line[(nameAndLabels.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Model.Dispose();
    }
}
