using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Sampling;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /v1/completions</c>: OpenAI's text completion API. The prompt is text, token ids, or a list of
/// either (one batch: choice <c>p * n + j</c> is sample j of prompt p); <c>echo</c> puts the prompt before the
/// answer; <c>logprobs</c> gives the legacy per-token shape. As at OpenAI, max_tokens defaults to 16.
/// </summary>
internal static class CompletionsEndpoint
{
    private const int DefaultMaxTokens = 16;

    private static readonly HashSet<string> s_fields =
    [
        "model", "prompt", "stream", "stream_options", "n", "max_tokens", "stop", "logprobs", "echo", "suffix", "best_of", "user", "ignore_eos", "lora",
        .. ResponseFormat.Fields, .. SamplingFields.Names,
    ];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_fields);
        string model = request.String("model", 256) ?? server.ModelName;
        float[]? adapterScales = server.Adapters.ForRequest(request, model);
        bool stream = request.Bool("stream") ?? false;
        bool includeUsage = StreamOptions.IncludeUsage(request);
        int samples = request.Int("n", 1, 128) ?? 1;
        int maxTokens = request.Int("max_tokens", 1, int.MaxValue) ?? DefaultMaxTokens;
        IReadOnlyList<string> stops = request.StringOrList("stop", 16, 4096);
        int? logprobs = request.Int("logprobs", 0, 20);
        bool echo = request.Bool("echo") ?? false;
        if (echo && logprobs is not null)
        {
            throw ApiException.BadField("echo", "'echo' with 'logprobs' (log-probs of the prompt) is not supported; `qwensharp score` gives them");
        }

        // OpenAI's insert: the prompt is the code before the gap, the suffix the code after it (a code model's FIM form).
        string? suffix = request.String("suffix") is { Length: > 0 } given ? given : null;
        FillInTheMiddle? infill = suffix is null ? null
            : FillInTheMiddle.Of(server.Tokenizer) ?? throw ApiException.BadField("suffix", $"'suffix': {QwenModel.FillInTheMiddleMissing}");
        if (infill is not null && (echo || request.Get("prompt") is not { ValueKind: JsonValueKind.String }))
        {
            throw ApiException.BadField("suffix", "'suffix' takes one text prompt, the code before the gap, and no 'echo'");
        }

        if (request.Int("best_of", 1, 128) is int bestOf && bestOf != samples)
        {
            throw ApiException.BadField("best_of", "'best_of' other than n is not supported");
        }

        request.String("user");
        // llama-server's and vLLM's extra: run to max_tokens past end-of-sequence ids (load tests).
        bool ignoreEos = request.Bool("ignore_eos") ?? false;
        // As llama-server and vLLM take it here too: the answer after the prompt is held to the format.
        Func<ITokenConstraint>? constraint = ResponseFormat.Read(request, server)?.Constraint;
        if (constraint is not null && ignoreEos)
        {
            throw ApiException.BadField("ignore_eos", $"'ignore_eos' with a held answer ('{string.Join("', '", ResponseFormat.Fields)}'): it ends when it is whole");
        }

        SamplingOverrides sampling = SamplingFields.Read(request, server.Model.Config.VocabSize);
        (List<int[]> prompts, List<string> texts) = PromptInput.Read(request, server, "prompt");
        if (infill is not null)
        {
            prompts = [infill.Encode(texts[0], suffix!, "", files: null)];
        }

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        GenerationJob job = Jobs.Create(server, prompts, "prompt", samples, sampling, maxTokens, stops, logprobs, primeText: true, deadline.Token, ignoreEos,
            constraint: constraint, adapterScales: adapterScales, endTokens: infill?.EndTokens);
        Jobs.Submit(server, job);
        var response = new Response(http, server, job, model, echo ? texts : null, stream, includeUsage);
        await response.RunAsync(deadline).ConfigureAwait(false);
    }

    private sealed class Response(HttpContext http, ServerState server, GenerationJob job, string model, List<string>? echo, bool stream, bool includeUsage)
    {
        private readonly string _id = "cmpl-" + Guid.NewGuid().ToString("N");
        private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        private readonly ChoiceState[] _choices = [.. Enumerable.Range(0, job.Choices).Select(_ => new ChoiceState())];
        private readonly TextOffsets _offsets = new(server.Tokenizer, job);

        public async Task RunAsync(RequestDeadline deadline)
        {
            if (!stream)
            {
                (ChoiceState[] choices, JobFinishedEvent usage) = await Jobs.CollectAsync(job, deadline).ConfigureAwait(false);
                await ResponseJson.WriteAsync(http, 200, w =>
                {
                    w.WriteStartObject();
                    WriteHeader(w);
                    w.WriteStartArray("choices");
                    for (int i = 0; i < choices.Length; i++)
                    {
                        string text = (echo is null ? "" : echo[i / job.SamplesPerPrompt]) + choices[i].Text;
                        WriteChoice(w, i, text, choices[i].Logprobs, choices[i].Reason ?? StopReason.Length);
                    }

                    w.WriteEndArray();
                    ResponseJson.WriteUsage(w, usage);
                    w.WriteEndObject();
                }).ConfigureAwait(false);
                return;
            }

            await Jobs.StreamAsync(http, server, job, deadline, StreamEventAsync).ConfigureAwait(false);
        }

        private async Task StreamEventAsync(JobEvent next)
        {
            switch (next)
            {
                case TokenEvent token:
                {
                    string text = token.Text;
                    if (echo is not null && !_choices[token.Choice].Opened)
                    {
                        text = echo[token.Choice / job.SamplesPerPrompt] + text;
                    }

                    _choices[token.Choice].Opened = true;
                    if (text.Length > 0 || token.Logprobs is not null)
                    {
                        await ResponseJson.WriteEventAsync(http, w => Chunk(w, token.Choice, text, token.Logprobs is null ? [] : [token.Logprobs], null)).ConfigureAwait(false);
                    }

                    break;
                }

                case ChoiceFinishedEvent finished:
                    await ResponseJson.WriteEventAsync(http, w => Chunk(w, finished.Choice, finished.Text, [], finished.Reason)).ConfigureAwait(false);
                    break;
                case JobFinishedEvent done when includeUsage:
                    await ResponseJson.WriteUsageEventAsync(http, WriteHeader, done).ConfigureAwait(false);
                    break;
            }
        }

        private void Chunk(Utf8JsonWriter w, int index, string text, List<TokenLogprobs> logprobs, StopReason? reason)
        {
            w.WriteStartObject();
            WriteHeader(w);
            w.WriteStartArray("choices");
            WriteChoice(w, index, text, logprobs, reason);
            w.WriteEndArray();
            w.WriteEndObject();
        }

        private void WriteChoice(Utf8JsonWriter w, int index, string text, List<TokenLogprobs> logprobs, StopReason? reason)
        {
            w.WriteStartObject();
            w.WriteNumber("index", index);
            w.WriteString("text", text);
            if (job.Logprobs is null)
            {
                w.WriteNull("logprobs");
            }
            else
            {
                WriteLegacyLogprobs(w, index, logprobs);
            }

            ResponseJson.WriteStringOrNull(w, "finish_reason", reason is StopReason r ? ChoiceState.FinishReason(r) : null);
            w.WriteEndObject();
        }

        /// <summary>
        /// The completions API's log-probs: parallel lists of tokens (each its own bytes as text, U+FFFD where it holds part
        /// of a character), their log-probs, the top alternatives as maps, and where each token's text starts in the choice's.
        /// </summary>
        private void WriteLegacyLogprobs(Utf8JsonWriter w, int index, List<TokenLogprobs> logprobs)
        {
            w.WriteStartObject("logprobs");
            w.WriteStartArray("tokens");
            foreach (TokenLogprobs token in logprobs)
            {
                w.WriteStringValue(TokenPiece.Text(server.Tokenizer, token.Id));
            }

            w.WriteEndArray();
            w.WriteStartArray("token_logprobs");
            foreach (TokenLogprobs token in logprobs)
            {
                w.WriteNumberValue(token.Logprob);
            }

            w.WriteEndArray();
            w.WriteStartArray("top_logprobs");
            foreach (TokenLogprobs token in logprobs)
            {
                w.WriteStartObject();
                foreach (TokenLogprob alternative in token.Top)
                {
                    w.WriteNumber(TokenPiece.Text(server.Tokenizer, alternative.Id), alternative.Logprob);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("text_offset");
            foreach (TokenLogprobs token in logprobs)
            {
                w.WriteNumberValue(_offsets.Next(index, token.Id));
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        private void WriteHeader(Utf8JsonWriter w)
        {
            w.WriteString("id", _id);
            w.WriteString("object", "text_completion");
            w.WriteNumber("created", _created);
            w.WriteString("model", model);
            w.WriteString("system_fingerprint", QwenServer.Fingerprint);
        }
    }
}
