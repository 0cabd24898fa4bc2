namespace QwenSharp;

/// <summary>Embeddings of several texts, in their order, and the tokens they took together.</summary>
public sealed record TextEmbeddings(IReadOnlyList<float[]> Vectors, long TokenCount);
