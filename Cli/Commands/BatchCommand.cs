using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using QwenSharp.Server;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp batch</c>: OpenAI's batch file run offline, as vLLM's <c>run_batch</c> runs it. Each line of the input is
/// a request (<c>custom_id</c>, <c>method</c> POST, <c>url</c> such as <c>/v1/chat/completions</c>, <c>body</c>); every
/// one goes to the server's own endpoint in this process (a server on a loopback port no one else is told of), many
/// at once so continuous batching shares the model, and each answer is a line of the output, in the input's order:
/// <c>{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}</c>. The input is checked whole
/// before the model loads (a bad line is named); a request the server refuses keeps its error response in the output,
/// and the exit code says some failed.
/// </summary>
internal sealed class BatchCommand : ICommand
{
    private static readonly HashSet<string> s_lineFields = ["custom_id", "method", "url", "body"];
    private static readonly JsonWriterOptions s_output = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public string Name => "batch";

    public string Summary => "run an OpenAI batch file (JSONL of /v1/chat/completions, /v1/completions, /v1/embeddings, ... requests) offline, answers in order, as vLLM's run_batch";

    public string Usage => "qwensharp batch [--model DIR] --input REQUESTS.jsonl [--out RESULTS.jsonl] [--max-concurrent N] [--context N] [--device D]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("input", "F", "the batch file: one JSON request a line, {\"custom_id\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {...}}"),
        new("out", "F", "write the results here, one line each in the input's order (a new file; default: standard output)"),
        ServeCommand.MaxConcurrentSpec,
        ServeCommand.ContextSpec,
        .. ServeCommand.RunningSpecs,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp batch --model ~/models/Qwen2.5-0.5B-Instruct --input requests.jsonl --out results.jsonl",
        "echo '{\"custom_id\": \"q1\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}}' > requests.jsonl",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string input = args.Value("input") ?? throw new UsageException("batch needs --input F: the batch file, one JSON request a line");
        string? output = args.Value("out");
        if (output is not null && (File.Exists(output) || Directory.Exists(output)))
        {
            throw new UsageException($"--out {output} already exists; batch does not overwrite anything (remove it or choose another name)");
        }

        List<BatchRequest> requests = Read(input);
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        string device = ModelLoading.CheckDevice(args);
        int slots = args.Int("max-concurrent", 1, 1024) ?? 8;
        using QwenModel model = ModelLoading.LoadEngineModel(directory, device, args, stderr, slots);
        ModelLoading.SetEmbeddingAttention(model.Model, args);
        int context = ServeCommand.ServedContext(args, model, device, slots);

