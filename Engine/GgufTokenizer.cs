using QwenSharp.Formats.Gguf;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>The tokenizer a GGUF file carries in its metadata (tokenizer.ggml.*, tokenizer.chat_template).</summary>
public static class GgufTokenizer
{
    /// <summary>Reads the tokenizer of <paramref name="path"/>; a file without one, or of a kind not supported, is an error naming it.</summary>
    public static Tokenizer Load(string path)
    {
        using GgufFile file = GgufFile.Open(path);
        return Tokenizer.FromGguf(Read(file));
    }

    public static GgufVocabulary Read(GgufFile file)
    {
        GgufCheckpoint.RefuseImportanceMatrix(file);
        IReadOnlyDictionary<string, object> m = file.Metadata;
        string name = file.FileName;
        int? Id(string key) => GgufMetadata.Integer(m, key, name) is long id ? checked((int)id) : null;
        string model = GgufMetadata.Text(m, "tokenizer.ggml.model", name)
            ?? throw new InvalidDataException($"{name}: no tokenizer.ggml.model (the file carries no tokenizer)");
        string[] tokens = GgufMetadata.ArrayOf<string>(m, "tokenizer.ggml.tokens", name, "an array of strings")
            ?? throw new InvalidDataException($"{name}: no tokenizer.ggml.tokens");
        return new GgufVocabulary(
            name,
            model,
            GgufMetadata.Text(m, "tokenizer.ggml.pre", name),
            tokens,
            GgufMetadata.ArrayOf<long>(m, "tokenizer.ggml.token_type", name, "an array of integers"),
            GgufMetadata.ArrayOf<string>(m, "tokenizer.ggml.merges", name, "an array of strings"),
            Id("tokenizer.ggml.bos_token_id"),
            Id("tokenizer.ggml.eos_token_id"),
            Id("tokenizer.ggml.padding_token_id"),
            GgufMetadata.Flag(m, "tokenizer.ggml.add_bos_token", name),
            GgufMetadata.Flag(m, "tokenizer.ggml.add_eos_token", name),
            GgufMetadata.Text(m, "tokenizer.chat_template", name),
            GgufMetadata.ArrayOf<double>(m, "tokenizer.ggml.scores", name, "an array of numbers") is double[] scores ? [.. scores.Select(v => (float)v)] : null,
            GgufMetadata.Flag(m, "tokenizer.ggml.add_space_prefix", name),
            Id("tokenizer.ggml.unknown_token_id"));
    }
}
