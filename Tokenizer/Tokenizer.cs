using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using QwenSharp.Tokenization.Chat;
using QwenSharp.Tokenization.Decoding;
using QwenSharp.Tokenization.Loading;
using QwenSharp.Tokenization.Models;
using QwenSharp.Tokenization.Normalizers;
using QwenSharp.Tokenization.PreTokenizers;

namespace QwenSharp.Tokenization;

/// <summary>
/// A Hugging Face tokenizer read from a model folder's tokenizer.json and tokenizer_config.json:
/// byte-level BPE (Qwen2, GPT-2 family) or sentencepiece-style BPE with byte fallback (Llama 2), with
/// added and special tokens. Encoding gives the ids Hugging Face <c>tokenizers</c> gives; decoding,
/// full or streaming, gives its text. Safe to use from several threads at once.
/// </summary>
public sealed class Tokenizer
{
    private readonly BpeModel _model;
    private readonly INormalizer? _normalizer;
    private readonly PreTokenizer _preTokenizer;
    private readonly DecodePlan _decodePlan;
    private readonly AddedTokenMatcher _rawAddedTokens;
    private readonly AddedTokenMatcher _normalizedAddedTokens;
    private readonly Dictionary<int, AddedToken> _addedById = [];
    private readonly int[] _prefixIds;
    private readonly int[] _suffixIds;
    private readonly SpecialTokenTemplate _specialTokens;
    private readonly Lazy<ChatTemplate?> _chatTemplate;

    private Tokenizer(TokenizerParts parts, TokenizerConfig config, string source)
    {
        Source = source;
        _model = parts.Model;
        _normalizer = parts.Normalizer;
        _preTokenizer = parts.PreTokenizer;
        _decodePlan = parts.Decoder;
        // As in Hugging Face, an added token whose text is already in the BPE vocabulary takes that id.
        AddedTokens = [.. parts.AddedTokens.Select(t => _model.Vocabulary.TryGetId(t.Content, out int id) && id != t.Id ? t with { Id = id } : t)];
        foreach (AddedToken token in AddedTokens)
        {
            _addedById[token.Id] = token;
        }

        _rawAddedTokens = new AddedTokenMatcher(AddedTokens.Where(t => !t.Normalized || _normalizer is null));
        _normalizedAddedTokens = new AddedTokenMatcher(AddedTokens.Where(t => t.Normalized && _normalizer is not null)
            .Select(t => t with { Content = _normalizer!.Normalize(t.Content) ?? t.Content }));
        VocabularySize = Math.Max(_model.Vocabulary.Size, AddedTokens.Count == 0 ? 0 : AddedTokens.Max(t => t.Id) + 1);

        BosToken = config.BosToken;
        EosToken = config.EosToken;
        PadToken = config.PadToken;
        BosTokenId = IdOfConfigToken(config.BosToken);
        EosTokenId = IdOfConfigToken(config.EosToken);
        PadTokenId = IdOfConfigToken(config.PadToken);
        ChatTemplateText = config.ChatTemplate;
        ChatTemplateSource = config.ChatTemplateSource;
        _chatTemplate = new Lazy<ChatTemplate?>(ParseChatTemplate);

        // transformers' Llama-style tokenizers rebuild the post-processor from add_bos_token/add_eos_token.
        bool explicitSpecials = config.AddBosToken is not null || config.AddEosToken is not null;
        _specialTokens = explicitSpecials
            ? SpecialTokenTemplate.FromSingle(config.AddBosToken == true && BosTokenId is int bos ? [bos] : [], config.AddEosToken == true && EosTokenId is int eos ? [eos] : [])
            : parts.SpecialTokens;
        _prefixIds = _specialTokens.Prefix;
        _suffixIds = _specialTokens.Suffix;
    }

