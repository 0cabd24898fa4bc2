using System.Text.Json;

namespace QwenSharp.Tokenization.Loading;

/// <summary>
/// The tokenizer.json Hugging Face holds for a sentencepiece model (Llama 2's), written from a GGUF "llama" vocabulary:
/// tokens with their scores, byte tokens (&lt;0x00&gt;..) for what no token covers. sentencepiece merges, of all
/// adjacent pieces whose joined text is a token, the pair whose token scores highest, as llama.cpp's llm_tokenizer_spm
/// does; the same as BPE whose merges are every split of every token into two tokens, ranked by the joined token's score
/// (ties by its id, then the halves' ids), which is how Hugging Face's converter (SentencePieceExtractor) makes them.
/// The text gets "▁" for spaces and, unless tokenizer.ggml.add_space_prefix is false, one in front.
/// </summary>
internal static class SentencepieceJson
{
    private const string Space = "\u2581";

    public static JsonDocument Build(GgufVocabulary vocabulary, string where)
    {
        IReadOnlyList<string> tokens = vocabulary.Tokens;
        IReadOnlyList<float> scores = vocabulary.Scores
            ?? throw new InvalidDataException($"{where}.scores is missing: a sentencepiece (\"llama\") vocabulary needs a score per token");
        if (scores.Count != tokens.Count)
        {
            throw new InvalidDataException($"{where}.scores has {scores.Count} entries for {tokens.Count} tokens");
        }

        long TypeOf(int id) => vocabulary.TokenTypes?[id] ?? GgufVocabulary.Normal;
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < tokens.Count; id++)
        {
            if (TypeOf(id) != GgufVocabulary.Unused)
            {
                ids.TryAdd(tokens[id], id);
            }
        }

        int? unknown = vocabulary.UnknownTokenId ?? Enumerable.Range(0, tokens.Count).Cast<int?>().FirstOrDefault(id => TypeOf(id!.Value) == GgufVocabulary.Unknown);
        if (unknown is int u && (uint)u >= (uint)tokens.Count)
        {
            throw new InvalidDataException($"{where}.unknown_token_id {u} is outside the {tokens.Count} tokens");
        }

        bool spacePrefix = vocabulary.AddSpacePrefix ?? true;
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("added_tokens");
            for (int id = 0; id < tokens.Count; id++)
            {
                long type = TypeOf(id);
                if (type is GgufVocabulary.Control or GgufVocabulary.UserDefined or GgufVocabulary.Unknown)
                {
                    GgufTokenizerJson.WriteAddedToken(w, id, tokens[id], special: type != GgufVocabulary.UserDefined);
                }
            }

            w.WriteEndArray();
            w.WriteStartObject("normalizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("normalizers");
            if (spacePrefix)
            {
                w.WriteStartObject();
                w.WriteString("type", "Prepend");
                w.WriteString("prepend", Space);
                w.WriteEndObject();
            }

            w.WriteStartObject();
            w.WriteString("type", "Replace");
            w.WriteStartObject("pattern");
            w.WriteString("String", " ");
            w.WriteEndObject();
            w.WriteString("content", Space);
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            if (unknown is int unk)
            {
                w.WriteString("unk_token", tokens[unk]);
            }

            w.WriteBoolean("fuse_unk", true);
            w.WriteBoolean("byte_fallback", true);
            w.WriteStartObject("vocab");
            foreach ((string text, int id) in ids.OrderBy(p => p.Value))
            {
                w.WriteNumber(text, id);
            }

            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach ((string left, string right) in Merges(tokens, scores, ids, TypeOf))
            {
                // As a pair: a token may hold a space, which the "left right" form could not tell apart.
                w.WriteStartArray();
                w.WriteStringValue(left);
                w.WriteStringValue(right);
                w.WriteEndArray();
            }

            w.WriteEndArray();
            w.WriteEndObject();

            w.WriteStartObject("decoder");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("decoders");
            w.WriteStartObject();
            w.WriteString("type", "Replace");
            w.WriteStartObject("pattern");
            w.WriteString("String", Space);
            w.WriteEndObject();
            w.WriteString("content", " ");
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("type", "ByteFallback");
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("type", "Fuse");
            w.WriteEndObject();
            if (spacePrefix)
            {
                w.WriteStartObject();
                w.WriteString("type", "Strip");
                w.WriteString("content", " ");
                w.WriteNumber("start", 1);
                w.WriteNumber("stop", 0);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return JsonDocument.Parse(buffer.ToArray());
    }

    /// <summary>Every split of every normal token into two tokens, the best-scoring joined token first.</summary>
    private static IEnumerable<(string Left, string Right)> Merges(IReadOnlyList<string> tokens, IReadOnlyList<float> scores, Dictionary<string, int> ids, Func<int, long> typeOf)
    {
        var merges = new List<(float Score, int Joined, int Left, int Right)>();
        for (int id = 0; id < tokens.Count; id++)
        {
            string token = tokens[id];
            if (typeOf(id) != GgufVocabulary.Normal || ids[token] != id)
            {
                continue;
            }

            for (int at = 1; at < token.Length; at++)
            {
                // Splits fall between characters (code points), never inside a surrogate pair.
                if (char.IsLowSurrogate(token[at]))
                {
                    continue;
                }

                if (ids.TryGetValue(token[..at], out int left) && ids.TryGetValue(token[at..], out int right))
                {
                    merges.Add((scores[id], id, left, right));
                }
            }
        }

        merges.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score)
            : a.Joined != b.Joined ? a.Joined.CompareTo(b.Joined)
            : a.Left != b.Left ? a.Left.CompareTo(b.Left) : a.Right.CompareTo(b.Right));
        return merges.Select(m => (tokens[m.Left], tokens[m.Right]));
    }
}
