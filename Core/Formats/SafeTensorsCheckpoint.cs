using System.Text.Json;
using QwenSharp.Errors;

namespace QwenSharp.Formats;

/// <summary>
/// The safetensors weights of a Hugging Face model folder: either one <c>model.safetensors</c>, or shards
/// listed by <c>model.safetensors.index.json</c> (<c>{"weight_map": {"tensor name": "shard file"}}</c>).
/// </summary>
public sealed class SafeTensorsCheckpoint : ITensorSource
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly SafeTensorsFile[] _files;
    private readonly Dictionary<string, SafeTensorsFile> _byTensor;

    private SafeTensorsCheckpoint(string description, SafeTensorsFile[] files, Dictionary<string, SafeTensorsFile> byTensor)
    {
        Description = description;
        _files = files;
        _byTensor = byTensor;
    }

    public string Description { get; }

    public IReadOnlyList<SafeTensorsFile> Files => _files;

    public IEnumerable<string> TensorNames => _byTensor.Keys;

    public static bool Exists(string directory) =>
        File.Exists(Path.Combine(directory, SingleFileName)) || File.Exists(Path.Combine(directory, IndexFileName));

    /// <summary>Opens the checkpoint in <paramref name="directory"/>; the single file wins when both forms are present.</summary>
    public static SafeTensorsCheckpoint Open(string directory)
    {
        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single))
        {
            SafeTensorsFile file = SafeTensorsFile.Open(single);
            var byTensor = file.Tensors.Keys.ToDictionary(name => name, _ => file, StringComparer.Ordinal);
            return new SafeTensorsCheckpoint(SingleFileName, [file], byTensor);
        }

        string index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index))
        {
            return OpenSharded(directory, index);
        }

        QwenThrow.FileNotFound($"{directory}: no {SingleFileName} or {IndexFileName} (is this a Hugging Face model folder?)", single);
        return null!;
    }

    private static SafeTensorsCheckpoint OpenSharded(string directory, string indexPath)
    {
        Dictionary<string, string> weightMap = ReadWeightMap(indexPath);
        var files = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        var byTensor = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (tensor, shard) in weightMap)
            {
                if (!files.TryGetValue(shard, out SafeTensorsFile? file))
                {
                    string shardPath = Path.Combine(directory, shard);
                    if (!File.Exists(shardPath))
                    {
                        QwenThrow.FileNotFound($"{IndexFileName}: shard '{shard}' (holding '{tensor}') not found in {directory}", shardPath);
                    }

                    file = SafeTensorsFile.Open(shardPath);
                    files.Add(shard, file);
                }

                if (!file.Tensors.ContainsKey(tensor))
                {
                    QwenThrow.InvalidData($"{IndexFileName}: tensor '{tensor}' is mapped to '{shard}', which does not contain it");
                }

                byTensor.Add(tensor, file);
            }
        }
        catch
        {
            foreach (SafeTensorsFile file in files.Values)
            {
                file.Dispose();
            }

            throw;
        }

        return new SafeTensorsCheckpoint($"{IndexFileName} ({files.Count} shards)", [.. files.Values], byTensor);
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out JsonElement map)
                || map.ValueKind != JsonValueKind.Object)
            {
                QwenThrow.InvalidData($"{IndexFileName}: no object field 'weight_map'");
                return null!;
            }

            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    QwenThrow.InvalidData($"{IndexFileName}: weight_map['{entry.Name}'] is a JSON {entry.Value.ValueKind}, expected a file name");
                }

                string shard = entry.Value.GetString()!;
                if (shard.Length == 0 || Path.GetFileName(shard) != shard)
                {
                    QwenThrow.InvalidData($"{IndexFileName}: weight_map['{entry.Name}'] = '{shard}' is not a file name in the model folder");
                }

                weightMap[entry.Name] = shard;
            }

            return weightMap;
        }
        catch (JsonException e)
        {
            QwenThrow.InvalidData($"{IndexFileName}: not valid JSON ({e.Message})");
            return null!;
        }
    }

    public bool TryGetView(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorView? view)
    {
        if (_byTensor.TryGetValue(name, out SafeTensorsFile? file))
        {
            return file.TryGetView(name, out view);
        }

        view = default;
        return false;
    }

    public void Dispose()
    {
        foreach (SafeTensorsFile file in _files)
        {
            file.Dispose();
        }
    }
}
