using System.Text.Json;
using QwenSharp.Errors;

namespace QwenSharp.Formats;

/// <summary>One entry of a safetensors header; offsets are relative to the start of the data area.</summary>
public readonly record struct SafeTensorInfo(string Name, string DTypeName, long[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}

/// <summary>
/// Parses and validates the JSON header of a safetensors file:
/// <c>{"name": {"dtype": "BF16", "shape": [896, 896], "data_offsets": [begin, end]}, "__metadata__": {...}}</c>.
/// Everything the loader later trusts is checked here: well-formed JSON, every field present with the right
/// type, offsets inside the data area, sizes equal to shape times element size, and no two tensors overlapping.
/// </summary>
internal static class SafeTensorsHeader
{
    /// <summary>The format's own limit on header size (100 MB); a larger value means a corrupt or foreign file.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public static (Dictionary<string, SafeTensorInfo> Tensors, Dictionary<string, string> Metadata) Parse(
        ReadOnlyMemory<byte> json, long dataLength, string fileName)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            QwenThrow.InvalidData($"{fileName}: the safetensors header is not valid JSON ({e.Message})");
            throw;
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                QwenThrow.InvalidData($"{fileName}: the safetensors header is a JSON {document.RootElement.ValueKind}, expected an object of tensors");
            }

            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    ReadMetadata(property.Value, metadata, fileName);
                    continue;
                }

                SafeTensorInfo info = ReadTensor(property.Name, property.Value, dataLength, fileName);
                if (!tensors.TryAdd(info.Name, info))
                {
                    QwenThrow.InvalidData($"{fileName}: tensor '{info.Name}' appears twice in the header");
                }
            }

            CheckNoOverlap(tensors.Values, fileName);
            return (tensors, metadata);
        }
    }

    private static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, string fileName)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            QwenThrow.InvalidData($"{fileName}: '__metadata__' is a JSON {value.ValueKind}, expected an object of strings");
        }

        foreach (JsonProperty entry in value.EnumerateObject())
        {
            metadata[entry.Name] = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()! : entry.Value.GetRawText();
        }
    }

    private static SafeTensorInfo ReadTensor(string name, JsonElement value, long dataLength, string fileName)
    {
        string where = $"{fileName}: tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
        {
            QwenThrow.InvalidData($"{where} is a JSON {value.ValueKind}, expected an object with dtype, shape and data_offsets");
        }

        if (!value.TryGetProperty("dtype", out JsonElement dtype) || dtype.ValueKind != JsonValueKind.String)
        {
            QwenThrow.InvalidData($"{where} has no string field 'dtype'");
        }

        if (!value.TryGetProperty("shape", out JsonElement shapeJson) || shapeJson.ValueKind != JsonValueKind.Array)
        {
            QwenThrow.InvalidData($"{where} has no array field 'shape'");
        }

        if (!value.TryGetProperty("data_offsets", out JsonElement offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2)
        {
            QwenThrow.InvalidData($"{where} has no field 'data_offsets' of two integers");
        }

        var shape = new long[shapeJson.GetArrayLength()];
        int axis = 0;
        foreach (JsonElement dim in shapeJson.EnumerateArray())
        {
            long size = dim.ValueKind == JsonValueKind.Number && dim.TryGetInt64(out long parsed) ? parsed : -1;
            if (size < 0)
            {
                QwenThrow.InvalidData($"{where}: shape {shapeJson.GetRawText()} must hold non-negative integers");
            }

            shape[axis++] = size;
        }

        long begin = ReadOffset(offsets[0], where);
        long end = ReadOffset(offsets[1], where);
        if (begin > end || end > dataLength)
        {
            QwenThrow.InvalidData(
                $"{where}: data_offsets [{begin}, {end}] lie outside the data area of {dataLength} bytes (file truncated or corrupt)");
        }

        string dtypeName = dtype.GetString()!;
        int? elementSize = DTypes.SafeTensorsElementSize(dtypeName);
        if (elementSize is int size1)
        {
            long expected = ElementCount(shape, where) * size1;
            if (end - begin != expected)
            {
                QwenThrow.InvalidData(
                    $"{where}: data_offsets [{begin}, {end}] cover {end - begin} bytes, but shape {QwenThrow.Shape(shape)} of {dtypeName} needs {expected}");
            }
        }

        return new SafeTensorInfo(name, dtypeName, shape, begin, end);
    }

    private static long ReadOffset(JsonElement element, string where)
    {
        long offset = element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out long parsed) ? parsed : -1;
        if (offset < 0)
        {
            QwenThrow.InvalidData($"{where}: data_offsets must be two non-negative integers, found {element.GetRawText()}");
        }

        return offset;
    }

    private static long ElementCount(long[] shape, string where)
    {
        long count = 1;
        foreach (long dim in shape)
        {
            try
            {
                count = checked(count * dim);
            }
            catch (OverflowException)
            {
                QwenThrow.InvalidData($"{where}: shape {QwenThrow.Shape(shape)} is too large");
            }
        }

        return count;
    }

    private static void CheckNoOverlap(IEnumerable<SafeTensorInfo> tensors, string fileName)
    {
        SafeTensorInfo[] sorted = [.. tensors.Where(t => t.End > t.Begin).OrderBy(t => t.Begin)];
        for (int i = 1; i < sorted.Length; i++)
        {
            if (sorted[i].Begin < sorted[i - 1].End)
            {
                QwenThrow.InvalidData(
                    $"{fileName}: tensors '{sorted[i - 1].Name}' [{sorted[i - 1].Begin}, {sorted[i - 1].End}] and '{sorted[i].Name}' [{sorted[i].Begin}, {sorted[i].End}] overlap");
            }
        }
    }
}
