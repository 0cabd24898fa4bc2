using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Sampling;
using QwenSharp.Server.Scheduling;
using QwenSharp.Tokenization;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /v1/completions</c>: OpenAI's text completion API. The prompt is text, token ids, or a list of
/// either (one batch: choice <c>p * n + j</c> is sample j of prompt p); <c>echo</c> puts the prompt before the
/// answer; <c>logprobs</c> gives the legacy per-token shape, and with <c>echo</c> the prompt's tokens too (each one's
/// log-prob after those before it, the first's null), as OpenAI's legacy API and vLLM give them and as
/// lm-evaluation-harness reads them for log-likelihoods; <c>max_tokens: 0</c> with <c>echo</c> scores the prompt alone.
/// As at OpenAI, max_tokens defaults to 16.
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
        bool echo = request.Bool("echo") ?? false;
        int maxTokens = request.Int("max_tokens", echo ? 0 : 1, int.MaxValue) ?? DefaultMaxTokens;
        IReadOnlyList<string> stops = request.StringOrList("stop", 16, 4096);
        int? logprobs = request.Int("logprobs", 0, 20);
        if (maxTokens == 0 && (stream || logprobs is null))
        {
            throw ApiException.BadField("max_tokens", "'max_tokens': 0 scores the prompt alone: it goes with 'echo' and 'logprobs', whole (not streamed)");
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
        // Made (and so checked: prompts empty or past the context are refused) before any prompt is scored.
        GenerationJob job = Jobs.Create(server, prompts, "prompt", samples, sampling, Math.Max(maxTokens, 1), stops, logprobs, primeText: true, deadline.Token, ignoreEos,
            constraint: constraint, adapterScales: adapterScales, endTokens: infill?.EndTokens);
        // The prompts' own log-probs: each prompt scored once, on the scheduler's thread between generation steps.
        ScoreResult[]? promptScores = echo && logprobs is int top
            ? await Jobs.ScoreAsync(server, new EmbeddingJob { Inputs = prompts, ScoreTop = top, AdapterScales = adapterScales, Cancellation = deadline.Token }, deadline)
                .ConfigureAwait(false)
            : null;
        var response = new Response(http, server, job, model, echo ? texts : null, stream, includeUsage, promptScores);
        if (maxTokens == 0)
        {
            await response.WritePromptsAloneAsync().ConfigureAwait(false);
            return;
        }

        Jobs.Submit(server, job);
        await response.RunAsync(deadline).ConfigureAwait(false);
    }

    private sealed class Response(HttpContext http, ServerState server, GenerationJob job, string model, List<string>? echo, bool stream, bool includeUsage,
        ScoreResult[]? promptScores)
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
                        string text = EchoOf(i) + choices[i].Text;
                        WriteChoice(w, i, text, [.. PromptTokens(i), .. Generated(i, choices[i].Logprobs)], choices[i].Reason ?? StopReason.Length);
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
                    List<LegacyToken> tokens = [];
                    if (!_choices[token.Choice].Opened)
                    {
                        text = EchoOf(token.Choice) + text;
                        tokens.AddRange(PromptTokens(token.Choice));
                    }

                    _choices[token.Choice].Opened = true;
                    tokens.AddRange(Generated(token.Choice, token.Logprobs is null ? [] : [token.Logprobs]));
                    if (text.Length > 0 || tokens.Count > 0)
                    {
                        await ResponseJson.WriteEventAsync(http, w => Chunk(w, token.Choice, text, tokens, null)).ConfigureAwait(false);
                    }

                    break;
                }

                case ChoiceFinishedEvent finished:
                {
                    // A choice that ended before its first token still echoes its prompt.
                    bool opened = _choices[finished.Choice].Opened;
                    _choices[finished.Choice].Opened = true;
                    string text = (opened ? "" : EchoOf(finished.Choice)) + finished.Text;
                    List<LegacyToken> tokens = opened ? [] : [.. PromptTokens(finished.Choice)];
                    await ResponseJson.WriteEventAsync(http, w => Chunk(w, finished.Choice, text, tokens, finished.Reason)).ConfigureAwait(false);
                    break;
                }
                case JobFinishedEvent done when includeUsage:
                    await ResponseJson.WriteUsageEventAsync(http, WriteHeader, done).ConfigureAwait(false);
                    break;
            }
        }

        /// <summary>
        /// <c>max_tokens: 0</c>: each choice is its prompt, echoed with its log-probs, and nothing after it (finish_reason
        /// length, as vLLM gives it).
        /// </summary>
        public Task WritePromptsAloneAsync() => ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            WriteHeader(w);
            w.WriteStartArray("choices");
            for (int i = 0; i < job.Choices; i++)
            {
                WriteChoice(w, i, EchoOf(i), [.. PromptTokens(i)], StopReason.Length);
            }

            w.WriteEndArray();
            ResponseJson.WriteUsage(w, new JobFinishedEvent(job.Prompts.Sum(p => p.Length), 0, 0));
            w.WriteEndObject();
        });

        /// <summary>The echoed prompt of choice <paramref name="index"/>, or "" without echo.</summary>
        private string EchoOf(int index) => echo is null ? "" : echo[index / job.SamplesPerPrompt];

        /// <summary>
        /// The echoed prompt's tokens of choice <paramref name="index"/> with their log-probs, where the request asked for
        /// them: the first has none (nothing comes before it); each other's is its log-prob after those before it.
        /// </summary>
        private IEnumerable<LegacyToken> PromptTokens(int index)
        {
            if (promptScores is null)
            {
                yield break;
            }

            int[] prompt = job.Prompts[index / job.SamplesPerPrompt];
            IReadOnlyList<PositionScore> scores = promptScores[index / job.SamplesPerPrompt].Positions;
            StreamingDecoder decoder = server.Tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
            int offset = 0;
            for (int k = 0; k < prompt.Length; k++)
            {
                yield return new LegacyToken(prompt[k], k == 0 ? null : scores[k - 1].NextLogprob, k == 0 ? null : scores[k - 1].Top, offset);
                offset += server.Tokenizer.IdToToken(prompt[k]) is null ? 0 : decoder.Append(prompt[k]).Length;
            }
        }

        /// <summary>Generated tokens of choice <paramref name="index"/>, their text's offsets after the echoed prompt.</summary>
        private IEnumerable<LegacyToken> Generated(int index, List<TokenLogprobs> logprobs) =>
            logprobs.Select(t => new LegacyToken(t.Id, t.Logprob, t.Top, EchoOf(index).Length + _offsets.Next(index, t.Id)));

        private void Chunk(Utf8JsonWriter w, int index, string text, List<LegacyToken> logprobs, StopReason? reason)
        {
            w.WriteStartObject();
            WriteHeader(w);
            w.WriteStartArray("choices");
            WriteChoice(w, index, text, logprobs, reason);
            w.WriteEndArray();
            w.WriteEndObject();
        }

        private void WriteChoice(Utf8JsonWriter w, int index, string text, List<LegacyToken> logprobs, StopReason? reason)
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
                WriteLegacyLogprobs(w, logprobs);
            }

            ResponseJson.WriteStringOrNull(w, "finish_reason", reason is StopReason r ? ChoiceState.FinishReason(r) : null);
            w.WriteEndObject();
        }

        /// <summary>
        /// The completions API's log-probs: parallel lists of tokens (each its own bytes as text, U+FFFD where it holds part
        /// of a character), their log-probs, the top alternatives as maps, and where each token's text starts in the choice's
        /// (a prompt's first token: null log-prob and alternatives, as OpenAI gives them).
        /// </summary>
        private void WriteLegacyLogprobs(Utf8JsonWriter w, List<LegacyToken> logprobs)
        {
            w.WriteStartObject("logprobs");
            w.WriteStartArray("tokens");
            foreach (LegacyToken token in logprobs)
            {
                w.WriteStringValue(TokenPiece.Text(server.Tokenizer, token.Id));
            }

            w.WriteEndArray();
            w.WriteStartArray("token_logprobs");
            foreach (LegacyToken token in logprobs)
            {
                if (token.Logprob is double logprob)
                {
                    w.WriteNumberValue(logprob);
                }
                else
                {
                    w.WriteNullValue();
                }
            }

            w.WriteEndArray();
            w.WriteStartArray("top_logprobs");
            foreach (LegacyToken token in logprobs)
            {
                if (token.Top is null)
                {
                    w.WriteNullValue();
                    continue;
                }

                w.WriteStartObject();
                foreach (TokenLogprob alternative in token.Top)
                {
                    w.WriteNumber(TokenPiece.Text(server.Tokenizer, alternative.Id), alternative.Logprob);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("text_offset");
            foreach (LegacyToken token in logprobs)
            {
                w.WriteNumberValue(token.Offset);
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

/// <summary>One token of the completions API's legacy log-probs: its id, its log-prob and alternatives (null for a prompt's first), where its text starts.</summary>
internal readonly record struct LegacyToken(int Id, double? Logprob, IReadOnlyList<TokenLogprob>? Top, int Offset);
