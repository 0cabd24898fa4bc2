namespace QwenSharp.Generation;

/// <summary>
/// How a text's embedding is made from the last hidden states of its tokens (sentence-transformers' <c>Pooling</c>
/// modes, llama.cpp's <c>--pooling</c>).
/// </summary>
public enum EmbeddingPooling
{
    /// <summary>The last token's hidden state: the only one that has seen the whole text in a causal model (gte-Qwen2, jina-code-embeddings).</summary>
    Last,

    /// <summary>The mean of every token's hidden state.</summary>
    Mean,

    /// <summary>The first token's hidden state (BERT's [CLS]; in a causal model it has seen nothing else).</summary>
    Cls,
}

/// <summary>The poolings' names as llama.cpp's <c>--pooling</c> spells them.</summary>
public static class EmbeddingPoolings
{
    public static IReadOnlyList<(string Name, EmbeddingPooling Pooling)> All { get; } =
        [("last", EmbeddingPooling.Last), ("mean", EmbeddingPooling.Mean), ("cls", EmbeddingPooling.Cls)];

    public static string NameOf(EmbeddingPooling pooling) => All.First(p => p.Pooling == pooling).Name;

    public static EmbeddingPooling? Parse(string name) => All.FirstOrDefault(p => p.Name == name) is { Name: not null } found ? found.Pooling : null;
}
