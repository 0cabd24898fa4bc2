using System.Globalization;
using System.Text.Json;
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
    public string Name => "embed";

    public string Summary => "text embeddings (last-token or mean pooling, normalized), with their cosine similarities";

    public string Usage => "qwensharp embed [--model DIR] (TEXT | --text TEXT... | --file F) [--pooling last|mean|cls] [--no-normalize] [--dimensions N] [--attention causal|non-causal] [--json]";

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
        new("json", null, "print JSON: {\"embeddings\":[[...]],\"dimensions\",\"pooling\",\"normalized\",\"attention\",\"tokens\":[...]}"),
        ModelLoading.Threads,
        ModelLoading.Quantize,
        ModelLoading.Device,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp embed --model ~/models/gte-Qwen2-1.5B-instruct --text \"how do I bake bread?\" --text \"Knead the dough for ten minutes.\"",
        "qwensharp embed --model model.gguf --file passages.txt --json > vectors.json",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        // The texts in the order given: TEXT, then each --text and each --file's lines where they stand.
        List<string> texts = [.. args.Positionals];
        foreach ((string option, string value) in args.InOrder)
        {
            if (option == "text")
            {
                texts.Add(value);
            }
            else if (option == "file")
            {
                string[] lines = [.. TextInput.ReadUtf8File(value).Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0)];
                texts.AddRange(lines.Length > 0 ? lines : throw new UsageException($"--file {value}: the file has no non-empty line to embed"));
            }
        }

        if (texts.Count == 0)
        {
            throw new UsageException("embed needs a text: TEXT, --text TEXT or --file F");
        }

        if (texts.FindIndex(t => t.Length == 0) is int empty and >= 0)
        {
            throw new UsageException($"text {empty} is empty: there is nothing to embed");
        }

        EmbeddingPooling? pooling = args.Value("pooling") is string name
            ? EmbeddingPoolings.Parse(name) ?? throw new UsageException($"--pooling {name}: expected last, mean or cls")
            : null;
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        int[][] ids = [.. texts.Select(t => tokenizer.Encode(t, addSpecialTokens: true))];

        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args);
        using (backend)
        using (model)
        {
            int? dimensions = args.Int("dimensions", 1, model.Config.HiddenSize);
            ModelLoading.SetEmbeddingAttention(model, args);
            using var embedder = new Embedder(model);
            using EmbeddingRun run = embedder.Start(ids, pooling, args.Flag("no-normalize") ? false : null, dimensions);
            while (!run.Step())
            {
            }

            if (args.Flag("json"))
            {
                JsonOutput.Write(stdout, w => WriteJson(w, run, ids));
            }
            else
            {
                WriteText(stdout, run, texts);
            }
        }

        return 0;
    }

    private static void WriteJson(Utf8JsonWriter w, EmbeddingRun run, int[][] ids)
    {
        w.WriteStartObject();
        w.WriteStartArray("embeddings");
        foreach (float[] vector in run.Results)
        {
            w.WriteStartArray();
            foreach (float v in vector)
            {
                w.WriteNumberValue(v);
            }

            w.WriteEndArray();
        }

        w.WriteEndArray();
        w.WriteNumber("dimensions", run.Results[0].Length);
        w.WriteString("pooling", EmbeddingPoolings.NameOf(run.Pooling));
        w.WriteBoolean("normalized", run.Normalized);
        w.WriteString("attention", run.Bidirectional ? "non-causal" : "causal");
        w.WriteStartArray("tokens");
        foreach (int[] input in ids)
        {
            w.WriteNumberValue(input.Length);
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>One line per text (its values, shortest round-trip), then the cosine similarity of every pair.</summary>
    private static void WriteText(TextWriter output, EmbeddingRun run, List<string> texts)
    {
        string pooling = EmbeddingPoolings.NameOf(run.Pooling);
        output.WriteLine($"# {texts.Count} embedding(s) of {run.Results[0].Length} values, {pooling} pooling{(run.Normalized ? ", normalized" : "")}{(run.Bidirectional ? ", non-causal attention" : "")}");
        for (int i = 0; i < run.Results.Length; i++)
        {
            output.WriteLine($"{i}: {string.Join(' ', run.Results[i].Select(v => v.ToString("R", CultureInfo.InvariantCulture)))}");
        }

        if (texts.Count < 2)
        {
            return;
        }

        output.WriteLine("# cosine similarity");
        for (int i = 0; i < run.Results.Length; i++)
        {
            output.WriteLine(string.Join(' ', run.Results.Select(other => System.Numerics.Tensors.TensorPrimitives.CosineSimilarity(run.Results[i], other).ToString("F4", CultureInfo.InvariantCulture))));
        }
    }
}
