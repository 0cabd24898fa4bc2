using System.Runtime.InteropServices;
using QwenSharp.Errors;

namespace QwenSharp.Formats;

/// <summary>
/// Writes a <see cref="LogitsBaseFile"/>: the header and tokens when created, then each chunk's rows in order. The rows
/// stream into a file beside the target (<c>.partial</c>), moved into place only once every row is written
/// (<see cref="Complete"/>) and removed otherwise, as <see cref="Gguf.GgufWriter.WriteNew"/> writes a GGUF file: a run
/// stopped halfway, even killed, leaves nothing under the target's name, and an existing file is never overwritten.
/// </summary>
public sealed class LogitsBaseWriter : IDisposable
{
    private readonly FileStream _stream;
    private readonly long _rows;
    private long _written;
    private readonly string _partial;
    private bool _complete;

    private LogitsBaseWriter(FileStream stream, string path, int vocabulary, long rows)
    {
        _stream = stream;
        Path = path;
        _partial = stream.Name;
        Vocabulary = vocabulary;
        _rows = rows;
    }

    public string Path { get; }

    public int Vocabulary { get; }

    /// <summary>
    /// Creates <paramref name="path"/> for <paramref name="tokens"/> (whole chunks of <paramref name="context"/>) over a
    /// vocabulary of <paramref name="vocabulary"/>; an existing file is an error naming it.
    /// </summary>
    public static LogitsBaseWriter Create(string path, int context, int vocabulary, ReadOnlySpan<int> tokens)
    {
        if (context < 3 || tokens.Length == 0 || tokens.Length % context != 0)
        {
            throw new ArgumentException($"{tokens.Length} tokens are not whole chunks of {context} (3 or more)", nameof(tokens));
        }

        if (File.Exists(path) || Directory.Exists(path))
        {
            QwenThrow.Argument($"{path} already exists; the base's log-probabilities go into a new file (remove it or choose another name)", nameof(path));
        }

        var stream = new FileStream(path + ".partial", FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 20);
        int chunks = tokens.Length / context;
        stream.Write(LogitsBaseFile.Magic);
        stream.Write(MemoryMarshal.AsBytes<int>([context, vocabulary, chunks]));
        stream.Write(MemoryMarshal.AsBytes(tokens));
        return new LogitsBaseWriter(stream, path, vocabulary, (long)chunks * LogitsBaseFile.ScoredPerChunk(context));
    }

    /// <summary>Appends the next scored position's row (<see cref="LogitsBaseFile.Encode"/>).</summary>
    public void WriteRow(ReadOnlySpan<ushort> row)
    {
        if (row.Length != LogitsBaseFile.RowValues(Vocabulary))
        {
            throw new ArgumentException($"a row is {LogitsBaseFile.RowValues(Vocabulary)} values, not {row.Length}", nameof(row));
        }

        if (_written == _rows)
        {
            throw new InvalidOperationException($"{Path}: all {_rows} rows were written");
        }

        _stream.Write(MemoryMarshal.AsBytes(row));
        _written++;
    }

    /// <summary>Flushes the file once its last row is written and moves it to <see cref="Path"/> (never over a file).</summary>
    public void Complete()
    {
        if (_written != _rows)
        {
            throw new InvalidOperationException($"{Path}: {_written} of {_rows} rows written");
        }

        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(_partial, Path, overwrite: false);
        _complete = true;
    }

    public void Dispose()
    {
        _stream.Dispose();
        if (!_complete)
        {
            File.Delete(_partial);
        }
    }
}
