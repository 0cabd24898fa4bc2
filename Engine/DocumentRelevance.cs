namespace QwenSharp;

/// <summary>
/// How relevant a reranker or an embedding model found one document to the query (<see cref="QwenModel.RerankAsync"/>).
/// </summary>
/// <param name="Index">The document's place in the list given.</param>
/// <param name="Score">The relevance score: the logit through a sigmoid, as transformers' pipeline and vLLM give a
/// one-label classifier's score (the logit itself where config.json's problem_type is regression); an embedding model's
/// similarity of the two embeddings.</param>
/// <param name="Logit">The score head's output itself (llama-server's relevance_score, TEI's raw score); an embedding
/// model's similarity again (it has no logit).</param>
/// <param name="TokenCount">Tokens the query and document took together (an embedding model's: the query's and the document's).</param>
public sealed record DocumentRelevance(int Index, float Score, float Logit, int TokenCount)
{
    /// <summary>
    /// <paramref name="relevance"/> the most relevant first: by score, then by logit (a sigmoid rounds logits above about
    /// 17 to a score of 1), ties in the documents' order.
    /// </summary>
    public static IReadOnlyList<DocumentRelevance> Rank(IEnumerable<DocumentRelevance> relevance) =>
        [.. relevance.OrderByDescending(r => r.Score).ThenByDescending(r => r.Logit).ThenBy(r => r.Index)];
}
