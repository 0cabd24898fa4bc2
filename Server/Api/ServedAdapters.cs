using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Lora;
using QwenSharp.Qwen2;

namespace QwenSharp.Server.Api;

/// <summary>
/// The server's LoRA adapters (<c>serve --lora</c>), which each request may weigh for itself, as llama-server and vLLM let:
/// <list type="bullet">
/// <item>a request's <c>lora</c>, <c>[{"id": 0, "scale": 0.5}, ...]</c> (llama-server's field): those adapters at those
/// scales, the others off;</item>
/// <item>else a <c>model</c> that names an adapter (vLLM's way, listed by <c>/v1/models</c>): that adapter alone, at its
/// <c>--lora-scale</c> (1 for one loaded at 0);</item>
/// <item>else the server's scales: each adapter's <c>--lora-scale</c> until <c>POST /lora-adapters</c> sets others.</item>
/// </list>
/// A request's scales hold for all its choices from start to end; requests with different scales share steps.
/// </summary>
internal sealed class ServedAdapters
{
    private static readonly HashSet<string> s_entryFields = ["id", "scale"];

    private readonly Qwen2Model _model;
    private readonly LoraAdapter[] _adapters;
    private readonly string[] _names;
    private readonly string _modelName;
    private float[] _scales;

    public ServedAdapters(Qwen2Model model, IReadOnlyList<string>? names, string modelName)
    {
        _model = model;
        _modelName = modelName;
        _adapters = [.. model.Adapters];
        _names = names is { } given && given.Count == _adapters.Length ? [.. given] : [.. _adapters.Select(a => LoraAdapterOptions.NameOf(a.Path))];
        _scales = [.. _adapters.Select(a => a.Scale)];
    }

    /// <summary>The scales requests run with unless they say (a copy is never changed in place: each set replaces it).</summary>
    public float[] Scales => Volatile.Read(ref _scales);

    /// <summary>
    /// The adapters <c>/v1/models</c> lists beside the model: each name once (a name two adapters share picks neither, nor
    /// does the model's own name).
    /// </summary>
    public IEnumerable<string> SelectableNames => _names.Where(name => SelectableIndex(name) is not null);

    /// <summary>
    /// The scales a request runs the adapters at (see the class), null for a model without adapters; a <c>lora</c> without
    /// adapters, an unknown id, an id given twice or a scale that is not a finite number is a 400 naming the entry.
    /// </summary>
    public float[]? ForRequest(RequestFields request, string? model)
    {
        if (request.Get("lora") is JsonElement lora)
        {
            if (_adapters.Length > 0)
            {
                return Read(lora, "lora");
            }

            if (lora.ValueKind != JsonValueKind.Array || lora.GetArrayLength() > 0)
            {
                throw ApiException.BadField("lora", "'lora': this server has no LoRA adapters (serve --lora PATH loads them)");
            }

            return null;
        }

        if (_adapters.Length == 0)
        {
            return null;
        }

        if (model is not null && SelectableIndex(model) is int picked)
        {
            return _model.AdapterScalesAlone(picked);
        }

        return Scales;
    }

    /// <summary><c>GET /lora-adapters</c> (llama-server's): each adapter's id, name, path and the scale requests run it at unless they say.</summary>
    public Task ListAsync(HttpContext http) => ResponseJson.WriteAsync(http, 200, w =>
    {
        float[] scales = Scales;
        w.WriteStartArray();
        for (int i = 0; i < _adapters.Length; i++)
        {
            w.WriteStartObject();
            w.WriteNumber("id", i);
            w.WriteString("name", _names[i]);
            w.WriteString("path", _adapters[i].Path);
            w.WriteNumber("scale", scales[i]);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    });

    /// <summary>
    /// <c>POST /lora-adapters</c> (llama-server's): <c>[{"id": 0, "scale": 0.5}, ...]</c> sets the scales of requests that do
    /// not give their own, from the next request on (running ones keep theirs); adapters not listed are off.
    /// </summary>
    public async Task SetAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        if (_adapters.Length == 0)
        {
            throw ApiException.BadField("body", "this server has no LoRA adapters (serve --lora PATH loads them)");
        }

        Volatile.Write(ref _scales, Read(body.RootElement, "body"));
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteBoolean("success", true);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private int? SelectableIndex(string name)
    {
        int found = Array.IndexOf(_names, name);
        return found >= 0 && Array.LastIndexOf(_names, name) == found && name != _modelName ? found : null;
    }

    /// <summary>A list of <c>{"id", "scale"}</c> as one scale per adapter, 0 for those not listed.</summary>
    private float[] Read(JsonElement list, string path)
    {
        if (list.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField(path, $"'{path}' must be a list of {{\"id\": N, \"scale\": S}}, not {RequestFields.Kind(list)}");
        }

        var scales = new float[_adapters.Length];
        var given = new bool[_adapters.Length];
        int index = 0;
        foreach (JsonElement entry in list.EnumerateArray())
        {
            string at = $"{path}[{index++}]";
            RequestFields fields = RequestFields.Of(entry, at, s_entryFields);
            int id = fields.Int("id", 0, _adapters.Length - 1)
                ?? throw ApiException.BadField(fields.PathOf("id"), $"'{fields.PathOf("id")}' is missing: the adapter's id (GET /lora-adapters lists them)");
            double scale = fields.Double("scale", -1000, 1000)
                ?? throw ApiException.BadField(fields.PathOf("scale"), $"'{fields.PathOf("scale")}' is missing: how strongly to apply adapter {id} (1: as trained, 0: off)");
            if (given[id])
            {
                throw ApiException.BadField(fields.PathOf("id"), $"'{fields.PathOf("id")}': adapter {id} is listed twice");
            }

            given[id] = true;
            scales[id] = (float)scale;
        }

        return scales;
    }
}
