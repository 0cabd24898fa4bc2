using System.Text;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// The tokens a cross-encoder reranker reads for one query and one document. Without a template: the pair as transformers'
/// <c>tokenizer(query, document)</c> encodes it (vLLM's rerank; Qwen2's tokenizer adds nothing between the two). With a
/// template (llama.cpp's <c>tokenizer.chat_template.rerank</c> convention): its <c>{query}</c> and <c>{document}</c>
/// filled in one pass, so a query that itself holds "{document}" stays as written, and the whole encoded with special
/// tokens parsed and none added, as llama-server encodes it. A reranker trained on a prompt (mxbai-rerank-v2 converted to
/// a sequence classifier) needs its prompt as a template.
/// </summary>
public static class RerankPrompt
{
    /// <summary>Where a template puts the query.</summary>
    public const string Query = "{query}";

    /// <summary>Where a template puts the document.</summary>
    public const string Document = "{document}";

    /// <summary>Throws naming what is missing unless <paramref name="template"/> holds both <see cref="Query"/> and <see cref="Document"/>.</summary>
    public static void Check(string template, string where)
    {
        ArgumentNullException.ThrowIfNull(template);
        foreach (string placeholder in (string[])[Query, Document])
        {
            if (!template.Contains(placeholder, StringComparison.Ordinal))
            {
                throw new ArgumentException($"{where}: the rerank template has no {placeholder}: it needs {Query} and {Document} where the query and the document go");
            }
        }
    }

    /// <summary>The ids of <paramref name="query"/> and <paramref name="document"/> (see the class summary).</summary>
    public static int[] Ids(Tokenizer tokenizer, string query, string document, string? template = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return template is null ? tokenizer.EncodePair(query, document) : tokenizer.Encode(Fill(template, query, document));
    }

    /// <summary><paramref name="template"/> with each <see cref="Query"/> and <see cref="Document"/> replaced, left to right in one pass.</summary>
    public static string Fill(string template, string query, string document)
    {
        ArgumentNullException.ThrowIfNull(template);
        var text = new StringBuilder(template.Length + query.Length + document.Length);
        int at = 0;
        while (at < template.Length)
        {
            int next = template.IndexOf('{', at);
            if (next < 0)
            {
                break;
            }

            text.Append(template, at, next - at);
            ReadOnlySpan<char> rest = template.AsSpan(next);
            (string? value, int length) = rest.StartsWith(Query, StringComparison.Ordinal) ? (query, Query.Length)
                : rest.StartsWith(Document, StringComparison.Ordinal) ? (document, Document.Length)
                : ((string?)null, 1);
            text.Append(value ?? "{");
            at = next + length;
        }

        return text.Append(template, at, template.Length - at).ToString();
    }
}
