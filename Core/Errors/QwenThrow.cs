using System.Diagnostics.CodeAnalysis;

namespace QwenSharp.Errors;

/// <summary>
/// The one place exceptions are built, so call sites stay one line and every message names the file,
/// tensor, field or token, the value found and what was expected.
/// </summary>
internal static class QwenThrow
{
    /// <summary>A file whose content is wrong: corrupt, truncated, or not what it claims to be.</summary>
    [DoesNotReturn]
    public static void InvalidData(string message) => throw new InvalidDataException(message);

    /// <summary>Valid input that QwenSharp does not implement (a dtype, a model type, a config feature).</summary>
    [DoesNotReturn]
    public static void NotSupported(string message) => throw new NotSupportedException(message);

    [DoesNotReturn]
    public static void FileNotFound(string message, string path) => throw new FileNotFoundException(message, path);

    [DoesNotReturn]
    public static void DirectoryNotFound(string message) => throw new DirectoryNotFoundException(message);

    [DoesNotReturn]
    public static void Argument(string message, string paramName) => throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void ArgumentOutOfRange(string paramName, object? actual, string message) =>
        throw new ArgumentOutOfRangeException(paramName, actual, message);

    /// <summary>"[896, 64]", the way shapes are printed in every message.</summary>
    public static string Shape(ReadOnlySpan<long> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";
}
