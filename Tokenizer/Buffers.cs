namespace QwenSharp.Tokenization;

/// <summary>Reusable buffers that grow (to at least double) when a longer text needs them, and are never shrunk.</summary>
internal static class Buffers
{
    /// <summary><paramref name="buffer"/>, replaced by a larger array first when it holds fewer than <paramref name="length"/> items.</summary>
    public static T[] Grow<T>(ref T[] buffer, int length)
    {
        if (buffer.Length < length)
        {
            buffer = new T[Math.Max(length, buffer.Length * 2)];
        }

        return buffer;
    }
}
