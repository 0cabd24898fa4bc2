using System.Globalization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp rerank</c>: documents ranked by their relevance to a query, most relevant first, as <c>serve</c>'s
/// <c>/rerank</c> ranks them: by a cross-encoder reranker (a <c>*ForSequenceClassification</c> folder with one label),
/// each query and document read together (the tokenizer's pair, or --rerank-template), the score head's logit and its
/// sigmoid; or by an embedding model, the similarity of the query's and each document's embeddings.
/// </summary>
internal sealed class RerankCommand : ICommand
{
    /// <summary>The template for a reranker trained on a prompt; serve takes it too.</summary>
    public static readonly OptionSpec TemplateSpec = new("rerank-template", "T",
        "how a reranker trained on a prompt reads a query and a document: a template with {query} and {document}, given inline or as a file (llama.cpp's tokenizer.chat_template.rerank); default: the pair as the tokenizer encodes it");

    public string Name => "rerank";

    public string Summary => "documents ranked by relevance to a query by a cross-encoder reranker (a one-label *ForSequenceClassification) or an embedding model";

    public string Usage => "qwensharp rerank --model DIR --query Q (DOCUMENT... | --document D... | --file F) [--top-n N] [--json]";

    public int MaxPositionals => int.MaxValue;

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("query", "Q", "the text the documents are ranked against"),
        new("document", "D", "a document to rank (repeat for several; positional DOCUMENTs come first)", Repeatable: true),
        new("file", "F", "a UTF-8 text file: each non-empty line is one document", Repeatable: true),
        new("top-n", "N", "print only the N most relevant (default: all)"),
        TemplateSpec,
        new("json", null, "print JSON: {\"results\":[{\"index\",\"relevance_score\",\"logit\",\"tokens\"}]}, the most relevant first"),
        .. ModelLoading.RunSpecs,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp rerank --model ~/models/reranker-qwen2 --query \"What is a panda?\" --document \"The giant panda is a bear endemic to China.\" --document \"Paris is the capital of France.\"",
        "qwensharp rerank --model ~/models/reranker-qwen2 --query \"llama\" --file passages.txt --top-n 5 --json",
    ];

    /// <summary>--rerank-template: the template inline or read from a file, checked for its two places; null when not given.</summary>
    public static string? TemplateOf(Arguments args)
    {
        if (args.Value("rerank-template") is not string value)
        {
            return null;
        }

        string template = File.Exists(value) ? TextInput.ReadUtf8File(value) : value;
        try
        {
            RerankPrompt.Check(template, File.Exists(value) ? $"--rerank-template {value}" : "--rerank-template");
        }
        catch (ArgumentException e)
        {
            throw new UsageException(File.Exists(value) || value.Contains('{', StringComparison.Ordinal) ? e.Message
                : $"--rerank-template '{value}': no such file, and as a template it has no {RerankPrompt.Query} or {RerankPrompt.Document}");
        }

        return template;
    }

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string query = args.Value("query") ?? throw new UsageException("rerank needs --query Q: the text the documents are ranked against");
        List<string> documents = [.. TextInput.TextsInOrder(args, "rerank", "document", []).Select(t => t.Value)];
        if (documents.Count == 0)
        {
            throw new UsageException("rerank needs documents: DOCUMENT, --document D or --file F");
        }

        int? topN = args.Int("top-n", 1, int.MaxValue);
        string? template = TemplateOf(args);
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        string device = ModelLoading.CheckDevice(args);
        using QwenModel model = ModelLoading.LoadEngineModel(directory, device, args, stderr);
        model.Model.RequireRanker("rerank", directory);
        bool embeddings = model.Model.IsEmbeddingModel;
        if (embeddings && template is not null)
        {
            throw new UsageException($"--rerank-template is for a cross-encoder reranker, which reads the query and a document as one text; {directory} is an embedding model, which embeds each alone");
        }

        // A reranker's score is its logit through the head's function; an embedding model's, the two embeddings' similarity.
        string scoreFunction = embeddings ? Qwen2.EmbeddingSimilarities.NameOf(model.Model.EmbeddingConfig.Similarity) : model.Model.RequireReranker("rerank", directory).ScoreFunction;
        IReadOnlyList<DocumentRelevance> ranked = model.RerankAsync(query, documents, template).GetAwaiter().GetResult();
        IEnumerable<DocumentRelevance> shown = ranked.Take(topN ?? ranked.Count);
        CultureInfo culture = CultureInfo.InvariantCulture;
        if (args.Flag("json"))
        {
            stdout.WriteLine($"{{\"score_function\":\"{scoreFunction}\",\"results\":[{string.Join(',', shown.Select(r =>
                string.Create(culture, $"{{\"index\":{r.Index},\"relevance_score\":{r.Score:R},\"logit\":{r.Logit:R},\"tokens\":{r.TokenCount}}}")))}]}}");
            return 0;
        }

        stdout.WriteLine(embeddings
            ? $"# {documents.Count} document(s) ranked by {model.Model.Config.Architecture} embeddings: {scoreFunction} similarity to the query's, document index, text"
            : $"# {documents.Count} document(s) ranked by {model.Model.Config.Architecture}: relevance ({scoreFunction} of the logit), logit, document index, text");
        foreach (DocumentRelevance r in shown)
        {
            string text = documents[r.Index].ReplaceLineEndings(" ");
            text = text.Length > 100 ? text[..100] + "..." : text;
            stdout.WriteLine(embeddings
                ? string.Create(culture, $"{r.Score,9:F6}  {r.Index,4}  {text}")
                : string.Create(culture, $"{r.Score:F6}  {r.Logit,10:F4}  {r.Index,4}  {text}"));
        }

        return 0;
    }
}