    /// <summary>Loads tokenizer.json (required) and tokenizer_config.json (optional) from a model folder.</summary>
    public static Tokenizer FromDirectory(string directory)
    {
        string path = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                Directory.Exists(directory) ? $"{path}: file not found; the model folder needs the tokenizer.json that Hugging Face ships with it"
                    : directory.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? $"{directory}: GGUF file not found"
                    : $"{directory}: model folder not found", path);
        }

        return new Tokenizer(TokenizerJson.Load(path), TokenizerConfig.Load(directory), path);
    }

    /// <summary>
    /// The tokenizer a GGUF file describes (llama.cpp's tokenizer.ggml.* keys), built as the tokenizer.json it came
    /// from: BOS/EOS/padding from their ids, BOS added when add_bos_token says so, the chat template from the file.
    /// </summary>
    public static Tokenizer FromGguf(GgufVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        using System.Text.Json.JsonDocument json = GgufTokenizerJson.Build(vocabulary);
        string? Text(int? id, string what) => id is null ? null
            : (uint)id.Value < (uint)vocabulary.Tokens.Count ? vocabulary.Tokens[id.Value]
            : throw new InvalidDataException($"{vocabulary.Source}: tokenizer.ggml.{what}_token_id {id} is outside the {vocabulary.Tokens.Count} tokens");
        var config = new TokenizerConfig(Text(vocabulary.BosTokenId, "bos"), Text(vocabulary.EosTokenId, "eos"), Text(vocabulary.PadTokenId, "padding"),
            null, vocabulary.AddBosToken, vocabulary.AddEosToken, vocabulary.ChatTemplate,
            vocabulary.ChatTemplate is null ? null : $"{vocabulary.Source}: tokenizer.chat_template");
        return new Tokenizer(TokenizerJson.Load(json, $"{vocabulary.Source} (tokenizer.ggml)"), config, vocabulary.Source);
    }

    /// <summary>The tokenizer.json (or GGUF file) this was read from.</summary>
    public string Source { get; }

    /// <summary>One more than the largest id (model vocabulary and added tokens).</summary>
    public int VocabularySize { get; }

    public IReadOnlyList<AddedToken> AddedTokens { get; }

    public string? BosToken { get; }

    public string? EosToken { get; }

    public string? PadToken { get; }

    public int? BosTokenId { get; }

    public int? EosTokenId { get; }

    public int? PadTokenId { get; }

    /// <summary>The model's Jinja chat template (tokenizer_config.json or chat_template.jinja), or null.</summary>
    public string? ChatTemplateText { get; }

    internal string? ChatTemplateSource { get; }

    /// <summary>Encodes text; special-token text such as <c>&lt;|im_start|&gt;</c> becomes its id unless <paramref name="parseSpecialTokens"/> is false.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addSpecialTokens">Add what the post-processor adds around a sequence (Llama's BOS).</param>
    /// <param name="parseSpecialTokens">Match special tokens in the text; when false they are encoded as ordinary text.</param>
    public int[] Encode(string text, bool addSpecialTokens = false, bool parseSpecialTokens = true)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        Encode(text, ids, addSpecialTokens, parseSpecialTokens);
        return [.. ids];
    }

    /// <summary>
    /// Encodes text with the special tokens around it, keeping at most <paramref name="maxTokens"/> ids: the text's tokens
    /// are cut from the end before the special tokens go around them (transformers' <c>truncation=True</c> with
    /// <c>max_length</c>), so an appended end-of-text token stays. <paramref name="truncated"/> says whether any were cut.
    /// </summary>
    public int[] EncodeTruncated(string text, int maxTokens, out bool truncated)
    {
        int room = maxTokens - _prefixIds.Length - _suffixIds.Length;
        if (room < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens,
                $"at most {maxTokens} tokens leave no room for text beside the {_prefixIds.Length + _suffixIds.Length} special tokens added around it");
        }

        int[] content = Encode(text, addSpecialTokens: false);
        truncated = content.Length > room;
        return [.. _prefixIds, .. content.AsSpan(0, Math.Min(room, content.Length)), .. _suffixIds];
    }

    /// <summary>
    /// Encodes a pair of texts as transformers' <c>tokenizer(first, text_pair=second)</c> does, without truncation: each
    /// text's tokens with the special tokens the post-processor's pair template puts before, between and after them (none
    /// for Qwen2's tokenizer: the two texts' tokens one after the other). A cross-encoder reads a query and a document so.
    /// </summary>
    public int[] EncodePair(string first, string second, bool addSpecialTokens = true, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        var ids = new List<int>((first.Length + second.Length) / 3 + 8);
        if (addSpecialTokens)
        {
            ids.AddRange(_specialTokens.PairPrefix);
        }

        Encode(first, ids, addSpecialTokens: false, parseSpecialTokens);
        if (addSpecialTokens)
        {
            ids.AddRange(_specialTokens.PairMiddle);
        }

        Encode(second, ids, addSpecialTokens: false, parseSpecialTokens);
        if (addSpecialTokens)
        {
            ids.AddRange(_specialTokens.PairSuffix);
        }

        return [.. ids];
    }

    /// <summary>Encodes text, appending the ids to <paramref name="ids"/>.</summary>
    public void Encode(ReadOnlySpan<char> text, List<int> ids, bool addSpecialTokens = false, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (addSpecialTokens)
        {
            ids.AddRange(_prefixIds);
        }

        EncodeScratch scratch = EncodeScratch.Current;
        var segments = new List<Segment>();
        _rawAddedTokens.Split(text, parseSpecialTokens, segments);
        foreach (Segment segment in segments)
        {
            if (segment.TokenId >= 0)
            {
                ids.Add(segment.TokenId);
                continue;
            }

            ReadOnlySpan<char> piece = text.Slice(segment.Start, segment.Length);
            string? normalized = _normalizer?.Normalize(piece);
            EncodeNormalized(normalized ?? piece, segment.Start == 0, ids, parseSpecialTokens, scratch);
        }

        if (addSpecialTokens)
        {
            ids.AddRange(_suffixIds);
        }
    }

    private void EncodeNormalized(ReadOnlySpan<char> text, bool startsText, List<int> ids, bool parseSpecialTokens, EncodeScratch scratch)
    {
        if (_normalizedAddedTokens.IsEmpty)
        {
            EncodeText(text, startsText, ids, scratch);
            return;
        }

        var segments = new List<Segment>();
        _normalizedAddedTokens.Split(text, parseSpecialTokens, segments);
        foreach (Segment segment in segments)
        {
            if (segment.TokenId >= 0)
            {
                ids.Add(segment.TokenId);
            }
            else
            {
                EncodeText(text.Slice(segment.Start, segment.Length), startsText && segment.Start == 0, ids, scratch);
            }
        }
    }

    /// <summary>Pre-tokenizes normalized text and runs BPE on each piece.</summary>
    private void EncodeText(ReadOnlySpan<char> text, bool startsText, List<int> ids, EncodeScratch scratch)
    {
        if (text.IsEmpty)
        {
            return;
        }

        ReadOnlySpan<char> pieceText = _preTokenizer.Run(text, startsText, ref scratch.RewriteBuffer, scratch.Pieces, scratch.SparePieces);
        PieceList pieces = scratch.Pieces;
        for (int i = 0; i < pieces.Count; i++)
        {
            _model.Encode(pieceText.Slice(pieces.StartOf(i), pieces.LengthOf(i)), _preTokenizer.ByteLevel, ids, scratch);
        }
    }

    /// <summary>Decodes ids to text; an id outside the vocabulary is an <see cref="ArgumentOutOfRangeException"/>.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var text = new StringBuilder(ids.Length * 4);
        new StreamingDecoder(this, _decodePlan, skipSpecialTokens).DecodeAll(ids, text);
        return text.ToString();
    }

    /// <inheritdoc cref="Decode(ReadOnlySpan{int}, bool)"/>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false) =>
        Decode(CollectionsMarshal.AsSpan(ids as List<int> ?? [.. ids]), skipSpecialTokens);

    /// <summary>A decoder for ids that arrive one at a time (generation); it prints only whole characters.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new(this, _decodePlan, skipSpecialTokens);

    /// <summary>
    /// The UTF-8 bytes token <paramref name="id"/> adds to a decoded text after the text's first token, as llama.cpp's
    /// <c>token_to_piece</c> gives them and OpenAI's log-probs list them: a sentencepiece word keeps its leading space,
    /// and a byte-level token that holds part of a character is those bytes (not valid UTF-8 alone, where
    /// <c>Decode([id])</c> gives U+FFFD). An id outside the vocabulary is an <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public byte[] TokenBytes(int id) => PieceBytes.Of(_decodePlan, TokenStringOf(id));

    /// <summary>The token string of <paramref name="id"/> (as stored in tokenizer.json), or null.</summary>
    public string? IdToToken(int id) => _addedById.TryGetValue(id, out AddedToken? added) ? added.Content : _model.Vocabulary.TokenOf(id);

    /// <summary>The id of a token string (added tokens first, then the BPE vocabulary), or null.</summary>
    public int? TokenToId(string token)
    {
        foreach (AddedToken added in AddedTokens)
        {
            if (added.Content == token)
            {
                return added.Id;
            }
        }

        return _model.Vocabulary.TryGetId(token, out int id) ? id : null;
    }

    /// <summary>Whether <paramref name="id"/> is a special added token (skipped by <c>skip_special_tokens</c>).</summary>
    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out AddedToken? added) && added.Special;

    internal string TokenStringOf(int id) => IdToToken(id)
        ?? throw new ArgumentOutOfRangeException(nameof(id), id,
            $"token id {id} is not in the vocabulary of {Source} (ids 0..{VocabularySize - 1})");

    /// <summary>The parsed chat template; a <see cref="TemplateException"/> when the model has none or it cannot be parsed.</summary>
    /// <summary>Whether the model ships a chat template (tokenizer_config.json's chat_template or chat_template.jinja).</summary>
    public bool HasChatTemplate => _chatTemplate.Value is not null;

    public ChatTemplate ChatTemplate => _chatTemplate.Value
        ?? throw new TemplateException($"{Path.GetDirectoryName(Source)}: the model has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja)");

    /// <summary>
    /// Renders a conversation with the model's chat template, as transformers' <c>apply_chat_template</c>
    /// does, with the special tokens (<c>bos_token</c>, <c>eos_token</c>, ...) as template variables.
    /// </summary>
    /// <param name="messages">A JSON list of messages (role, content, tool_calls, ...).</param>
    /// <param name="tools">A JSON list of tool definitions, or null.</param>
    /// <param name="addGenerationPrompt">End with the opening of an assistant turn.</param>
    public string ApplyChatTemplate(JsonElement messages, JsonElement? tools = null, bool addGenerationPrompt = true) =>
        ChatTemplate.Render(messages, tools, addGenerationPrompt, TemplateVariables());

    /// <summary>
    /// As <see cref="ApplyChatTemplate(JsonElement, JsonElement?, bool)"/>, with <paramref name="templateArguments"/> (a JSON
    /// object: transformers' <c>apply_chat_template(**kwargs)</c>) as more template variables; with
    /// <paramref name="continueFinalMessage"/>, the prompt ends inside the final message, after its text
    /// (<see cref="Chat.ChatTemplate.ContinueFinalMessage"/>), which a generation prompt cannot follow.
    /// </summary>
    public string ApplyChatTemplate(JsonElement messages, JsonElement? tools, bool addGenerationPrompt, JsonElement? templateArguments, bool continueFinalMessage = false)
    {
        if (continueFinalMessage && addGenerationPrompt)
        {
            throw new ArgumentException("a prompt that continues the final message cannot end with a generation prompt", nameof(addGenerationPrompt));
        }

        string rendered = ChatTemplate.Render(messages, tools, addGenerationPrompt, TemplateVariables(), templateArguments);
        return continueFinalMessage ? Chat.ChatTemplate.ContinueFinalMessage(rendered, messages) : rendered;
    }

    /// <summary>Renders plain role/content messages with the model's chat template.</summary>
    public string ApplyChatTemplate(IEnumerable<(string Role, string Content)> messages, bool addGenerationPrompt = true) =>
        ChatTemplate.Render(messages, addGenerationPrompt, TemplateVariables());

    /// <summary>
    /// Renders plain role/content messages to be answered: after a new assistant turn, or inside a final assistant message,
    /// continuing its text (assistant prefill; <see cref="Chat.ChatTemplate.ContinueFinalMessage"/>).
    /// </summary>
    public string ApplyChatTemplateForAnswer(IReadOnlyList<(string Role, string Content)> messages)
    {
        bool continues = messages.Count > 0 && messages[^1].Role == "assistant";
        return ChatTemplate.Render(messages, addGenerationPrompt: !continues, TemplateVariables(), continues);
    }

    private Dictionary<string, string> TemplateVariables()
    {
        var variables = new Dictionary<string, string>();
        foreach ((string name, string? value) in (ReadOnlySpan<(string, string?)>)[("bos_token", BosToken), ("eos_token", EosToken), ("pad_token", PadToken)])
        {
            if (value is not null)
            {
                variables[name] = value;
            }
        }

        return variables;
    }

    private ChatTemplate? ParseChatTemplate()
    {
        if (ChatTemplateText is null)
        {
            return null;
        }

        try
        {
            return ChatTemplate.Parse(ChatTemplateText);
        }
        catch (TemplateException e)
        {
            throw new TemplateException($"{ChatTemplateSource}: {e.Message}", e);
        }
    }

    private int? IdOfConfigToken(string? token) => token is null ? null : TokenToId(token);
}
