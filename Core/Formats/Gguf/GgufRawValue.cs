namespace QwenSharp.Formats.Gguf;

/// <summary>
/// A metadata value as the file holds it: its key, its value type, and where its bytes lie in the file (after the type),
/// so a file written again (<c>quantize</c> of a GGUF file) carries every key exactly, whatever its type.
/// </summary>
public sealed record GgufRawValue(string Key, GgufValueType Type, long Offset, long Length);