        var options = new ServerOptions
        {
            Host = "127.0.0.1",
            Port = 0,
            MaxConcurrent = slots,
            MaxQueue = requests.Count,
            Context = context,
            RequestTimeout = TimeSpan.FromDays(1),
            StoredResponses = 0,
            PromptLookup = ModelLoading.GuessesFrom(args),
            ApiKey = Guid.NewGuid().ToString("N"),
        };
        QwenServer server = QwenServer.StartAsync(model, options).GetAwaiter().GetResult();
        try
        {
            using TextWriter results = output is null ? TextWriter.Null : new StreamWriter(new FileStream(output, FileMode.CreateNew), new UTF8Encoding(false));
            TextWriter writer = output is null ? stdout : results;
            int failed = RunAsync(server, options.ApiKey, requests, slots, writer, stderr).GetAwaiter().GetResult();
            writer.Flush();
            stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"qwensharp batch: {requests.Count - failed} of {requests.Count} requests answered{(failed > 0 ? $"; {failed} refused or failed (their error responses are in the results)" : "")}"));
            if (failed > 0)
            {
                BatchRequest first = requests.First(r => r.Status is not (>= 200 and < 300));
                throw new UsageException($"{input} line {first.Line} ('{first.CustomId}'): {first.Status}: {first.ErrorMessage}");
            }

            return CliApp.ExitOk;
        }
        finally
        {
            server.StopAsync().GetAwaiter().GetResult();
        }
    }

    /// <summary>
    /// Sends every request, twice as many at once as there are slots (so the queue stays fed), and writes each result as
    /// soon as those before it are written; the number that did not succeed.
    /// </summary>
    private static async Task<int> RunAsync(QwenServer server, string key, List<BatchRequest> requests, int slots, TextWriter writer, TextWriter stderr)
    {
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = Timeout.InfiniteTimeSpan };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var gate = new SemaphoreSlim(2 * slots);
        Task[] sent = [.. requests.Select(async request =>
        {
            await gate.WaitAsync().ConfigureAwait(false);
            try
            {
                using var content = new StringContent(request.Body, Encoding.UTF8, "application/json");
                using HttpResponseMessage response = await http.PostAsync(request.Url.TrimStart('/'), content).ConfigureAwait(false);
                request.Status = (int)response.StatusCode;
                request.Answer = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
            }
            finally
            {
                gate.Release();
            }
        })];

        int failed = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            await sent[i].ConfigureAwait(false);
            BatchRequest request = requests[i];
            failed += request.Status is >= 200 and < 300 ? 0 : 1;
            await writer.WriteLineAsync(ResultLine(request)).ConfigureAwait(false);
            if ((i + 1) % 100 == 0)
            {
                await writer.FlushAsync().ConfigureAwait(false);
                stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"qwensharp batch: {i + 1} of {requests.Count} written"));
            }
        }

        return failed;
    }

    /// <summary>OpenAI's batch output line: the answer's status and body (the error object of a refused request), keyed by custom_id.</summary>
    private static string ResultLine(BatchRequest request)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, s_output))
        {
            w.WriteStartObject();
            w.WriteString("id", $"batch_req_{Guid.NewGuid():N}");
            w.WriteString("custom_id", request.CustomId);
            w.WriteStartObject("response");
            w.WriteNumber("status_code", request.Status);
            w.WriteString("request_id", $"req_{Guid.NewGuid():N}");
            w.WritePropertyName("body");
            try
            {
                using JsonDocument body = JsonDocument.Parse(request.Answer);
                body.RootElement.WriteTo(w);
            }
            catch (JsonException)
            {
                w.WriteStringValue(request.Answer);
            }

            w.WriteEndObject();
            w.WriteNull("error");
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>The batch file's requests, each line checked: one JSON object with a unique custom_id, method POST, a path and a body.</summary>
    private static List<BatchRequest> Read(string path)
    {
        string[] lines = TextInput.ReadUtf8File(path).Split('\n');
        var requests = new List<BatchRequest>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i].TrimEnd('\r');
            if (line.Trim().Length == 0)
            {
                continue;
            }

            string where = $"{path} line {i + 1}";
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(line);
            }
            catch (JsonException e)
            {
                throw new UsageException($"{where}: not JSON ({e.Message})");
            }

            using (document)
            {
                JsonElement root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                {
                    throw new UsageException($"{where}: a request is a JSON object {{\"custom_id\", \"method\", \"url\", \"body\"}}, not {root.ValueKind}");
                }

                foreach (JsonProperty property in root.EnumerateObject())
                {
                    if (!s_lineFields.Contains(property.Name))
                    {
                        throw new UsageException($"{where}: unknown field '{property.Name}' (a request has custom_id, method, url and body)");
                    }
                }

                string customId = StringField(root, "custom_id", where);
                if (!ids.Add(customId))
                {
                    throw new UsageException($"{where}: custom_id '{customId}' is already another request's; each is unique");
                }

                if (StringField(root, "method", where) != "POST")
                {
                    throw new UsageException($"{where}: method is '{root.GetProperty("method").GetString()}'; a batch's requests are POST");
                }

                string url = StringField(root, "url", where);
                if (!url.StartsWith('/') || url.StartsWith("//", StringComparison.Ordinal))
                {
                    throw new UsageException($"{where}: url '{url}' is not a path such as /v1/chat/completions");
                }

                if (!root.TryGetProperty("body", out JsonElement body) || body.ValueKind != JsonValueKind.Object)
                {
                    throw new UsageException($"{where}: body is required: the request's JSON object");
                }

                if (body.TryGetProperty("stream", out JsonElement stream) && stream.ValueKind == JsonValueKind.True)
                {
                    throw new UsageException($"{where}: body.stream is true; a batch's answers are whole");
                }

                requests.Add(new BatchRequest(i + 1, customId, url, body.GetRawText()));
            }
        }

        return requests.Count > 0 ? requests : throw new UsageException($"{path}: no requests (one JSON request a line)");
    }

    private static string StringField(JsonElement root, string name, string where) =>
        root.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String && value.GetString()!.Length > 0
            ? value.GetString()!
            : throw new UsageException($"{where}: {name} is required, a non-empty string");

    /// <summary>One line of the batch file, and its answer once it has one.</summary>
    private sealed class BatchRequest(int line, string customId, string url, string body)
    {
        public int Line { get; } = line;

        public string CustomId { get; } = customId;

        public string Url { get; } = url;

        public string Body { get; } = body;

        public int Status { get; set; }

        public string Answer { get; set; } = "";

        /// <summary>The error object's message of a refused request, else its body.</summary>
        public string ErrorMessage
        {
            get
            {
                try
                {
                    using JsonDocument body = JsonDocument.Parse(Answer);
                    return body.RootElement.TryGetProperty("error", out JsonElement error) && error.ValueKind == JsonValueKind.Object
                        && error.TryGetProperty("message", out JsonElement message) ? message.GetString() ?? Answer : Answer;
                }
                catch (JsonException)
                {
                    return Answer;
                }
            }
        }
    }
}
