using System.Globalization;
using QwenSharp.Errors;

namespace QwenSharp.Formats.Gguf;

/// <summary>Reads GGUF's key-value metadata, and typed look-ups that name the key and the type found.</summary>
public static class GgufMetadata
{
    internal static Dictionary<string, object> Read(ref GgufReader reader, long count, string fileName, List<GgufRawValue> raw)
    {
        var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
        for (long i = 0; i < count; i++)
        {
            string key = reader.String($"metadata key {i}");
            var type = (GgufValueType)reader.UInt32($"the type of '{key}'");
            long start = reader.Position;
            object value = type == GgufValueType.Array ? ReadArray(ref reader, key, fileName) : ReadScalar(ref reader, type, key, fileName);
            raw.Add(new GgufRawValue(key, type, start, reader.Position - start));
            if (!metadata.TryAdd(key, value))
            {
                QwenThrow.InvalidData($"{fileName}: metadata key '{key}' is given twice");
            }
        }

        return metadata;
    }

    private static object ReadScalar(ref GgufReader reader, GgufValueType type, string key, string fileName)
    {
        string what = $"the value of '{key}'";
        return type switch
        {
            GgufValueType.UInt8 => (long)reader.Take(1, what)[0],
            GgufValueType.Int8 => (long)(sbyte)reader.Take(1, what)[0],
            GgufValueType.UInt16 => (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(reader.Take(2, what)),
            GgufValueType.Int16 => (long)System.Buffers.Binary.BinaryPrimitives.ReadInt16LittleEndian(reader.Take(2, what)),
            GgufValueType.UInt32 => (long)reader.UInt32(what),
            GgufValueType.Int32 => (long)(int)reader.UInt32(what),
            GgufValueType.UInt64 => reader.UInt64(what) is ulong u && u <= long.MaxValue ? (long)u
                : Fail<object>($"{fileName}: '{key}' is an unsigned integer beyond 2^63"),
            GgufValueType.Int64 => (long)reader.UInt64(what),
            GgufValueType.Float32 => (double)BitConverter.Int32BitsToSingle((int)reader.UInt32(what)),
            GgufValueType.Float64 => BitConverter.Int64BitsToDouble((long)reader.UInt64(what)),
            GgufValueType.Bool => reader.Take(1, what)[0] switch
            {
                0 => false,
                1 => true,
                byte b => Fail<object>($"{fileName}: '{key}' is a bool of value {b}, expected 0 or 1"),
            },
            GgufValueType.String => reader.String(what),
            _ => Fail<object>($"{fileName}: '{key}' has value type {(int)type}, which GGUF does not define"),
        };
    }

    private static object ReadArray(ref GgufReader reader, string key, string fileName)
    {
        var type = (GgufValueType)reader.UInt32($"the element type of '{key}'");
        int minimum = type switch
        {
            GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
            GgufValueType.UInt16 or GgufValueType.Int16 => 2,
            GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
            GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 or GgufValueType.String => 8,
            GgufValueType.Array => Fail<int>($"{fileName}: '{key}' is an array of arrays, which QwenSharp does not read"),
            _ => Fail<int>($"{fileName}: '{key}' is an array of value type {(int)type}, which GGUF does not define"),
        };
        long count = reader.Count($"the length of '{key}'", minimum);
        switch (type)
        {
            case GgufValueType.String:
                var strings = new string[count];
                for (long i = 0; i < count; i++)
                {
                    strings[i] = reader.String($"item {i} of '{key}'");
                }

                return strings;
            case GgufValueType.Float32 or GgufValueType.Float64:
                var doubles = new double[count];
                for (long i = 0; i < count; i++)
                {
                    doubles[i] = (double)ReadScalar(ref reader, type, key, fileName);
                }

                return doubles;
            case GgufValueType.Bool:
                var bools = new bool[count];
                for (long i = 0; i < count; i++)
                {
                    bools[i] = (bool)ReadScalar(ref reader, type, key, fileName);
                }

                return bools;
            default:
                var integers = new long[count];
                for (long i = 0; i < count; i++)
                {
                    integers[i] = ReadScalar(ref reader, type, key, fileName) is long value ? value
                        : Fail<long>($"{fileName}: item {i} of '{key}' does not fit a 64-bit signed integer");
                }

                return integers;
        }
    }

    /// <summary>"the string \"x\"", "the integer 3", ... for messages.</summary>
    public static string Describe(object? value) => value switch
    {
        null => "missing",
        string s => $"the string \"{(s.Length > 40 ? s[..40] + "..." : s)}\"",
        long l => $"the integer {l.ToString(CultureInfo.InvariantCulture)}",
        double d => $"the number {d.ToString(CultureInfo.InvariantCulture)}",
        bool b => b ? "true" : "false",
        Array a => $"an array of {a.Length}",
        _ => value.GetType().Name,
    };

    /// <summary>An integer value; null when absent; another type is an error naming the key.</summary>
    public static long? Integer(IReadOnlyDictionary<string, object> metadata, string key, string fileName) =>
        !metadata.TryGetValue(key, out object? value) ? null
        : value is long l ? l : Fail<long>($"{fileName}: '{key}' is {Describe(value)}, expected an integer");

    public static double? Number(IReadOnlyDictionary<string, object> metadata, string key, string fileName) =>
        !metadata.TryGetValue(key, out object? value) ? null
        : value switch { double d => d, long l => l, _ => Fail<double>($"{fileName}: '{key}' is {Describe(value)}, expected a number") };

    public static string? Text(IReadOnlyDictionary<string, object> metadata, string key, string fileName) =>
        !metadata.TryGetValue(key, out object? value) ? null
        : value as string ?? Fail<string>($"{fileName}: '{key}' is {Describe(value)}, expected a string");

    public static bool? Flag(IReadOnlyDictionary<string, object> metadata, string key, string fileName) =>
        !metadata.TryGetValue(key, out object? value) ? null
        : value is bool b ? b : Fail<bool>($"{fileName}: '{key}' is {Describe(value)}, expected true or false");

    public static T[]? ArrayOf<T>(IReadOnlyDictionary<string, object> metadata, string key, string fileName, string expected) =>
        !metadata.TryGetValue(key, out object? value) ? null
        : value as T[] ?? Fail<T[]>($"{fileName}: '{key}' is {Describe(value)}, expected {expected}");

    private static T Fail<T>(string message)
    {
        QwenThrow.InvalidData(message);
        return default!;
    }
}
