using System.Text;
using System.Text.Json;

namespace QwenSharp.Tests.Support;

/// <summary>Writes small safetensors files (valid or deliberately broken) for the loader's tests.</summary>
internal static class SafeTensorsWriter
{
    public sealed record Entry(string Name, string DType, long[] Shape, byte[] Data);

    /// <summary>A well-formed file: header with consecutive offsets, then the data.</summary>
    public static void Write(string path, params Entry[] entries)
    {
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (Entry e in entries)
        {
            header[e.Name] = new Dictionary<string, object> { ["dtype"] = e.DType, ["shape"] = e.Shape, ["data_offsets"] = new[] { offset, offset + e.Data.Length } };
            offset += e.Data.Length;
        }

        WriteRaw(path, JsonSerializer.Serialize(header), [.. entries.SelectMany(e => e.Data)]);
    }

    /// <summary>Any header text and data, exactly as given.</summary>
    public static void WriteRaw(string path, string headerJson, byte[] data)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        using var file = File.Create(path);
        file.Write(BitConverter.GetBytes((ulong)header.Length));
        file.Write(header);
        file.Write(data);
    }

    public static byte[] F32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return bytes;
    }
}
