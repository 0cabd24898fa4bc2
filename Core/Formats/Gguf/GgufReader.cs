using System.Buffers.Binary;
using System.Text;
using QwenSharp.Errors;

namespace QwenSharp.Formats.Gguf;

/// <summary>
/// A bounds-checked cursor over a GGUF header: every read names what it was reading and where, and a length
/// that reaches past the file's end is an error before anything is allocated for it.
/// </summary>
internal unsafe ref struct GgufReader
{
    private readonly ReadOnlySpan<byte> _bytes;
    private readonly string _file;

    public GgufReader(ReadOnlySpan<byte> bytes, string file)
    {
        _bytes = bytes;
        _file = file;
    }

    public long Position { get; private set; }

    public readonly long Remaining => _bytes.Length - Position;

    public uint UInt32(string what) => BinaryPrimitives.ReadUInt32LittleEndian(Take(4, what));

    public ulong UInt64(string what) => BinaryPrimitives.ReadUInt64LittleEndian(Take(8, what));

    /// <summary>A count of items each at least <paramref name="minimumItemBytes"/> long, checked against what is left of the file.</summary>
    public long Count(string what, int minimumItemBytes)
    {
        ulong count = UInt64(what);
        if (count > (ulong)(Remaining / Math.Max(minimumItemBytes, 1)))
        {
            QwenThrow.InvalidData($"{_file}: {what} is {count}, more than the {Remaining} bytes left in the file could hold (corrupt or truncated)");
        }

        return (long)count;
    }

    public string String(string what)
    {
        long length = Count($"the length of {what}", 1);
        ReadOnlySpan<byte> bytes = Take(length, what);
        try
        {
            return s_utf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            QwenThrow.InvalidData($"{_file}: {what} at byte {Position - length} is not valid UTF-8");
            return "";
        }
    }

    public ReadOnlySpan<byte> Take(long length, string what)
    {
        if (length < 0 || length > Remaining)
        {
            QwenThrow.InvalidData($"{_file}: the file ends at byte {_bytes.Length} while reading {what} at byte {Position} (truncated?)");
        }

        ReadOnlySpan<byte> span = _bytes.Slice((int)Position, (int)length);
        Position += length;
        return span;
    }

    public void Skip(long length, string what) => Take(length, what);

    private static readonly UTF8Encoding s_utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
