using System.Buffers.Binary;
using System.Runtime.InteropServices;
using QwenSharp.Errors;

namespace QwenSharp.Formats;

/// <summary>
/// Reads a <see cref="LogitsBaseFile"/> (ours or llama.cpp's): the header and tokens at once, checked against the file's
/// length before anything is allocated, then the rows a chunk at a time. Read as stored, little-endian, as on every machine
/// .NET runs these models on.
/// </summary>
public sealed class LogitsBaseReader : IDisposable
{
    /// <summary>Contexts and vocabularies above this are taken for a corrupt header.</summary>
    private const int MaxDimension = 1 << 24;

    private readonly FileStream _stream;
    private int _chunksRead;

    private LogitsBaseReader(FileStream stream, string path, int context, int vocabulary, int[] tokens)
    {
        _stream = stream;
        Path = path;
        Context = context;
        Vocabulary = vocabulary;
        Tokens = tokens;
    }

    public string Path { get; }

    /// <summary>Tokens a chunk.</summary>
    public int Context { get; }

    /// <summary>Values a row of logits had (the base model's vocabulary size).</summary>
    public int Vocabulary { get; }

    public int Chunks => Tokens.Length / Context;

    /// <summary>Every chunk's tokens, one after another (as the text was tokenized; a chunk's first may be replaced by BOS when read).</summary>
    public int[] Tokens { get; }

    /// <summary>Opens <paramref name="path"/>; anything but a whole, consistent file is an error naming it and what is wrong.</summary>
    public static LogitsBaseReader Open(string path)
    {
        if (!File.Exists(path))
        {
            QwenThrow.FileNotFound($"{path}: file not found", path);
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 20);
        try
        {
            Span<byte> header = stackalloc byte[LogitsBaseFile.HeaderBytes];
            if (stream.Length < LogitsBaseFile.HeaderBytes || stream.ReadAtLeast(header, header.Length, throwOnEndOfStream: false) < header.Length)
            {
                QwenThrow.InvalidData($"{path}: {stream.Length} bytes, shorter than the {LogitsBaseFile.HeaderBytes}-byte header of a file of log-probabilities (--kl-divergence-base)");
            }

            if (!header[..8].SequenceEqual(LogitsBaseFile.Magic))
            {
                QwenThrow.InvalidData($"{path}: does not start with '_logits_': not a file of log-probabilities written by --kl-divergence-base (ours or llama-perplexity's)");
            }

            int context = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
            int vocabulary = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
            int chunks = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
            if (context is < 3 or > MaxDimension)
            {
                QwenThrow.InvalidData($"{path}: its context is {context} tokens; a chunk holds 3 to {MaxDimension}");
            }

            if (vocabulary is < 1 or > MaxDimension)
            {
                QwenThrow.InvalidData($"{path}: its vocabulary is {vocabulary} tokens; expected 1 to {MaxDimension}");
            }

            if (chunks < 1)
            {
                QwenThrow.InvalidData($"{path}: it holds {chunks} chunks; expected at least 1");
            }

            long expected = LogitsBaseFile.FileBytes(context, vocabulary, chunks);
            if (stream.Length != expected)
            {
                QwenThrow.InvalidData($"{path}: {stream.Length} bytes, but {chunks} chunks of {context} tokens over a vocabulary of {vocabulary} take {expected}" +
                    (stream.Length < expected ? " (truncated?)" : ""));
            }

            int[] tokens = new int[checked(chunks * context)];
            stream.ReadExactly(MemoryMarshal.AsBytes(tokens.AsSpan()));

            for (int i = 0; i < tokens.Length; i++)
            {
                if ((uint)tokens[i] >= (uint)vocabulary)
                {
                    QwenThrow.InvalidData($"{path}: token {i} (chunk {(i / context) + 1}, position {i % context}) is id {tokens[i]}, outside its vocabulary of {vocabulary}");
                }
            }

            return new LogitsBaseReader(stream, path, context, vocabulary, tokens);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads the next chunk's rows into <paramref name="rows"/>: <see cref="LogitsBaseFile.ScoredPerChunk"/> rows of
    /// <see cref="LogitsBaseFile.RowValues"/> values, row i for position <see cref="LogitsBaseFile.FirstScored"/> + i.
    /// </summary>
    public void ReadChunk(Span<ushort> rows)
    {
        int values = LogitsBaseFile.ScoredPerChunk(Context) * LogitsBaseFile.RowValues(Vocabulary);
        if (rows.Length != values)
        {
            throw new ArgumentException($"a chunk's rows are {values} values, not {rows.Length}", nameof(rows));
        }

        if (_chunksRead == Chunks)
        {
            throw new InvalidOperationException($"{Path}: all {Chunks} chunks were read");
        }

        _stream.ReadExactly(MemoryMarshal.AsBytes(rows));

        _chunksRead++;
    }

    public void Dispose() => _stream.Dispose();
}
