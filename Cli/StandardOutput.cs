using System.Text;
using Microsoft.Win32.SafeHandles;

namespace QwenSharp.Cli;

/// <summary>Standard output went away (the reader of a pipe closed it, as <c>| head</c> does): stop and exit quietly.</summary>
internal sealed class OutputClosedException : Exception
{
    public OutputClosedException(Exception inner)
        : base("standard output was closed", inner)
    {
    }

    public OutputClosedException()
    {
    }

    public OutputClosedException(string message)
        : base(message)
    {
    }

    public OutputClosedException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

/// <summary>
/// Standard output as UTF-8 that reports a closed pipe. The console stream .NET gives ignores EPIPE, so
/// <c>generate | head -c 20</c> would generate to the end writing nowhere; a FileStream over descriptor 1 sees the
/// error, and every write or flush that meets it throws <see cref="OutputClosedException"/>.
/// </summary>
internal sealed class StandardOutput : TextWriter
{
    private readonly StreamWriter _inner;

    public StandardOutput() => _inner = new StreamWriter(Open(), new UTF8Encoding(false)) { AutoFlush = false };

    /// <summary>
    /// Descriptor 1 as a FileStream where it is a pipe, socket or terminal; the console stream for a file (which a
    /// FileStream would write at its own offsets, over what a shell's >> appends to) and on Windows.
    /// </summary>
    private static Stream Open()
    {
        if (OperatingSystem.IsWindows())
        {
            return Console.OpenStandardOutput();
        }

        var descriptor = new FileStream(new SafeFileHandle(1, ownsHandle: false), FileAccess.Write, bufferSize: 0);
        if (!descriptor.CanSeek)
        {
            return descriptor;
        }

        descriptor.Dispose();
        return Console.OpenStandardOutput();
    }

    public override Encoding Encoding => _inner.Encoding;

    public override void Write(char value)
    {
        try
        {
            _inner.Write(value);
        }
        catch (IOException e)
        {
            throw new OutputClosedException(e);
        }
    }

    public override void Write(string? value)
    {
        try
        {
            _inner.Write(value);
        }
        catch (IOException e)
        {
            throw new OutputClosedException(e);
        }
    }

    public override void Write(char[] buffer, int index, int count)
    {
        try
        {
            _inner.Write(buffer, index, count);
        }
        catch (IOException e)
        {
            throw new OutputClosedException(e);
        }
    }

    public override void Flush()
    {
        try
        {
            _inner.Flush();
        }
        catch (IOException e)
        {
            throw new OutputClosedException(e);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            try
            {
                _inner.Dispose();
            }
            catch (IOException)
            {
                // Closed already: nothing more can be written.
            }
        }

        base.Dispose(disposing);
    }
}
