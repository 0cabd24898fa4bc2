using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Sampling;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /completion</c> (and <c>/completions</c>): llama-server's own completion API, not OpenAI's, which scripts and
/// front ends written for llama.cpp call; and <c>POST /infill</c>, the same with a fill-in-the-middle prompt
/// (<c>input_prefix</c>, <c>input_suffix</c>, <c>input_extra</c> files, <c>prompt</c> after the prefix: what llama.vim and
/// llama.vscode send a code model; <see cref="FillInTheMiddle"/>), whose answer also ends at the FIM tokens, at a line
/// indented less than <c>n_indent</c>, and at a newline past <c>t_max_predict_ms</c>. Its fields (<c>prompt</c>, <c>n_predict</c>, <c>temperature</c>,
/// <c>top_k</c>, <c>top_p</c>, <c>min_p</c>, <c>repeat_penalty</c>, <c>seed</c>, <c>stop</c>, <c>n_probs</c> (with
/// <c>post_sampling_probs</c>, of the distribution each token was drawn from: <see cref="TokenSampler.LastDraw"/>),
/// <c>logit_bias</c> as pairs, <c>grammar</c>, <c>json_schema</c>, <c>stream</c>, <c>return_tokens</c>, ...) and its
/// answer (<c>content</c>, <c>stop_type</c>, <c>stopping_word</c>, <c>tokens_predicted</c>, <c>timings</c>, ...), as
/// llama-server's README gives them. A stream sends one object per token and a last one with <c>stop: true</c>, and no
/// <c>[DONE]</c>. Sampling fields left out take generation_config.json's values, as everywhere here (llama-server's own
/// defaults are 0.8, 40, 0.95, 0.05); typical_p, top_n_sigma, XTC, mirostat, dynamic temperature and DRY are llama.cpp's.
/// </summary>
internal static class LlamaCompletionEndpoint
{
    /// <summary>Fields taken at the value that leaves them off (what llama-server's clients send by default), refused at any other.</summary>

    private static readonly HashSet<string> s_fields =
    [
        "prompt", "n_predict", "max_tokens", "stream", "stop", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
        "presence_penalty", "frequency_penalty", "seed", "logit_bias", "ignore_eos", "n_probs", "return_tokens", "cache_prompt", "id_slot", "n_keep",
        "n_cmpl", "lora", "model", "timings_per_token", "min_keep", "post_sampling_probs", "samplers",
        "n_indent", "t_max_predict_ms", "t_max_prompt_ms",
        "response_fields", .. SamplingFields.LlamaSamplerNames, .. ResponseFormat.Fields,
    ];

    private static readonly HashSet<string> s_infillFields = [.. s_fields, "input_prefix", "input_suffix", "input_extra"];

    private static readonly HashSet<string> s_fileFields = ["filename", "text", "time"];

    /// <summary>
    /// llama-server's sampler names. They apply in QwenSharp's order whatever the list's, each where its fields turn it on;
    /// "infill" (llama.cpp's code-completion sampler, <see cref="InfillFilter"/>) only where the list names it, as there.
    /// </summary>
    private static readonly HashSet<string> s_samplers = ["penalties", "dry", "top_k", "typ_p", "typical_p", "top_p", "min_p", "xtc", "temperature", "infill", "top_n_sigma"];

    public static Task CompletionAsync(HttpContext http, ServerState server) => HandleAsync(http, server, infill: false);

    public static Task InfillAsync(HttpContext http, ServerState server) => HandleAsync(http, server, infill: true);

