using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp embed</c>: text embeddings, pooled and normalized as the model ships them (sentence-transformers'
/// files, a GGUF file's pooling_type; else the last token, normalized) unless told otherwise; llama.cpp's
/// <c>llama-embedding</c>. With several texts, the text output ends with their cosine similarities.
/// </summary>
internal sealed class EmbedCommand : ICommand
{
    /// <summary>Texts embedded and written at a time.</summary>
    private const int Group = 256;

    /// <summary>Up to this many texts, the text output ends with their cosine similarities.</summary>
    private const int MaxSimilarities = 32;

    public string Name => "embed";

    public string Summary => "text embeddings (last-token or mean pooling, normalized), with their cosine similarities";

    public string Usage => "qwensharp embed [--model DIR] (TEXT | --text TEXT... | --file F) [--pooling last|mean|cls] [--no-normalize] [--dimensions N] [--attention causal|non-causal] [--prompt-name NAME] [--truncate] [--json]";

    public int MaxPositionals => 1;

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("text", "TEXT", "a text to embed (repeat for several)", Repeatable: true),
        new("file", "F", "a UTF-8 text file: each non-empty line is one text", Repeatable: true),
        new("pooling", "last|mean|cls", "how a text's hidden states become one vector (default: the model's sentence-transformers Pooling or GGUF pooling_type, else last)"),
        new("no-normalize", null, "keep each vector's length (default: scaled to unit length, unless the model ships without a Normalize module)"),
        new("dimensions", "N", "keep the first N values, before normalizing (for Matryoshka models)"),
        ModelLoading.Attention,
        new("truncate", null, "cut a text too long for the model to its first tokens (sentence-transformers' max_seq_length, at most the context) instead of refusing it"),
        new("prompt-name", "NAME", "put the model's named prompt before each text (config_sentence_transformers.json's, such as gte-Qwen2's query; default: its default_prompt_name)"),
        new("json", null, "print JSON: {\"embeddings\":[[...]],\"dimensions\",\"pooling\",\"normalized\",\"attention\",\"tokens\":[...]}"),
        .. ModelLoading.RunSpecs,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp embed --model ~/models/gte-Qwen2-1.5B-instruct --text \"how do I bake bread?\" --text \"Knead the dough for ten minutes.\"",
        "qwensharp embed --model model.gguf --file passages.txt --json > vectors.json",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        // The texts in the order given: TEXT, then each --text and each --file's lines where they stand.
        List<string> texts = [.. TextInput.TextsInOrder(args, "embed").Select(t => t.Value)];
        if (texts.Count == 0)
        {
            throw new UsageException("embed needs a text: TEXT, --text TEXT or --file F");
        }

        EmbeddingPooling? pooling = args.Value("pooling") is string name
            ? EmbeddingPoolings.Parse(name) ?? throw new UsageException($"--pooling {name}: expected last, mean or cls")
            : null;
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);

        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            int[][] ids = EmbeddingInputs.Encode(tokenizer, model, texts, args.Value("prompt-name"), prompt: null, pooling, args.Flag("truncate"));
            int? dimensions = args.Int("dimensions", 1, model.EmbeddingDimensions);
            ModelLoading.SetEmbeddingAttention(model, args);
            using var embedder = new Embedder(model);
            bool json = args.Flag("json");
            bool? normalize = args.Flag("no-normalize") ? false : null;
            var kept = new List<float[]>();
            EmbeddingRun? last = null;
            try
            {
                // Texts go a group at a time and each group's vectors are written as it ends, so a file of many lines
                // streams out and the vectors need not all be held.
                for (int first = 0; first < ids.Length; first += Group)
                {
                    last?.Dispose();
                    last = embedder.Start(ids[first..Math.Min(ids.Length, first + Group)], pooling, normalize, dimensions);
                    while (!last.Step())
                    {
                    }

                    if (first == 0)
                    {
                        stdout.Write(json ? "{\"embeddings\":[" : Header(last, texts.Count) + "\n");
                    }

                    for (int i = 0; i < last.Results.Length; i++)
                    {
                        string values = string.Join(json ? ',' : ' ', last.Results[i].Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
                        stdout.Write(json ? $"{(first + i == 0 ? "" : ",")}[{values}]" : $"{first + i}: {values}\n");
                        if (texts.Count <= MaxSimilarities)
                        {
                            kept.Add(last.Results[i]);
                        }
                    }
                }

                if (json)
                {
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"],\"dimensions\":{last!.Results[0].Length},\"pooling\":\"{EmbeddingPoolings.NameOf(last.Pooling)}\",\"normalized\":{(last.Normalized ? "true" : "false")},\"attention\":\"{(last.Bidirectional ? "non-causal" : "causal")}\",\"tokens\":[{string.Join(',', ids.Select(t => t.Length))}]}}"));
                }
                else if (kept.Count > 1)
                {
                    WriteSimilarities(stdout, kept);
                }
            }
            finally
            {
                last?.Dispose();
            }
        }

        return 0;
    }

    private static string Header(EmbeddingRun run, int texts) =>
        $"# {texts} embedding(s) of {run.Results[0].Length} values, {EmbeddingPoolings.NameOf(run.Pooling)} pooling{(run.Normalized ? ", normalized" : "")}{(run.Bidirectional ? ", non-causal attention" : "")}";

    /// <summary>The cosine similarity of every pair, a row per text.</summary>
    private static void WriteSimilarities(TextWriter output, List<float[]> vectors)
    {
        output.WriteLine("# cosine similarity");
        foreach (float[] vector in vectors)
        {
            output.WriteLine(string.Join(' ', vectors.Select(other => System.Numerics.Tensors.TensorPrimitives.CosineSimilarity(vector, other).ToString("F4", CultureInfo.InvariantCulture))));
        }
    }
}
