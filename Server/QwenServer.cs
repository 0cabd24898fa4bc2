using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Server.Api;
using QwenSharp.Server.Scheduling;
using QwenSharp.Tokenization;

namespace QwenSharp.Server;

/// <summary>
/// <c>qwensharp serve</c>: the OpenAI API over HTTP on Kestrel, every generation request going through one
/// continuous-batching scheduler. Built on ASP.NET Core's empty builder: no configuration files or
/// environment variables are read (nothing in the working folder changes how the server behaves), no
/// reflection (Native AOT), and Ctrl+C is the caller's to handle (<see cref="StopAsync"/> drains).
/// </summary>
public sealed class QwenServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly BatchScheduler _scheduler;
    private readonly ServerOptions _options;
    private int _stopped;

    private QwenServer(WebApplication app, BatchScheduler scheduler, ServerOptions options, Uri address)
    {
        _app = app;
        _scheduler = scheduler;
        _options = options;
        Address = address;
    }

    /// <summary>The <c>system_fingerprint</c> of every answer: the engine and its version.</summary>
    public static string Fingerprint { get; } = "qwensharp-" + (typeof(QwenServer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()
        ?.InformationalVersion.Split('+')[0] ?? "0");

    /// <summary>Where the server listens (with the port it got when asked for port 0).</summary>
    public Uri Address { get; }

    /// <summary>Positions per sequence the server runs with.</summary>
    public int Context => _scheduler.Options.Context;

    /// <summary>Starts listening; the model stays the caller's (dispose it after the server).</summary>
    public static Task<QwenServer> StartAsync(QwenModel model, ServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        string name = options.ModelName ?? Formats.Gguf.GgufSplit.WithoutPart(Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(model.Directory)));
        // With a draft model the guesses are its own, the Engine's default number of them unless the options say.
        int? guesses = options.PromptLookup ?? model.DefaultGuesses;
        return StartAsync(model.Model, model.Tokenizer, model.EosTokenIds, options with { ModelName = name, PromptLookup = guesses },
            cancellationToken, model.Draft, model.AdapterNames);
    }

    /// <summary>Starts listening over a model and tokenizer built by the caller (the benchmark's random weights).</summary>
    internal static async Task<QwenServer> StartAsync(Qwen2Model model, Tokenizer tokenizer, IReadOnlyList<int> eosTokenIds, ServerOptions options,
        CancellationToken cancellationToken = default, DraftModel? draft = null, IReadOnlyList<string>? adapterNames = null)
    {
        int context = Check(model, options);
        var scheduler = new BatchScheduler(model, tokenizer, new SchedulerOptions
        {
            Slots = options.MaxConcurrent,
            Context = context,
            MaxQueue = options.MaxQueue,
            PrefillChunk = options.PrefillChunk,
            PromptLookup = options.PromptLookup is int guesses and > 0 ? new PromptLookup(guesses) : null,
            DraftModel = options.PromptLookup is 0 ? null : draft,
        });
        try
        {
            var state = new ServerState(model, tokenizer, eosTokenIds, scheduler, options, options.ModelName ?? "qwen2", adapterNames);
            WebApplication app = Build(state);
            try
            {
                await app.StartAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await app.DisposeAsync().ConfigureAwait(false);
                throw;
            }

            string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new QwenServer(app, scheduler, options, new Uri(address));
        }
        catch
        {
            scheduler.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Drains: stops accepting connections and requests, lets running and queued requests finish for up to
    /// <see cref="ServerOptions.DrainTimeout"/>, then cancels what is left.
    /// </summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return;
        }

        _scheduler.StopAccepting();
        using (var drain = new CancellationTokenSource(_options.DrainTimeout))
        {
            // Kestrel waits for running requests until the token fires, then aborts their connections.
            await _app.StopAsync(drain.Token).ConfigureAwait(false);
        }

        _scheduler.CancelAll();
        _scheduler.Dispose();
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private static int Check(Qwen2Model model, ServerOptions options)
    {
        int maxPositions = model.Config.MaxPositionEmbeddings;
        int context = options.Context ?? Math.Min(maxPositions, 4096);
        if (context < 1 || context > maxPositions)
        {
            throw new ArgumentException($"context {context} is outside 1..{maxPositions} (the model's max_position_embeddings)");
        }

        if (options.MaxConcurrent is < 1 or > 1024)
        {
            throw new ArgumentException($"max concurrent {options.MaxConcurrent} is outside 1..1024");
        }

        if (options.Port is < 0 or > 65535)
        {
            throw new ArgumentException($"port {options.Port} is outside 0..65535");
        }

        if (options.StoredResponses < 0)
        {
            throw new ArgumentException($"stored responses {options.StoredResponses} is below 0");
        }

        if (options.MaxQueue < 0 || options.PrefillChunk < 1 || options.MaxBodyBytes < 1 || options.RequestTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("the queue size must be at least 0, and the prefill chunk, body limit and timeout above 0");
        }

        PromptLookup.CheckSetting(options.PromptLookup, nameof(ServerOptions.PromptLookup), allowOff: true);
        return context;
    }

    private static WebApplication Build(ServerState state)
    {
        ServerOptions options = state.Options;
        WebApplicationBuilder builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "qwensharp" });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            kestrel.AddServerHeader = false;
        });
        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':', StringComparison.Ordinal) ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        builder.Services.AddRoutingCore();
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.DrainTimeout);
        WebApplication app = builder.Build();
        app.Use((http, next) => GuardAsync(http, next, state));
        app.MapPost("/v1/chat/completions", http => ChatCompletionsEndpoint.HandleAsync(http, state));
        app.MapPost("/v1/completions", http => CompletionsEndpoint.HandleAsync(http, state));
        foreach (string path in (string[])["/v1/responses", "/responses"])
        {
            app.MapPost(path, http => ResponsesEndpoint.HandleAsync(http, state));
            app.MapGet(path + "/{id}", http => ResponsesEndpoint.GetAsync(http, state));
            app.MapDelete(path + "/{id}", http => ResponsesEndpoint.DeleteAsync(http, state));
            app.MapGet(path + "/{id}/input_items", http => ResponsesEndpoint.InputItemsAsync(http, state));
            app.MapPost(path + "/{id}/cancel", http => ResponsesEndpoint.CancelAsync(http, state));
        }

        app.MapPost(AnthropicEndpoint.Path, http => AnthropicEndpoint.MessagesAsync(http, state));
        app.MapPost(AnthropicEndpoint.Path + "/count_tokens", http => AnthropicEndpoint.CountTokensAsync(http, state));
        app.MapPost("/completion", http => LlamaCompletionEndpoint.CompletionAsync(http, state));
        app.MapPost("/completions", http => LlamaCompletionEndpoint.CompletionAsync(http, state));
        app.MapPost("/infill", http => LlamaCompletionEndpoint.InfillAsync(http, state));
        app.MapPost("/v1/embeddings", http => EmbeddingsEndpoint.HandleAsync(http, state));
        app.MapPost("/embedding", http => LlamaEmbeddingEndpoint.HandleAsync(http, state));
        app.MapPost("/embeddings", http => LlamaEmbeddingEndpoint.HandleAsync(http, state));
        app.MapPost("/classify", http => ClassifyEndpoint.HandleAsync(http, state));
        app.MapPost("/v1/classify", http => ClassifyEndpoint.HandleAsync(http, state));
        app.MapPost("/score", http => ScoreEndpoint.HandleAsync(http, state));
        app.MapPost("/v1/score", http => ScoreEndpoint.HandleAsync(http, state));
        foreach (string path in (string[])["/rerank", "/v1/rerank", "/v2/rerank", "/reranking", "/v1/reranking"])
        {
            app.MapPost(path, http => RerankEndpoint.HandleAsync(http, state));
        }

        app.MapGet("/v1/models", http => InfoEndpoints.ModelsAsync(http, state));
        app.MapGet("/health", http => InfoEndpoints.HealthAsync(http, state));
        app.MapGet("/metrics", http => InfoEndpoints.MetricsAsync(http, state));
        app.MapPost("/tokenize", http => InfoEndpoints.TokenizeAsync(http, state));
        app.MapPost("/detokenize", http => InfoEndpoints.DetokenizeAsync(http, state));
        app.MapPost("/apply-template", http => InfoEndpoints.ApplyTemplateAsync(http, state));
        app.MapGet("/props", http => InfoEndpoints.PropsAsync(http, state));
        app.MapGet("/slots", http => SlotsEndpoint.ListAsync(http, state));
        app.MapPost("/slots/{id}", http => SlotsEndpoint.ActionAsync(http, state));
        app.MapGet("/lora-adapters", http => state.Adapters.ListAsync(http));
        app.MapPost("/lora-adapters", http => state.Adapters.SetAsync(http, state));
        OllamaEndpoint.Map(app, state);
        app.MapFallback(http => throw new ApiException(404, $"no endpoint {http.Request.Method} {http.Request.Path}", null, "not_found"));
        return app;
    }

    /// <summary>Every request: the API key, then the endpoint; whatever it throws becomes an OpenAI error object, never a dropped connection.</summary>
    private static async Task GuardAsync(HttpContext http, RequestDelegate next, ServerState state)
    {
        state.RequestStarted();
        try
        {
            // Anthropic's clients send the key as x-api-key; it stands for the bearer token on every path.
            if (state.Options.ApiKey is string key && http.Request.Path != "/health"
                && !string.Equals(http.Request.Headers.Authorization.ToString(), $"Bearer {key}", StringComparison.Ordinal)
                && !string.Equals(http.Request.Headers["x-api-key"].ToString(), key, StringComparison.Ordinal))
            {
                throw new ApiException(401, "a valid API key is needed: send 'Authorization: Bearer KEY' (or 'x-api-key: KEY')", null, "invalid_api_key", "authentication_error");
            }

            await next(http).ConfigureAwait(false);
        }
        catch (ApiException e)
        {
            await FailAsync(http, state, e).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away; there is nobody to answer.
        }
        catch (BadHttpRequestException e)
        {
            await FailAsync(http, state, new ApiException(e.StatusCode, $"bad request: {e.Message}")).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await FailAsync(http, state, new ApiException(500, $"internal error: {e.GetType().Name}: {e.Message} (please report this)", null, "internal_error", "server_error"))
                .ConfigureAwait(false);
        }
        finally
        {
            state.RequestEnded();
        }
    }

    private static async Task FailAsync(HttpContext http, ServerState state, ApiException error)
    {
        state.CountError(error.Status);
        if (http.Response.HasStarted)
        {
            return;
        }

        await ResponseJson.WriteErrorAsync(http, error).ConfigureAwait(false);
    }
}
