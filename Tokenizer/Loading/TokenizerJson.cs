using System.Text.Json;
using System.Text.RegularExpressions;
using QwenSharp.Tokenization.Decoding;
using QwenSharp.Tokenization.Models;
using QwenSharp.Tokenization.Normalizers;
using QwenSharp.Tokenization.PreTokenizers;
using static QwenSharp.Tokenization.Loading.JsonFields;

namespace QwenSharp.Tokenization.Loading;

/// <summary>Everything tokenizer.json defines, built into the parts <see cref="Tokenizer"/> runs.</summary>
internal sealed record TokenizerParts(
    BpeModel Model,
    IReadOnlyList<AddedToken> AddedTokens,
    INormalizer? Normalizer,
    PreTokenizer PreTokenizer,
    DecodePlan Decoder,
    SpecialTokenTemplate SpecialTokens);

/// <summary>
/// Reads a Hugging Face tokenizer.json. Every component type we do not implement is refused with a
/// <see cref="NotSupportedException"/> that names it and where it is, rather than tokenizing differently.
/// </summary>
internal static class TokenizerJson
{
    public static TokenizerParts Load(string path)
    {
        using JsonDocument document = Parse(path);
        return Load(document, path);
    }

    /// <summary>Builds the parts from a parsed tokenizer.json; <paramref name="path"/> names it in errors.</summary>
    public static TokenizerParts Load(JsonDocument document, string path)
    {
        JsonElement root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{path}: expected a JSON object at the top level");
        }