    private static async Task HandleAsync(HttpContext http, ServerState server, bool infill)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", infill ? s_infillFields : s_fields);
        Settings settings = ReadSettings(request, server);
        List<int[]> prompts;
        List<string> texts;
        bool many = false;
        IReadOnlyList<int> endTokens = [];
        if (infill)
        {
            FillInTheMiddle form = FillInTheMiddle.Of(server.Tokenizer) ?? throw new ApiException(400, QwenModel.FillInTheMiddleMissing, "input_prefix", "fill_in_the_middle_unsupported");
            string prompt = request.String("prompt") ?? "";
            prompts = [form.Encode(request.String("input_prefix") ?? "", request.String("input_suffix") ?? "", prompt, FilesOf(request),
                (FillInTheMiddle.LlamaServerBatch, server.Context, settings.MaxTokens ?? 0))];
            texts = [prompt];
            endTokens = form.EndTokens;
        }
        else
        {
            (prompts, texts) = PromptInput.Read(request, server, "prompt");
            // A list of prompts (not one prompt's token ids) is answered with a list, as llama-server does.
            many = request.Get("prompt") is { ValueKind: JsonValueKind.Array } list && list.GetArrayLength() > 0 && list[0].ValueKind != JsonValueKind.Number;
        }

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        GenerationJob job = Jobs.Create(server, prompts, infill ? "input_prefix" : "prompt", settings.Samples, settings.Sampling, settings.MaxTokens, settings.Stops,
            settings.Probabilities, primeText: true, deadline.Token, settings.IgnoreEos, constraint: settings.Constraint, adapterScales: settings.AdapterScales,
            endTokens: endTokens, codeStops: settings.CodeStops, logprobsAfterSampling: settings.AfterSampling);
        var response = new Response(http, server, job, settings, texts, many);
        if (settings.MaxTokens != 0)
        {
            Jobs.Submit(server, job);
        }

