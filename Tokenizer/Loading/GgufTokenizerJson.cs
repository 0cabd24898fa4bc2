using System.Text;
using System.Text.Json;

namespace QwenSharp.Tokenization.Loading;

/// <summary>
/// Writes the tokenizer.json that Hugging Face would hold for a GGUF vocabulary, so a GGUF file's tokenizer runs
/// through the same parts (and the same checks) as a model folder's. Normal tokens form the BPE vocabulary;
/// control tokens become special added tokens and user-defined ones plain added tokens, as llama.cpp's converter
/// made them from Hugging Face's, and unused ones (padding) left out; the pre-tokenizer is the one llama.cpp names in tokenizer.ggml.pre.
/// </summary>
internal static class GgufTokenizerJson
{
    public static JsonDocument Build(GgufVocabulary vocabulary)
    {
        string where = $"{vocabulary.Source}: tokenizer.ggml";
        if (vocabulary.Model is not ("gpt2" or "llama"))
        {
            throw new NotSupportedException($"{where}.model '{vocabulary.Model}' is not supported (byte-level BPE, \"gpt2\", and sentencepiece, \"llama\", are)");
        }

        if (vocabulary.TokenTypes is not null && vocabulary.TokenTypes.Count != vocabulary.Tokens.Count)
        {
            throw new InvalidDataException($"{where}.token_type has {vocabulary.TokenTypes.Count} entries for {vocabulary.Tokens.Count} tokens");
        }

        if (vocabulary.Model == "llama")
        {
            return SentencepieceJson.Build(vocabulary, where);
        }

        string? split = GgufPreTokenizers.RegexOf(vocabulary.Pre, where);

        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteStartObject("vocab");
            var added = new List<int>();
            for (int id = 0; id < vocabulary.Tokens.Count; id++)
            {
                long type = vocabulary.TokenTypes?[id] ?? GgufVocabulary.Normal;
                if (type is GgufVocabulary.Control or GgufVocabulary.UserDefined)
                {
                    added.Add(id);
                }
                else if (type == GgufVocabulary.Unused)
                {
                    // Padding up to the embedding's rows ("[PAD151665]"): no text maps to it, as in Hugging Face.
                    continue;
                }
                else
                {
                    w.WriteNumber(vocabulary.Tokens[id], id);
                }
            }

            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (string merge in vocabulary.Merges ?? [])
            {
                w.WriteStringValue(merge);
            }

            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteStartArray("added_tokens");
            foreach (int id in added)
            {
                WriteAddedToken(w, id, vocabulary.Tokens[id], special: vocabulary.TokenTypes![id] == GgufVocabulary.Control);
            }

            w.WriteEndArray();
            if (vocabulary.Pre == "qwen2")
            {
                // Qwen2's tokenizer.json normalizes to NFC before splitting.
                w.WriteStartObject("normalizer");
                w.WriteString("type", "NFC");
                w.WriteEndObject();
            }

            w.WriteStartObject("pre_tokenizer");
            if (split is null)
            {
                WriteByteLevel(w, useRegex: true);
            }
            else
            {
                w.WriteString("type", "Sequence");
                w.WriteStartArray("pretokenizers");
                w.WriteStartObject();
                w.WriteString("type", "Split");
                w.WriteStartObject("pattern");
                w.WriteString("Regex", split);
                w.WriteEndObject();
                w.WriteString("behavior", "Isolated");
                w.WriteBoolean("invert", false);
                w.WriteEndObject();
                w.WriteStartObject();
                WriteByteLevel(w, useRegex: false);
                w.WriteEndObject();
                w.WriteEndArray();
            }

            w.WriteEndObject();
            w.WriteStartObject("decoder");
            WriteByteLevel(w, useRegex: false);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return JsonDocument.Parse(buffer.ToArray());
    }

    /// <summary>One entry of added_tokens: matched in the text as is (not normalized), special or not.</summary>
    internal static void WriteAddedToken(Utf8JsonWriter w, int id, string content, bool special)
    {
        w.WriteStartObject();
        w.WriteNumber("id", id);
        w.WriteString("content", content);
        w.WriteBoolean("special", special);
        w.WriteBoolean("normalized", false);
        w.WriteEndObject();
    }

    private static void WriteByteLevel(Utf8JsonWriter w, bool useRegex)
    {
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", false);
        w.WriteBoolean("use_regex", useRegex);
    }
}