        BpeModel model = ReadModel(Required(root, "model", path), path);
        List<AddedToken> added = ReadAddedTokens(Optional(root, "added_tokens"), path);
        INormalizer? normalizer = Optional(root, "normalizer") is JsonElement n ? ReadNormalizer(n, $"{path}: normalizer") : null;
        PreTokenizer preTokenizer = Optional(root, "pre_tokenizer") is JsonElement p ? ReadPreTokenizer(p, $"{path}: pre_tokenizer") : PreTokenizer.None;
        DecodePlan decoder = ReadDecoder(Optional(root, "decoder")
            ?? throw new NotSupportedException($"{path}: has no decoder; a decoder is needed to turn ids back into text"), $"{path}: decoder");
        SpecialTokenTemplate specialTokens = Optional(root, "post_processor") is JsonElement post
            ? ReadPostProcessor(post, $"{path}: post_processor") : SpecialTokenTemplate.None;
        return new TokenizerParts(model, added, normalizer, preTokenizer, decoder, specialTokens);
    }

    private static string TypeOf(JsonElement element, string where) => RequiredString(element, "type", where);

    private static BpeModel ReadModel(JsonElement model, string path)
    {
        string where = $"{path}: model";
        string type = OptionalString(model, "type", where) ?? "BPE";
        if (type != "BPE")
        {
            throw new NotSupportedException($"{where}: model type '{type}' is not supported (only BPE)");
        }

        if (Optional(model, "dropout") is JsonElement dropout && dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() > 0)
        {
            throw new NotSupportedException($"{where}: BPE dropout {dropout.GetDouble()} is a training feature and is not supported");
        }

        foreach (string affix in (string[])["continuing_subword_prefix", "end_of_word_suffix"])
        {
            if (!string.IsNullOrEmpty(OptionalString(model, affix, where)))
            {
                throw new NotSupportedException($"{where}: BPE with a non-empty {affix} is not supported");
            }
        }

        JsonElement vocabJson = Required(model, "vocab", where);
        if (vocabJson.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{where}: field 'vocab' must be an object of token: id");
        }

        var ids = new Dictionary<string, int>();
        foreach (JsonProperty entry in vocabJson.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw new InvalidDataException($"{where}.vocab: token \"{entry.Name}\" has id {entry.Value.GetRawText()}, expected a non-negative integer");
            }

            ids[entry.Name] = id;
        }

        var vocabulary = new Vocabulary(ids);
        MergeRule[] merges = Optional(model, "merges") is JsonElement mergesJson ? MergeReader.Read(mergesJson, vocabulary, where) : [];
        var options = new BpeOptions(
            OptionalString(model, "unk_token", where),
            OptionalBool(model, "fuse_unk", false, where),
            OptionalBool(model, "byte_fallback", false, where),
            OptionalBool(model, "ignore_merges", false, where));
        return new BpeModel(vocabulary, merges, options, path);
    }

    private static List<AddedToken> ReadAddedTokens(JsonElement? array, string path)
    {
        var tokens = new List<AddedToken>();
        if (array is null)
        {
            return tokens;
        }

        int index = 0;
        foreach (JsonElement token in array.Value.EnumerateArray())
        {
            string where = $"{path}: added_tokens[{index++}]";
            tokens.Add(new AddedToken(
                RequiredInt(token, "id", where),
                RequiredString(token, "content", where),
                OptionalBool(token, "special", false, where),
                OptionalBool(token, "single_word", false, where),
                OptionalBool(token, "lstrip", false, where),
                OptionalBool(token, "rstrip", false, where),
                OptionalBool(token, "normalized", true, where)));
        }

        return tokens;
    }

    private static INormalizer ReadNormalizer(JsonElement normalizer, string where)
    {
        string type = TypeOf(normalizer, where);
        return type switch
        {
            "NFC" => new NfcNormalizer(),
            "Prepend" => new PrependNormalizer(RequiredString(normalizer, "prepend", where)),
            "Replace" => new ReplaceNormalizer(LiteralPattern(normalizer, where), RequiredString(normalizer, "content", where)),
            "Sequence" => new SequenceNormalizer([.. Required(normalizer, "normalizers", where).EnumerateArray()
                .Select((n, i) => ReadNormalizer(n, $"{where}.normalizers[{i}]"))]),
            _ => throw new NotSupportedException($"{where}: normalizer type '{type}' is not supported (supported: NFC, Prepend, Replace, Sequence)"),
        };
    }

    private static string LiteralPattern(JsonElement element, string where)
    {
        JsonElement pattern = Required(element, "pattern", where);
        return OptionalString(pattern, "String", where)
            ?? throw new NotSupportedException($"{where}: only {{\"String\": ...}} patterns are supported here, found {Describe(pattern)}");
    }

    private static PreTokenizer ReadPreTokenizer(JsonElement preTokenizer, string where)
    {
        string type = TypeOf(preTokenizer, where);
        List<JsonElement> steps = type == "Sequence"
            ? [.. Required(preTokenizer, "pretokenizers", where).EnumerateArray()]
            : [preTokenizer];
        var splitters = new List<ISplitter>();
        bool byteLevel = false, addPrefixSpace = false;
        char? metaspace = null;
        PrependScheme prepend = PrependScheme.Never;
        for (int i = 0; i < steps.Count; i++)
        {
            string stepWhere = type == "Sequence" ? $"{where}.pretokenizers[{i}]" : where;
            string stepType = TypeOf(steps[i], stepWhere);
            switch (stepType)
            {
                case "Split":
                    splitters.Add(ReadSplit(steps[i], stepWhere));
                    break;
                case "ByteLevel":
                    byteLevel = true;
                    addPrefixSpace = OptionalBool(steps[i], "add_prefix_space", false, stepWhere);
                    if (addPrefixSpace && i > 0)
                    {
                        throw new NotSupportedException($"{stepWhere}: ByteLevel with add_prefix_space after another pre-tokenizer is not supported");
                    }

                    if (OptionalBool(steps[i], "use_regex", true, stepWhere))
                    {
                        splitters.Add(new RegexSplitter(new Regex(Gpt2Pattern, RegexOptions.CultureInvariant), SplitBehavior.Isolated, false));
                    }

                    break;
                case "Metaspace":
                    if (i > 0)
                    {
                        throw new NotSupportedException($"{stepWhere}: Metaspace after another pre-tokenizer is not supported");
                    }

                    (metaspace, prepend) = ReadMetaspace(steps[i], stepWhere);
                    if (OptionalBool(steps[i], "split", true, stepWhere))
                    {
                        splitters.Add(new MetaspaceSplitter(metaspace.Value));
                    }

                    break;
                default:
                    throw new NotSupportedException($"{stepWhere}: pre-tokenizer type '{stepType}' is not supported (supported: Split, ByteLevel, Metaspace, Sequence)");
            }
        }

        return new PreTokenizer
        {
            ByteLevel = byteLevel,
            AddPrefixSpace = addPrefixSpace,
            MetaspaceReplacement = metaspace,
            MetaspacePrepend = prepend,
            Splitters = splitters,
        };
    }

    /// <summary>GPT-2's pre-tokenizer regex, used by ByteLevel with <c>use_regex</c>.</summary>
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static ISplitter ReadSplit(JsonElement split, string where)
    {
        JsonElement pattern = Required(split, "pattern", where);
        string behaviorName = RequiredString(split, "behavior", where);
        SplitBehavior behavior = behaviorName switch
        {
            "Isolated" => SplitBehavior.Isolated,
            "Removed" => SplitBehavior.Removed,
            _ => throw new NotSupportedException($"{where}: Split behavior '{behaviorName}' is not supported (supported: Isolated, Removed)"),
        };
        bool invert = OptionalBool(split, "invert", false, where);
        if (OptionalString(pattern, "Regex", where) is string regex)
        {
            if (behavior == SplitBehavior.Isolated && !invert && Gpt4StyleSplitter.ForPattern(regex) is ISplitter fast)
            {
                return fast;
            }

            try
            {
                return new RegexSplitter(new Regex(regex, RegexOptions.CultureInvariant), behavior, invert);
            }
            catch (ArgumentException e)
            {
                throw new NotSupportedException($"{where}: the regex '{regex}' is not supported by .NET's engine: {e.Message}", e);
            }
        }

        string literal = OptionalString(pattern, "String", where)
            ?? throw new InvalidDataException($"{where}: pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}");
        return new RegexSplitter(new Regex(Regex.Escape(literal), RegexOptions.CultureInvariant), behavior, invert);
    }

    private static (char Replacement, PrependScheme Prepend) ReadMetaspace(JsonElement metaspace, string where)
    {
        string replacement = RequiredString(metaspace, "replacement", where);
        if (replacement.Length != 1)
        {
            throw new NotSupportedException($"{where}: a replacement of {replacement.Length} UTF-16 units is not supported");
        }

        string? scheme = OptionalString(metaspace, "prepend_scheme", where);
        PrependScheme prepend = scheme switch
        {
            "always" => PrependScheme.Always,
            "first" => PrependScheme.First,
            "never" => PrependScheme.Never,
            null => OptionalBool(metaspace, "add_prefix_space", true, where) ? PrependScheme.Always : PrependScheme.Never,
            _ => throw new InvalidDataException($"{where}: prepend_scheme '{scheme}' is not always, first or never"),
        };
        return (replacement[0], prepend);
    }

    private static DecodePlan ReadDecoder(JsonElement decoder, string where)
    {
        string type = TypeOf(decoder, where);
        List<JsonElement> steps = type == "Sequence" ? [.. Required(decoder, "decoders", where).EnumerateArray()] : [decoder];
        var plan = new DecodePlan();
        bool fused = false;
        for (int i = 0; i < steps.Count; i++)
        {
            string stepWhere = type == "Sequence" ? $"{where}.decoders[{i}]" : where;
            string stepType = TypeOf(steps[i], stepWhere);
            plan = stepType switch
            {
                "ByteLevel" => plan with { ByteLevel = true },
                "ByteFallback" => plan with { ByteFallback = true },
                "Fuse" => plan,
                "Replace" => plan with { ReplaceFrom = LiteralPattern(steps[i], stepWhere), ReplaceWith = RequiredString(steps[i], "content", stepWhere) },
                "Metaspace" => ReadMetaspace(steps[i], stepWhere) is var (replacement, prepend)
                    ? plan with { ReplaceFrom = replacement.ToString(), ReplaceWith = " ", DropReplacementInFirstToken = prepend != PrependScheme.Never }
                    : plan,
                "Strip" => ReadStrip(steps[i], stepWhere, fused, plan),
                _ => throw new NotSupportedException($"{stepWhere}: decoder type '{stepType}' is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)"),
            };
            fused |= stepType == "Fuse";
        }

        if (plan.ByteLevel && (plan.ByteFallback || plan.ReplaceFrom is not null))
        {
            throw new NotSupportedException($"{where}: ByteLevel combined with Replace, Metaspace or ByteFallback is not supported");
        }

        return plan;
    }

    private static DecodePlan ReadStrip(JsonElement strip, string where, bool fused, DecodePlan plan)
    {
        string content = RequiredString(strip, "content", where);
        int start = RequiredInt(strip, "start", where);
        int stop = RequiredInt(strip, "stop", where);
        if (!fused || stop != 0 || content.Length != 1)
        {
            throw new NotSupportedException($"{where}: Strip is supported only after Fuse, with one character and stop 0");
        }

        return plan with { StripLeading = start, StripChar = content[0] };
    }

    /// <summary>The special tokens the post-processor puts around a single sequence (TemplateProcessing's "single").</summary>
    private static SpecialTokenTemplate ReadPostProcessor(JsonElement post, string where)
    {
        string type = TypeOf(post, where);
        switch (type)
        {
            case "ByteLevel":
                return SpecialTokenTemplate.None;
            case "TemplateProcessing":
                JsonElement specials = Required(post, "special_tokens", where);
                List<int>[] single = ReadTemplate(Required(post, "single", where), specials, 1, $"{where}.single");
                if (Optional(post, "pair") is not JsonElement pairJson || pairJson.ValueKind == JsonValueKind.Null)
                {
                    return SpecialTokenTemplate.FromSingle([.. single[0]], [.. single[1]]);
                }

                List<int>[] pair = ReadTemplate(pairJson, specials, 2, $"{where}.pair");
                return new SpecialTokenTemplate([.. single[0]], [.. single[1]], [.. pair[0]], [.. pair[1]], [.. pair[2]]);
            default:
                throw new NotSupportedException($"{where}: post-processor type '{type}' is not supported (supported: ByteLevel, TemplateProcessing)");
        }
    }

    /// <summary>
    /// A TemplateProcessing template's special tokens between its sequences: before $A, (for a pair) between $A and $B,
    /// and after the last. Type ids are not kept: a decoder-only model has no token types.
    /// </summary>
    private static List<int>[] ReadTemplate(JsonElement template, JsonElement specials, int sequences, string where)
    {
        if (template.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{where}: expected a list of {{Sequence}} and {{SpecialToken}} pieces, found {template.ValueKind}");
        }

        var gaps = new List<int>[sequences + 1];
        for (int i = 0; i < gaps.Length; i++)
        {
            gaps[i] = [];
        }

        int seen = 0;
        foreach (JsonElement piece in template.EnumerateArray())
        {
            if (Optional(piece, "Sequence") is JsonElement sequence)
            {
                string id = RequiredString(sequence, "id", where);
                string? expected = seen == sequences ? null : seen == 0 ? "A" : "B";
                if (id != expected)
                {
                    throw new NotSupportedException($"{where}: sequence ${id} where {(expected is null ? "no more sequences" : "$" + expected)} was expected (the texts in their order, each once)");
                }

                seen++;
            }
            else if (Optional(piece, "SpecialToken") is JsonElement special)
            {
                string name = RequiredString(special, "id", where);
                JsonElement definition = Optional(specials, name)
                    ?? throw new InvalidDataException($"{where}: special token '{name}' is used but not defined in 'special_tokens'");
                foreach (JsonElement id in Required(definition, "ids", $"{where}: special_tokens.{name}").EnumerateArray())
                {
                    gaps[seen].Add(id.GetInt32());
                }
            }
        }

        if (seen != sequences)
        {
            throw new InvalidDataException($"{where}: has {seen} of its {sequences} sequence(s)");
        }

        return gaps;
    }
}