        await response.RunAsync(deadline).ConfigureAwait(false);
    }

    /// <summary>
    /// <c>input_extra</c>: files as <c>{"filename", "text"}</c> (llama.vim adds the <c>time</c> it read them, unused), a
    /// missing name "tmp" as llama-server has it.
    /// </summary>
    private static List<InfillFile> FilesOf(RequestFields request)
    {
        var files = new List<InfillFile>();
        if (request.Get("input_extra") is not JsonElement extra)
        {
            return files;
        }

        if (extra.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField("input_extra", $"'input_extra' must be a list of {{\"filename\", \"text\"}} objects, not {RequestFields.Kind(extra)}");
        }

        int i = 0;
        foreach (JsonElement item in extra.EnumerateArray())
        {
            RequestFields file = RequestFields.Of(item, $"input_extra[{i++}]", s_fileFields);
            file.Get("time");
            files.Add(new InfillFile(file.String("filename") ?? "tmp", file.String("text") ?? ""));
        }

        return files;
    }

    /// <summary>What a request asks for, in the terms the scheduler takes.</summary>
    private sealed record Settings(SamplingOverrides Sampling, int? MaxTokens, int Samples, IReadOnlyList<string> Stops, int? Probabilities, bool AfterSampling, bool IgnoreEos,
        bool Stream, bool ReturnTokens, bool TimingsPerToken, Func<ITokenConstraint>? Constraint, float[]? AdapterScales, string Model,
        CodeCompletionStops? CodeStops, string[]? ResponseFields);

    private static Settings ReadSettings(RequestFields request, ServerState server)
    {
        if (request.Get("samplers") is JsonElement samplers
            && (samplers.ValueKind != JsonValueKind.Array || samplers.EnumerateArray().FirstOrDefault(n => n.ValueKind != JsonValueKind.String || !s_samplers.Contains(n.GetString()!)) is { ValueKind: not JsonValueKind.Undefined }))
        {
            throw ApiException.BadField("samplers", $"'samplers' must be a list of llama-server's sampler names ({string.Join(", ", s_samplers)}), not {RequestFields.Show(samplers)}");
        }

        bool asksInfill = request.Get("samplers") is JsonElement named && named.EnumerateArray().Any(n => n.GetString() == "infill");
        // 0 asks for nothing: llama.vim sends it to have its files read ahead, which here is left for the answer that needs them.
        int? predict = request.Int("n_predict", -1, int.MaxValue) ?? request.Int("max_tokens", -1, int.MaxValue);
        int indent = request.Int("n_indent", 0, int.MaxValue) ?? 0;
        int? predictMs = request.Int("t_max_predict_ms", 0, int.MaxValue) is int ms and > 0 ? ms : null;
        // A time limit on reading the prompt has no counterpart: a prompt is read whole.
        request.Int("t_max_prompt_ms", 0, int.MaxValue);
        string[]? responseFields = request.Get("response_fields") is JsonElement wanted
            ? wanted.ValueKind == JsonValueKind.Array && wanted.EnumerateArray().All(f => f.ValueKind == JsonValueKind.String)
                ? [.. wanted.EnumerateArray().Select(f => f.GetString()!)]
                : throw ApiException.BadField("response_fields", $"'response_fields' must be a list of field paths, not {RequestFields.Show(wanted)}")
            : null;

        double? temperature = request.Double("temperature", -100, 100);
        double? repeatPenalty = request.Double("repeat_penalty", 0, 100, minExclusive: true);
        if (repeatPenalty is double penalty && penalty != 1 && request.Int("repeat_last_n", -1, int.MaxValue) is int lastN and not -1)
        {
            throw ApiException.BadField("repeat_last_n", $"'repeat_last_n' {lastN}: the repetition penalty here counts the whole context (transformers' repetition_penalty); give -1");
        }

        // Without a penalty it counts nothing; still a number in range.
        request.Int("repeat_last_n", -1, int.MaxValue);
        int? topK = request.Int("top_k", int.MinValue, int.MaxValue);
        long? seed = request.Long("seed");
        // What llama-server takes and QwenSharp does its own way: slots are chosen by the scheduler, a prompt's cached
        // prefix is always reused, a sequence stops at the end of its context rather than shifting it, and the samplers
        // keep every token that a filter would leave none of.
        request.Int("id_slot", -1, int.MaxValue);
        request.Bool("cache_prompt");
        request.Int("n_keep", -1, int.MaxValue);
        request.Int("min_keep", 0, int.MaxValue);
        string model = request.String("model", 256) ?? server.ModelName;
        bool ignoreEos = request.Bool("ignore_eos") ?? false;
        Func<ITokenConstraint>? constraint = ResponseFormat.Read(request, server)?.Constraint;
        if (constraint is not null && ignoreEos)
        {
            throw ApiException.BadField("ignore_eos", "'ignore_eos' with a grammar or schema: the answer ends when it is whole");
        }

        return new Settings(
            new SamplingOverrides
            {
                // llama-server decodes greedily at a temperature of 0 or below.
                Greedy = temperature <= 0,
                Temperature = temperature > 0 ? temperature : null,
                TopP = request.Double("top_p", 0, 1, minExclusive: true),
                // 0 or below switches top-k off in llama-server.
                TopK = topK <= 0 ? 0 : topK,
                MinP = request.Double("min_p", 0, 1),
                RepetitionPenalty = repeatPenalty,
                PresencePenalty = request.Double("presence_penalty", -2, 2),
                FrequencyPenalty = request.Double("frequency_penalty", -2, 2),
                // -1 is a random seed.
                Seed = seed is long given && given >= 0 ? unchecked((ulong)given) : null,
                LogitBias = LogitBiasOf(request, server),
            }.WithLlamaSamplers(request) with { Infill = asksInfill },
            predict is null or -1 ? null : predict,
            request.Int("n_cmpl", 1, 128) ?? 1,
            request.StringOrList("stop", 16, 4096),
            request.Int("n_probs", 0, 20) is int probs and > 0 ? probs : null,
            request.Bool("post_sampling_probs") ?? false,
            ignoreEos,
            request.Bool("stream") ?? false,
            request.Bool("return_tokens") ?? false,
            request.Bool("timings_per_token") ?? false,
            constraint,
            server.Adapters.ForRequest(request, model),
            model,
            indent > 0 || predictMs is not null ? new CodeCompletionStops(indent, predictMs is int limit ? TimeSpan.FromMilliseconds(limit) : null) : null,
            responseFields);
    }

    /// <summary>
    /// llama-server's <c>logit_bias</c>: pairs <c>[token, bias]</c>, the token an id or a text (each of its tokens biased),
    /// the bias a number or <c>false</c> (never: −100 here, the floor every bias keeps to, where llama-server has −∞);
    /// or OpenAI's object from ids to biases.
    /// </summary>
    private static Dictionary<int, float>? LogitBiasOf(RequestFields request, ServerState server)
    {
        if (request.Get("logit_bias") is not JsonElement bias)
        {
            return null;
        }

        var biases = new Dictionary<int, float>();
        int vocabulary = server.Model.Config.VocabSize;
        void Add(string path, int token, JsonElement value, string given)
        {
            if (token < 0 || token >= vocabulary)
            {
                throw ApiException.BadField(path, $"'{path}': {given} is not a token id of this model (0..{vocabulary - 1})");
            }

            biases[token] = value.ValueKind == JsonValueKind.False ? -LogitBias.Limit
                : value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double number) && Math.Abs(number) <= LogitBias.Limit ? (float)number
                : throw ApiException.BadField(path, $"'{path}' must be a bias from -{LogitBias.Limit} to {LogitBias.Limit} or false, not {RequestFields.Show(value)}");
        }

        if (bias.ValueKind == JsonValueKind.Object)
        {
            foreach (JsonProperty entry in bias.EnumerateObject())
            {
                string path = $"logit_bias.{entry.Name}";
                Add(path, int.TryParse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id) ? id : -1, entry.Value, $"'{entry.Name}'");
            }
        }
        else if (bias.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (JsonElement pair in bias.EnumerateArray())
            {
                string path = $"logit_bias[{i++}]";
                if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2)
                {
                    throw ApiException.BadField(path, $"'{path}' must be a pair [token, bias], not {RequestFields.Show(pair)}");
                }

                if (pair[0].ValueKind == JsonValueKind.String)
                {
                    foreach (int token in server.Tokenizer.Encode(pair[0].GetString()!))
                    {
                        Add(path, token, pair[1], token.ToString(CultureInfo.InvariantCulture));
                    }
                }
                else
                {
                    Add(path, pair[0].ValueKind == JsonValueKind.Number && pair[0].TryGetInt32(out int id) ? id : -1, pair[1], RequestFields.Show(pair[0]));
                }
            }
        }
        else
        {
            throw ApiException.BadField("logit_bias", $"'logit_bias' must be a list of [token, bias] pairs or an object from token ids to biases, not {RequestFields.Kind(bias)}");
        }

        return biases.Count == 0 ? null : biases;
    }

    private sealed class Response(HttpContext http, ServerState server, GenerationJob job, Settings settings, List<string> prompts, bool many)
    {
        private readonly ChoiceState[] _choices = [.. Enumerable.Range(0, job.Choices).Select(_ => new ChoiceState())];
        private readonly List<int>[] _tokens = [.. Enumerable.Range(0, job.Choices).Select(_ => new List<int>())];
        private readonly long _started = Stopwatch.GetTimestamp();
        private long _firstToken;

        public async Task RunAsync(RequestDeadline deadline)
        {
            if (settings.Stream && job.MaxTokens != 0)
            {
                await Jobs.StreamAsync(http, server, job, deadline, StreamEventAsync, done: false).ConfigureAwait(false);
                return;
            }

            JobFinishedEvent? usage = null;
            if (job.MaxTokens == 0)
            {
                // Nothing asked for: the results at once, nothing generated.
                usage = new JobFinishedEvent(job.Prompts.Sum(p => p.Length), 0, 0);
                Array.ForEach(_choices, c => c.Reason = StopReason.Length);
            }

            while (usage is null && await Jobs.NextAsync(job, deadline).ConfigureAwait(false) is JobEvent next)
            {
                usage = Fold(next);
            }

            await ResponseJson.WriteAsync(http, 200, w =>
            {
                if (many || job.Choices > 1)
                {
                    w.WriteStartArray();
                }

                for (int i = 0; i < job.Choices; i++)
                {
                    WriteResult(w, i, _choices[i].Text.ToString(), _tokens[i], _choices[i].Logprobs, usage!);
                }

                if (many || job.Choices > 1)
                {
                    w.WriteEndArray();
                }
            }).ConfigureAwait(false);
        }

        /// <summary>Takes an event into the choices' state (<see cref="Jobs.Fold"/>), with its token ids and when the first came; the job's usage once it ends.</summary>
        private JobFinishedEvent? Fold(JobEvent next)
        {
            if (next is TokenEvent token)
            {
                _firstToken = _firstToken == 0 ? Stopwatch.GetTimestamp() : _firstToken;
                if (!job.EosTokenIds.Contains(token.Token))
                {
                    _tokens[token.Choice].Add(token.Token);
                }
            }

            return Jobs.Fold(_choices, next);
        }

        /// <summary>Tokens of the prompt a choice answers.</summary>
        private int PromptLength(int choice) => job.Prompts[choice / job.SamplesPerPrompt].Length;

        private async Task StreamEventAsync(JobEvent next)
        {
            JobFinishedEvent? usage = Fold(next);
            switch (next)
            {
                case TokenEvent token when !job.EosTokenIds.Contains(token.Token):
                    await ResponseJson.WriteEventAsync(http, w =>
                    {
                        w.WriteStartObject();
                        w.WriteNumber("index", token.Choice);
                        w.WriteString("content", token.Text);
                        w.WriteStartArray("tokens");
                        w.WriteNumberValue(token.Token);
                        w.WriteEndArray();
                        w.WriteBoolean("stop", false);
                        w.WriteNumber("id_slot", -1);
                        w.WriteNumber("tokens_predicted", _tokens[token.Choice].Count);
                        w.WriteNumber("tokens_evaluated", PromptLength(token.Choice));
                        if (token.Logprobs is not null)
                        {
                            TokenPiece.WriteLogprobs(w, "completion_probabilities", [token.Logprobs], server.Tokenizer, ids: true, probabilities: settings.AfterSampling);
                        }

                        if (settings.TimingsPerToken)
                        {
                            WriteTimings(w, PromptLength(token.Choice), _tokens[token.Choice].Count);
                        }

                        w.WriteEndObject();
                    }).ConfigureAwait(false);
                    break;
                case JobFinishedEvent:
                    // Each choice's last object, with the whole answer's figures, once every choice has ended.
                    for (int i = 0; i < job.Choices; i++)
                    {
                        int choice = i;
                        string rest = _choices[choice].Text.ToString(_choices[choice].Sent, _choices[choice].Text.Length - _choices[choice].Sent);
                        await ResponseJson.WriteEventAsync(http, w => WriteResult(w, choice, rest, [], [], usage!)).ConfigureAwait(false);
                    }

                    break;
            }

            if (next is TokenEvent sent)
            {
                _choices[sent.Choice].Sent = _choices[sent.Choice].Text.Length;
            }
        }

        /// <summary>
        /// A choice's result: llama-server's fields, with <paramref name="content"/> all of it or (streamed) what is left;
        /// with <c>response_fields</c>, only the fields listed, each under its path ("timings/prompt_n"), as llama-server
        /// gives them (a path that names nothing is left out).
        /// </summary>
        private void WriteResult(Utf8JsonWriter w, int choice, string content, List<int> tokens, List<TokenLogprobs> probabilities, JobFinishedEvent usage)
        {
            if (settings.ResponseFields is not { } paths)
            {
                WriteWholeResult(w, choice, content, tokens, probabilities, usage);
                return;
            }

            var buffer = new System.Buffers.ArrayBufferWriter<byte>();
            using (var whole = new Utf8JsonWriter(buffer))
            {
                WriteWholeResult(whole, choice, content, tokens, probabilities, usage);
            }

            using JsonDocument result = JsonDocument.Parse(buffer.WrittenMemory);
            w.WriteStartObject();
            foreach (string path in paths)
            {
                JsonElement at = result.RootElement;
                if (path.Split('/').All(part => at.ValueKind == JsonValueKind.Object && at.TryGetProperty(part, out at)))
                {
                    w.WritePropertyName(path);
                    at.WriteTo(w);
                }
            }

            w.WriteEndObject();
        }

        private void WriteWholeResult(Utf8JsonWriter w, int choice, string content, List<int> tokens, List<TokenLogprobs> probabilities, JobFinishedEvent usage)
        {
            ChoiceState state = _choices[choice];
            int prompt = PromptLength(choice);
            w.WriteStartObject();
            w.WriteNumber("index", choice);
            w.WriteString("content", content);
            w.WriteStartArray("tokens");
            if (settings.ReturnTokens)
            {
                foreach (int token in tokens)
                {
                    w.WriteNumberValue(token);
                }
            }

            w.WriteEndArray();
            w.WriteNumber("id_slot", -1);
            w.WriteBoolean("stop", true);
            w.WriteString("model", settings.Model);
            w.WriteNumber("tokens_predicted", _tokens[choice].Count);
            w.WriteNumber("tokens_evaluated", prompt);
            w.WriteStartObject("generation_settings");
            w.WriteNumber("n_ctx", server.Context);
            w.WriteNumber("n_predict", settings.MaxTokens ?? -1);
            w.WriteString("model", settings.Model);
            w.WriteNumber("seed", job.Seed);
            w.WriteNumber("n_probs", settings.Probabilities ?? 0);
            w.WriteBoolean("post_sampling_probs", settings.AfterSampling);
            w.WriteBoolean("ignore_eos", settings.IgnoreEos);
            w.WriteBoolean("stream", settings.Stream);
            w.WriteStartArray("stop");
            foreach (string stop in settings.Stops)
            {
                w.WriteStringValue(stop);
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteString("prompt", prompts[choice / job.SamplesPerPrompt]);
            w.WriteBoolean("has_new_line", state.Text.ToString().Contains('\n', StringComparison.Ordinal));
            // The context ran out before n_predict (or with none).
            w.WriteBoolean("truncated", state.Reason == StopReason.Length && _tokens[choice].Count < (settings.MaxTokens ?? int.MaxValue));
            // A code completion stop (n_indent, t_max_predict_ms) is llama-server's "limit", as is the token limit.
            w.WriteString("stop_type", state.Reason switch { StopReason.Eos => "eos", StopReason.Stop when state.StopWord is not null => "word", _ => "limit" });
            w.WriteString("stopping_word", state.StopWord ?? "");
            w.WriteNumber("tokens_cached", usage.CachedPromptTokens);
            if (probabilities.Count > 0)
            {
                TokenPiece.WriteLogprobs(w, "completion_probabilities", probabilities, server.Tokenizer, ids: true, probabilities: settings.AfterSampling);
            }

            WriteTimings(w, prompt, _tokens[choice].Count);
            w.WriteEndObject();
        }

        /// <summary>
        /// llama-server's <c>timings</c>, as this request saw them: the prompt from its arrival to the first token (waiting for
        /// a slot included), the answer from then on.
        /// </summary>
        private void WriteTimings(Utf8JsonWriter w, int promptTokens, int predicted)
        {
            long now = Stopwatch.GetTimestamp();
            double promptMs = Stopwatch.GetElapsedTime(_started, _firstToken == 0 ? now : _firstToken).TotalMilliseconds;
            double predictedMs = _firstToken == 0 ? 0 : Stopwatch.GetElapsedTime(_firstToken, now).TotalMilliseconds;
            w.WriteStartObject("timings");
            w.WriteNumber("prompt_n", promptTokens);
            w.WriteNumber("prompt_ms", promptMs);
            w.WriteNumber("prompt_per_token_ms", promptMs / Math.Max(1, promptTokens));
            w.WriteNumber("prompt_per_second", promptMs > 0 ? promptTokens * 1000.0 / promptMs : 0);
            w.WriteNumber("predicted_n", predicted);
            w.WriteNumber("predicted_ms", predictedMs);
            w.WriteNumber("predicted_per_token_ms", predictedMs / Math.Max(1, predicted));
            w.WriteNumber("predicted_per_second", predictedMs > 0 ? predicted * 1000.0 / predictedMs : 0);
            w.WriteEndObject();
        }
    }
}
