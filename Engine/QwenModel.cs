using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.AI;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Errors;
using QwenSharp.Gpu;
using QwenSharp.Generation;
using QwenSharp.Images;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// A Hugging Face model folder, loaded: the Qwen2 model on its backend and its tokenizer, ready to
/// generate text (streamed, in batches, with log-probs), score, and serve as an <see cref="IChatClient"/>.
/// One generation runs at a time; concurrent calls wait their turn.
/// </summary>
public sealed class QwenModel : IDisposable
{
    private readonly IBackend _backend;
    private readonly SemaphoreSlim _turn = new(1, 1);

    /// <summary>The buffers of embedding steps, made at the first <see cref="EmbedAsync"/>.</summary>
    private Embedder? _embedder;

    /// <summary>What <see cref="TextGenerationOptions.JsonObject"/> and <see cref="TextGenerationOptions.JsonSchema"/> hold answers to.</summary>
    private readonly ConstrainedOutput _constrained;

    /// <summary><see cref="QwenModelOptions.PromptLookup"/>: guesses a step for every generation that does not say otherwise.</summary>
    private readonly int? _promptLookup;

    /// <summary>
    /// <see cref="QwenModelOptions.PromptLookup"/>: the most guessed tokens a step of every generation that does not say
    /// otherwise (and of a server over this model); null: off.
    /// </summary>
    public int? PromptLookup => _promptLookup;

    /// <summary>The draft model's guesses a step when neither the options nor the generation say.</summary>
    public const int DefaultDraftTokens = 4;

    /// <summary><see cref="QwenModelOptions.DraftModel"/>, loaded beside the model on its backend; null without one.</summary>
    private DraftModel? _draft;

    /// <summary>The loaded draft model (the server guesses with it too).</summary>
    internal DraftModel? Draft => _draft;

    /// <summary>
    /// Guesses a step when a generation (or the server) does not say: <see cref="QwenModelOptions.PromptLookup"/>, else
    /// with a draft model <see cref="DefaultDraftTokens"/>; null: none.
    /// </summary>
    internal int? DefaultGuesses => _promptLookup ?? (_draft is null ? null : DefaultDraftTokens);

    /// <summary>The draft model's file or folder, when <see cref="QwenModelOptions.DraftModel"/> gave one.</summary>
    public string? DraftDirectory { get; private set; }

    private QwenModel(string directory, IBackend backend, Qwen2Model model, Tokenizer tokenizer, int? promptLookup)
    {
        Directory = directory;
        _promptLookup = promptLookup;
        _backend = backend;
        Model = model;
        Tokenizer = tokenizer;
        _constrained = new ConstrainedOutput(tokenizer, model.Config.VocabSize, EosTokenIds);
    }

    /// <summary>The model folder.</summary>
    public string Directory { get; }

    /// <summary>
    /// What a server's requests call each of <see cref="Qwen2Model.Adapters"/>, in order (<see cref="LoraAdapterOptions.Name"/>:
    /// given, the Hub name, or the folder's or GGUF file's name).
    /// </summary>
    public IReadOnlyList<string> AdapterNames { get; private init; } = [];

    /// <summary>
    /// <paramref name="modelId"/> where it names one of <see cref="AdapterNames"/>, else null: a Microsoft.Extensions.AI
    /// client's <c>ModelId</c> that picks an adapter to run alone (a server's <c>model</c>).
    /// </summary>
    internal string? AdapterNamedBy(string? modelId) => modelId is not null && AdapterNames.Contains(modelId) ? modelId : null;

    public Qwen2Model Model { get; }

    public Tokenizer Tokenizer { get; }

    /// <summary>Ids that end a sequence: generation_config.json's; without any, config.json's and the tokenizer's eos_token.</summary>
    public IReadOnlyList<int> EosTokenIds => DefaultEosTokenIds(Model, Tokenizer);

    /// <summary>
    /// Loads a model folder (config.json, *.safetensors, tokenizer.json, ...) or a GGUF file on a background thread; a
    /// Hugging Face Hub name (<c>Qwen/Qwen2.5-0.5B-Instruct</c>, where no such path exists) is found in the Hub's cache
    /// or downloaded into it first (<see cref="QwenModelOptions.Hub"/>).
    /// </summary>
    public static async Task<QwenModel> LoadAsync(string directory, QwenModelOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(directory);
        options ??= new QwenModelOptions();
        if (Hub.HuggingFaceHub.IsReference(directory))
        {
            directory = await Hub.HuggingFaceHub.ResolveAsync(directory, options.Hub, cancellationToken).ConfigureAwait(false);
        }

        if (options.DraftModel is string draft && Hub.HuggingFaceHub.IsReference(draft))
        {
            options = options with { DraftModel = await Hub.HuggingFaceHub.ResolveAsync(draft, options.Hub, cancellationToken).ConfigureAwait(false) };
        }

        var adapters = new List<LoraAdapterOptions>();
        foreach (LoraAdapterOptions adapter in options.LoraAdapters)
        {
            adapters.Add(Hub.HuggingFaceHub.IsReference(adapter.Path)
                ? adapter with
                {
                    Path = await Hub.HuggingFaceHub.ResolveAsync(adapter.Path, options.Hub, cancellationToken).ConfigureAwait(false),
                    Name = adapter.Name ?? adapter.Path,
                }
                : adapter);
        }

        options = options with { LoraAdapters = adapters };
        return await Task.Run(() => Load(directory, options), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Loads a model folder on the calling thread.</summary>
    public static QwenModel Load(string directory, QwenModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        options ??= new QwenModelOptions();
        Generation.PromptLookup.CheckSetting(options.PromptLookup, nameof(QwenModelOptions.PromptLookup), allowOff: false);
        if (!KvCache.Holds(options.KvCacheType))
        {
            throw new ArgumentException(
                $"{nameof(QwenModelOptions)}.{nameof(QwenModelOptions.KvCacheType)} {options.KvCacheType}: a KV cache holds {string.Join(", ", KvCache.Types.Select(t => t.Type))}",
                nameof(options));
        }
        bool gpu = GpuDevices.IsGpuSelector(options.Device);
        if (options.Device != "cpu" && !gpu)
        {
            throw new ArgumentException($"device '{options.Device}' is not one of cpu, gpu, gpu:N", nameof(options));
        }

        if (options.GpuLayers is int gpuLayers && (!gpu || gpuLayers < QwenModelOptions.AutoGpuLayers))
        {
            throw new ArgumentException(
                gpuLayers < QwenModelOptions.AutoGpuLayers
                    ? $"{nameof(QwenModelOptions)}.{nameof(QwenModelOptions.GpuLayers)} {gpuLayers}: a count of layers, 0 or more, or {nameof(QwenModelOptions.AutoGpuLayers)}"
                    : $"{nameof(QwenModelOptions)}.{nameof(QwenModelOptions.GpuLayers)} {gpuLayers} places layers on a GPU: it goes with {nameof(QwenModelOptions.Device)} gpu or gpu:N, not {options.Device}",
                nameof(options));
        }

        if (options.GpuFitPositions is int positions && (options.GpuLayers != QwenModelOptions.AutoGpuLayers || positions < 1))
        {
            throw new ArgumentException(
                positions < 1 ? $"{nameof(QwenModelOptions)}.{nameof(QwenModelOptions.GpuFitPositions)} {positions}: a count of positions, 1 or more"
                    : $"{nameof(QwenModelOptions)}.{nameof(QwenModelOptions.GpuFitPositions)} goes with {nameof(QwenModelOptions.GpuLayers)} = {nameof(QwenModelOptions.AutoGpuLayers)}, which it leaves room for",
                nameof(options));
        }

        var fit = new KvReserve(options.GpuFitPositions ?? LayerOffload.DefaultFitPositions, options.KvCacheType);
        (IBackend backend, LayerOffload? offload) = CreateBackends(options.Device, options.GpuLayers, fit, options.Threads ?? Environment.ProcessorCount, options.BatchInvariant);
        try
        {
            Qwen2Model model = Qwen2Model.Load(directory, backend, options.Quantize, offload);
            try
            {
                try
                {
                    model.KvCacheType = options.KvCacheType;
                }
                catch (ArgumentException e)
                {
                    throw new ArgumentException($"{nameof(QwenModelOptions)}.{nameof(QwenModelOptions.KvCacheType)} {options.KvCacheType}: {e.Message}", nameof(options), e);
                }

                model.ApplyAdapterFiles([.. options.LoraAdapters.Select(a => (a.Path, a.Scale))]);
                Tokenizer tokenizer = LoadTokenizer(directory);
                var loaded = new QwenModel(directory, backend, model, tokenizer, options.PromptLookup)
                {
                    AdapterNames = [.. options.LoraAdapters.Select(a => a.Name ?? LoraAdapterOptions.NameOf(a.Path))],
                };
                if (options.DraftModel is string draftPath)
                {
                    loaded.LoadDraft(draftPath);
                }

                return loaded;
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The backend a model runs on for a checked <paramref name="device"/> ("cpu", "gpu", "gpu:N"), and the GPU part of a split
    /// model (<paramref name="gpuLayers"/>, <see cref="QwenModelOptions.GpuLayers"/>), which the model then owns: with
    /// <paramref name="gpuLayers"/> the CPU runs the embedding and the first layers and the GPU the rest (0: nothing there, so
    /// no GPU is opened; <see cref="QwenModelOptions.AutoGpuLayers"/>: as many as fit beside a KV cache of <paramref name="fit"/>);
    /// without, the whole model on the device. The CLI opens its backends here too.
    /// </summary>
    internal static (IBackend Backend, LayerOffload? Offload) CreateBackends(string device, int? gpuLayers, KvReserve fit, int threads, bool batchInvariant)
    {
        IBackend backend = device == "cpu" || gpuLayers is not null
            ? new CpuBackend(new CpuBackendOptions { Threads = threads, BatchInvariant = batchInvariant })
            : new VulkanBackend(new VulkanBackendOptions { Device = device });
        try
        {
            return (backend, gpuLayers switch
            {
                QwenModelOptions.AutoGpuLayers => LayerOffload.Fitting(new VulkanBackend(new VulkanBackendOptions { Device = device }), fit.Positions, fit.Type),
                int layers and > 0 => new LayerOffload(new VulkanBackend(new VulkanBackendOptions { Device = device }), layers),
                _ => null,
            });
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    private static Tokenizer LoadTokenizer(string path) => File.Exists(path) ? GgufTokenizer.Load(path) : Tokenizer.FromDirectory(path);

    /// <summary>
    /// Loads the draft model on this model's backend, refusing one whose tokenizer gives any id another token than this
    /// model's does (its guesses would mean other text, and none would be taken).
    /// </summary>
    private void LoadDraft(string path)
    {
        if (Model.Config.IsSequenceClassifier)
        {
            throw new ArgumentException($"{Directory}: the model is a {Model.Config.Architecture}, which classifies and does not generate: a draft model ({path}) has nothing to guess for");
        }

        CheckDraftTokenizer(Tokenizer, LoadTokenizer(path), path);
        Qwen2Model model = Qwen2Model.Load(path, _backend);
        _draft = new DraftModel(model);
        DraftDirectory = path;
    }

    /// <summary>Refuses a draft whose tokenizer gives an id another token than the model's (its guesses would mean other text).</summary>
    internal static void CheckDraftTokenizer(Tokenizer model, Tokenizer draft, string draftPath)
    {
        int shared = Math.Min(draft.VocabularySize, model.VocabularySize);
        for (int id = 0; id < shared; id++)
        {
            if (draft.IdToToken(id) != model.IdToToken(id))
            {
                throw new ArgumentException($"draft model {draftPath}: its tokenizer has '{draft.IdToToken(id)}' at id {id} where the model's has '{model.IdToToken(id)}'; a draft model needs the model's tokenizer");
            }
        }
    }

    /// <summary>generation_config.json's eos ids; without any, config.json's and the tokenizer's eos_token (models disagree on which is right).</summary>
    public static IReadOnlyList<int> DefaultEosTokenIds(Qwen2Model model, Tokenizer? tokenizer)
    {
        IReadOnlyList<int> ids = Generator.DefaultEosTokenIds(model);
        bool fromGenerationConfig = model.GenerationConfig.EosTokenIds.Count > 0;
        return !fromGenerationConfig && tokenizer?.EosTokenId is int eos && !ids.Contains(eos) ? [.. ids, eos] : ids;
    }

    /// <summary>Continues a text prompt (encoded as is, with the tokenizer's BOS where it adds one), streaming the new text.</summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(string prompt, TextGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return StreamAsync(Tokenizer.Encode(prompt, addSpecialTokens: true), options ?? new TextGenerationOptions(), null, echoPrompt: true, cancellationToken);
    }

    /// <summary>Continues a prompt of token ids, streaming the new tokens and text.</summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(IReadOnlyList<int> promptIds, TextGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        return StreamAsync([.. promptIds], options ?? new TextGenerationOptions(), null, echoPrompt: false, cancellationToken);
    }

    /// <summary>
    /// Answers a conversation rendered with the model's chat template, streaming the answer; one that ends with the
    /// assistant's message is continued from its text (assistant prefill).
    /// </summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(IEnumerable<(string Role, string Content)> messages, TextGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        return StreamAsync(Tokenizer.Encode(Tokenizer.ApplyChatTemplateForAnswer([.. messages])), options ?? new TextGenerationOptions(), null,
            echoPrompt: false, cancellationToken);
    }

    /// <summary>
    /// Answers a conversation of Microsoft.Extensions.AI messages through the chat template, streaming the answer (one
    /// that ends with the assistant's message is continued from its text); a Qwen2-VL model takes pictures in them as
    /// <see cref="DataContent"/> (image/png, image/jpeg).
    /// </summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(IEnumerable<ChatMessage> messages, TextGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        (int[] ids, VisionPrompt? vision) = EncodeConversation(messages, null, null);
        return StreamAsync(ids, options ?? new TextGenerationOptions(), null, echoPrompt: false, cancellationToken, vision);
    }

    /// <summary>The answers this model's generations can be held to (JSON, tool calls).</summary>
    internal ConstrainedOutput Constrained => _constrained;

    /// <summary>
    /// A fill-in-the-middle prompt for a code model (Qwen2.5-Coder): the code before the gap, the code after it, text the
    /// answer is to start with, and other files of the project as context, in the repository-level form the model was
    /// trained on and llama-server's <c>/infill</c> writes (see <see cref="FillInTheMiddle"/>); generate from it with
    /// <see cref="GenerateAsync(IReadOnlyList{int}, TextGenerationOptions?, CancellationToken)"/>. Without
    /// <paramref name="files"/> (null) the prompt is the file-level form alone; with a list, even an empty one, the
    /// repository-level form. A vocabulary without the FIM tokens is a NotSupportedException.
    /// </summary>
    public int[] EncodeInfill(string prefix, string suffix, string prompt = "", IReadOnlyList<InfillFile>? files = null)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(suffix);
        ArgumentNullException.ThrowIfNull(prompt);
        return (FillInTheMiddle.Of(Tokenizer) ?? throw new NotSupportedException(FillInTheMiddleMissing)).Encode(prefix, suffix, prompt, files);
    }

    /// <summary>Why a model cannot fill in the middle.</summary>
    internal const string FillInTheMiddleMissing = "this model's vocabulary has no fill-in-the-middle tokens (<|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>: Qwen2.5-Coder's)";

    /// <summary>
    /// A conversation through the chat template: function calls and results in transformers' shapes, tools as the
    /// template's tools, <paramref name="instructions"/> as a system message when there is none, and its pictures decoded.
    /// One that ends with the assistant's message continues it (assistant prefill, as <c>serve</c> does) unless
    /// <paramref name="continueFinalMessage"/> is false; true requires such a message.
    /// </summary>
    internal (string Text, List<RgbImage> Pictures) RenderConversation(IEnumerable<ChatMessage> messages, string? instructions, IList<AITool>? tools,
        bool? continueFinalMessage = null)
    {
        using JsonDocument json = ChatJson.Messages(messages, instructions);
        using JsonDocument? toolJson = ChatJson.Tools(tools);
        List<string> references = PicturePrompts.References(json.RootElement);
        if (references.Count > 0 && Model.ImageProcessor is null)
        {
            throw new NotSupportedException($"the conversation has {references.Count} picture(s), and this model (model_type {Model.Config.ModelType}) takes no pictures");
        }

        bool endsWithAssistant = Tokenization.Chat.ChatTemplate.EndsWithAssistantMessage(json.RootElement);
        bool continues = continueFinalMessage ?? endsWithAssistant;
        if (continues && !endsWithAssistant)
        {
            throw new ArgumentException("continue_final_message needs the conversation's last message to be the assistant's: the text the answer goes on from", nameof(messages));
        }

        if (continues && json.RootElement[json.RootElement.GetArrayLength() - 1].TryGetProperty("tool_calls", out _))
        {
            throw new ArgumentException("the conversation's last message is the assistant's, which the answer continues, and it holds function calls, which cannot be continued; give their results after it", nameof(messages));
        }

        string text;
        try
        {
            text = Tokenizer.ApplyChatTemplate(json.RootElement, toolJson?.RootElement, addGenerationPrompt: !continues, templateArguments: null, continues);
        }
        catch (ArgumentException e) when (e.ParamName == "messages")
        {
            throw new ArgumentException($"the conversation's last message is the assistant's, which the answer continues, and {e.BareMessage()}", nameof(messages), e);
        }

        return (text, [.. references.Select(r => PicturePrompts.Load(r, Directory, Model.ImageProcessor!))]);
    }

    /// <summary>How many tokens a conversation's prompt has, picture pads expanded (without running the vision tower).</summary>
    internal int PromptLength(IEnumerable<ChatMessage> messages)
    {
        (string text, List<RgbImage> pictures) = RenderConversation(messages, null, null);
        int length = Tokenizer.Encode(text).Length;
        return pictures.Count == 0 ? length : length + pictures.Sum(p => PicturePrompts.TokensOf(p, Model.ImageProcessor!) - 1);
    }

    /// <summary>The prompt ids of a conversation (picture pads expanded) and, with pictures, the vision tower's features laid out.</summary>
    internal (int[] Ids, VisionPrompt? Vision) EncodeConversation(IEnumerable<ChatMessage> messages, string? instructions, IList<AITool>? tools,
        bool? continueFinalMessage = null)
    {
        (string text, List<RgbImage> pictures) = RenderConversation(messages, instructions, tools, continueFinalMessage);
        if (pictures.Count == 0)
        {
            return (Tokenizer.Encode(text), null);
        }

        // The vision tower runs on the model's turn like any other forward pass.
        _turn.Wait();
        try
        {
            return PicturePrompts.Encode(Model, Tokenizer, text, pictures);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>Several text prompts in one batch, each stopping on its own; every result equals what its prompt gives alone.</summary>
    public async Task<IReadOnlyList<GeneratedText>> GenerateBatchAsync(IReadOnlyList<string> prompts, TextGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        options ??= new TextGenerationOptions();
        int[][] ids = [.. prompts.Select(p => Tokenizer.Encode(p, addSpecialTokens: true))];
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await Task.Run(() =>
            {
                var text = new StopStrings(Tokenizer, options.StopSequences, ids.Length);
                GenerationResult result = Generator.Generate(Model, ids, GenerationOptionsFor(options, ids, text, cancellationToken));
                return (IReadOnlyList<GeneratedText>)[.. result.Sequences.Select((s, i) => new GeneratedText(s.Ids, text.FinalText(i), s.StopReason, s.Logprobs))];
            }, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>Log-probs of every token of <paramref name="ids"/> under the model, with the mean NLL and perplexity.</summary>
    /// <param name="loraScales">How strongly to apply each of the model's LoRA adapters; null: their own.</param>
    public ScoreResult Score(IReadOnlyList<int> ids, int top = 5, IReadOnlyList<float>? loraScales = null)
    {
        float[]? adapterScales = AdapterScalesFor(null, loraScales, nameof(loraScales));
        _turn.Wait();
        try
        {
            return Scorer.Score(Model, ids, top, adapterScales: adapterScales);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>
    /// Text embeddings of <paramref name="texts"/>, in their order: each after its prompt (a named one, or the model's
    /// default; see <see cref="TextEmbeddingOptions.PromptName"/>) and encoded with the tokenizer's special tokens, read
    /// as a prompt, and its last hidden states pooled and normalized as the model says (sentence-transformers' files in
    /// the folder, <c>pooling_type</c> in a GGUF file; else the last token, normalized) unless <paramref name="options"/>
    /// says otherwise. Short texts share forward steps.
    /// </summary>
    public async Task<TextEmbeddings> EmbedAsync(IReadOnlyList<string> texts, TextEmbeddingOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        options ??= new TextEmbeddingOptions();
        int[][] ids = EmbeddingInputs.Encode(Tokenizer, Model, texts, options.PromptName, options.Prompt, options.Pooling, options.Truncate);
        float[]? adapterScales = AdapterScalesFor(options.LoraAdapter, options.LoraScales, nameof(TextEmbeddingOptions.LoraScales));
        float[][] vectors = await EmbedIdsAsync(ids, options, adapterScales, cancellationToken).ConfigureAwait(false);
        return new TextEmbeddings(vectors, ids.Sum(i => (long)i.Length));
    }

    private async Task<float[][]> EmbedIdsAsync(int[][] ids, TextEmbeddingOptions options, float[]? adapterScales, CancellationToken cancellationToken)
    {
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await Task.Run(() =>
            {
                _embedder ??= new Embedder(Model);
                return _embedder.Embed(ids, options.Pooling, options.Normalize, options.Dimensions, cancellationToken, options.Bidirectional, adapterScales);
            }, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>
    /// What a sequence classifier (a <c>*ForSequenceClassification</c> model: a reward model, a classifier) makes of each of
    /// <paramref name="texts"/>, in their order: each encoded with the tokenizer's special tokens and read as a prompt, and the
    /// hidden state of its last token that is not padding through the model's score head, as transformers computes it.
    /// A model that generates refuses (<see cref="NotSupportedException"/>). Short texts share forward steps.
    /// </summary>
    /// <param name="loraScales">How strongly to apply each of the model's LoRA adapters; null: their own.</param>
    public async Task<IReadOnlyList<TextClassification>> ClassifyAsync(IReadOnlyList<string> texts, IReadOnlyList<float>? loraScales = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        return await ClassifyIdsAsync([.. texts.Select(t => Tokenizer.Encode(t ?? throw new ArgumentException("a text is null", nameof(texts)), addSpecialTokens: true))],
            loraScales, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// What a reward model makes of a conversation (see <see cref="ClassifyAsync"/>): rendered through the chat template as
    /// it stands, no assistant turn opened after it, as a reward model reads the conversation it rates.
    /// </summary>
    public async Task<TextClassification> ClassifyConversationAsync(IEnumerable<(string Role, string Content)> messages, IReadOnlyList<float>? loraScales = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        int[] ids = Tokenizer.Encode(Tokenizer.ApplyChatTemplate(messages, addGenerationPrompt: false));
        return (await ClassifyIdsAsync([ids], loraScales, cancellationToken).ConfigureAwait(false))[0];
    }

    /// <summary>
    /// Ranks <paramref name="documents"/> by their relevance to <paramref name="query"/>. With a cross-encoder reranker (a
    /// <c>*ForSequenceClassification</c> model with one label) each query and document are read together (see
    /// <see cref="RerankPrompt"/>; <paramref name="template"/> with <c>{query}</c> and <c>{document}</c> for a reranker
    /// trained on a prompt), their last token's hidden state through the score head. With an embedding model
    /// (<see cref="Qwen2.Qwen2Model.IsEmbeddingModel"/>) each is embedded alone, after the prompt sentence-transformers'
    /// <c>encode_query</c> and <c>encode_document</c> would put before it, and the two compared as its
    /// <c>similarity_fn_name</c> says (cosine by default), as vLLM scores with an embedding model. The most relevant first;
    /// ties in the order given. Any other model refuses (<see cref="NotSupportedException"/>).
    /// </summary>
    /// <param name="loraScales">How strongly to apply each of the model's LoRA adapters; null: their own.</param>
    public async Task<IReadOnlyList<DocumentRelevance>> RerankAsync(string query, IReadOnlyList<string> documents, string? template = null,
        IReadOnlyList<float>? loraScales = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(documents);
        Model.RequireRanker(nameof(RerankAsync), Directory);
        if (template is not null)
        {
            RerankPrompt.Check(template, nameof(template));
            if (!Model.IsReranker)
            {
                throw new ArgumentException("a template writes the query and a document as one text for a cross-encoder reranker; an embedding model embeds each alone", nameof(template));
            }
        }

        if (documents.Count == 0)
        {
            return [];
        }

        if (documents.Any(d => d is null))
        {
            throw new ArgumentException("a document is null", nameof(documents));
        }

        if (Model.IsEmbeddingModel)
        {
            Qwen2.EmbeddingConfig config = Model.EmbeddingConfig;
            string queryPrompt = config.RankingPrompt(query: true), documentPrompt = config.RankingPrompt(query: false);
            int[][] texts = [Tokenizer.Encode(queryPrompt + query, addSpecialTokens: true), .. documents.Select(d => Tokenizer.Encode(documentPrompt + d, addSpecialTokens: true))];
            float[]? adapterScales = AdapterScalesFor(null, loraScales, "loraScales");
            float[][] vectors = await EmbedIdsAsync(texts, new TextEmbeddingOptions(), adapterScales, cancellationToken).ConfigureAwait(false);
            return DocumentRelevance.Rank(documents.Select((_, i) =>
            {
                float similarity = (float)Qwen2.EmbeddingSimilarities.Of(config.Similarity, vectors[0], vectors[i + 1]);
                return new DocumentRelevance(i, similarity, similarity, texts[0].Length + texts[i + 1].Length);
            }));
        }

        int[][] ids = [.. documents.Select(d => RerankPrompt.Ids(Tokenizer, query, d, template))];
        IReadOnlyList<TextClassification> scored = await ClassifyIdsAsync(ids, loraScales, cancellationToken).ConfigureAwait(false);
        return DocumentRelevance.Rank(scored.Select((c, i) => new DocumentRelevance(i, c.Scores[0], c.Logits[0], c.TokenCount)));
    }

    /// <summary>What the classifier makes of one text (see <see cref="ClassifyAsync"/>).</summary>
    public TextClassification Classify(string text) => ClassifyAsync([text]).GetAwaiter().GetResult()[0];

    private async Task<IReadOnlyList<TextClassification>> ClassifyIdsAsync(int[][] ids, IReadOnlyList<float>? loraScales, CancellationToken cancellationToken)
    {
        Qwen2.ClassifierHead head = Model.RequireClassifier(nameof(ClassifyAsync), Directory);

        float[]? adapterScales = AdapterScalesFor(null, loraScales, "loraScales");
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await Task.Run(() =>
            {
                _embedder ??= new Embedder(Model);
                float[][] logits = SequenceClassification.Logits(_embedder, ids, cancellationToken, adapterScales);
                return (IReadOnlyList<TextClassification>)[.. logits.Select((l, i) => new TextClassification(head.Labels, l, head.Scores(l), ids[i].Length))];
            }, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>The embedding of one text (see <see cref="EmbedAsync"/>).</summary>
    public float[] Embed(string text, TextEmbeddingOptions? options = null) =>
        EmbedAsync([text], options).GetAwaiter().GetResult().Vectors[0];

    /// <summary>This model as a Microsoft.Extensions.AI embedding generator (see <see cref="EmbedAsync"/>).</summary>
    public IEmbeddingGenerator<string, Embedding<float>> AsEmbeddingGenerator() => new QwenEmbeddingGenerator(this);

    /// <summary>
    /// This model as a Microsoft.Extensions.AI chat client, through its chat template. The client keeps the
    /// KV cache of its conversation, so a growing conversation only reads its new messages.
    /// </summary>
    public IChatClient AsChatClient() => new QwenChatClient(this);

    /// <summary>Writes <paramref name="conversation"/> to a new file at <paramref name="path"/> (see <see cref="QwenChatClient.SaveConversationAsync"/>).</summary>
    internal async Task<long> SaveConversationAsync(ConversationCache conversation, string path, CancellationToken cancellationToken)
    {
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return SlotFile.WriteFile(path, path, stream => conversation.Save(Model, stream));
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>Reads <paramref name="path"/> into <paramref name="conversation"/> (see <see cref="QwenChatClient.LoadConversationAsync"/>).</summary>
    internal async Task<int> LoadConversationAsync(ConversationCache conversation, string path, CancellationToken cancellationToken)
    {
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            return await Task.Run(() => conversation.Load(Model, stream, path), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    public void Dispose()
    {
        _embedder?.Dispose();
        if (_draft is not null)
        {
            _draft.Dispose();
            _draft.Model.Dispose();
        }

        Model.Dispose();
        _backend.Dispose();
        _turn.Dispose();
    }

    /// <summary>
    /// Runs one generation on a worker thread and hands its tokens over as they come; cancelling stops it
    /// before the next forward step.
    /// </summary>
    internal async IAsyncEnumerable<GenerationUpdate> StreamAsync(int[] prompt, TextGenerationOptions options, ConversationCache? conversation,
        bool echoPrompt, [EnumeratorCancellation] CancellationToken cancellationToken, VisionPrompt? vision = null)
    {
        // Room for one update: the worker waits for the reader, so a cancelled reader stops it within one token.
        var channel = Channel.CreateBounded<GenerationUpdate>(new BoundedChannelOptions(1) { SingleReader = true, SingleWriter = true });
        await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        // Cancelled by the caller, or by this method when the reader stops early (a break in await foreach).
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task producer;
        try
        {
            producer = Task.Run(() => Produce(prompt, options, conversation, echoPrompt, vision, channel.Writer, stop.Token), CancellationToken.None);
        }
        catch
        {
            _turn.Release();
            throw;
        }

        try
        {
            await foreach (GenerationUpdate update in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                yield return update;
            }
        }
        finally
        {
            // Leaving early must not leave the worker running on the model, or waiting for a reader that is gone.
            await stop.CancelAsync().ConfigureAwait(false);
            await producer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private void Produce(int[] prompt, TextGenerationOptions options, ConversationCache? conversation, bool echoPrompt, VisionPrompt? vision,
        ChannelWriter<GenerationUpdate> writer, CancellationToken cancellationToken)
    {
        try
        {
            var text = new StopStrings(Tokenizer, options.StopSequences, 1);
            if (echoPrompt)
            {
                // The decoder reads the prompt first so the continuation is spaced as in the whole text.
                text.Prime(0, prompt);
            }

            GenerationOptions generation = GenerationOptionsFor(options, [prompt], text, cancellationToken, textOnly: vision is null);
            GenerationResult result = Generator.Generate(Model, [prompt], generation,
                (_, token, logprobs) => Write(writer, new GenerationUpdate { TokenId = token, Text = text.Release(0, finished: false), Logprobs = logprobs }, cancellationToken),
                conversation, vision is null ? null : [vision]);
            GeneratedSequence sequence = result.Sequences[0];
            Write(writer, new GenerationUpdate
            {
                IsFinal = true,
                Text = text.Release(0, finished: true),
                StopReason = sequence.StopReason,
                PromptTokens = prompt.Length,
                PromptTokensRead = result.PromptTokens,
                GeneratedTokens = sequence.Ids.Count,
                Seed = result.Seed,
                LookupTokens = result.LookupTokens,
            }, cancellationToken);
            writer.TryComplete();
        }
        catch (Exception e)
        {
            writer.TryComplete(e);
        }
        finally
        {
            _turn.Release();
        }
    }

    /// <summary>Waits (on the worker thread) until the reader has taken the previous update.</summary>
    private static void Write(ChannelWriter<GenerationUpdate> writer, GenerationUpdate update, CancellationToken cancellationToken)
    {
        while (!writer.TryWrite(update))
        {
            if (!writer.WaitToWriteAsync(cancellationToken).AsTask().GetAwaiter().GetResult())
            {
                return;
            }
        }
    }

    /// <summary>What <paramref name="options"/> hold each answer to (one of JsonObject, JsonSchema, Choices, Regex and Grammar at most), or null.</summary>
    private Func<ITokenConstraint>? AnswerRule(TextGenerationOptions options)
    {
        string[] given = [.. new (string Name, bool Set)[]
        {
            (nameof(options.JsonObject), options.JsonObject), (nameof(options.JsonSchema), options.JsonSchema is not null),
            (nameof(options.Choices), options.Choices is not null), (nameof(options.Regex), options.Regex is not null),
            (nameof(options.Grammar), options.Grammar is not null),
        }.Where(o => o.Set).Select(o => o.Name)];
        if (given.Length > 1)
        {
            throw new ArgumentException($"{given[0]} and {given[1]} both say what the answer must be: give one", nameof(options));
        }

        return options.JsonSchema is JsonElement schema ? _constrained.JsonSchema(schema)
            : options.JsonObject ? _constrained.JsonObject()
            : options.Choices is { } choices ? _constrained.Choice(choices)
            : options.Regex is { } regex ? _constrained.Regex(regex)
            : options.Grammar is { } grammar ? _constrained.Grammar(grammar)
            : null;
    }

    private GenerationOptions GenerationOptionsFor(TextGenerationOptions options, int[][] prompts, StopStrings text, CancellationToken cancellationToken, bool textOnly = true)
    {
        Generation.PromptLookup.CheckSetting(options.PromptLookup, nameof(TextGenerationOptions.PromptLookup), allowOff: true);
        int longest = prompts.Max(p => p.Length);
        GenerationConfig config = Model.GenerationConfig;
        // Prompts with pictures run without the draft (it reads text only), so only lookup's setting applies to them.
        int? guesses = options.PromptLookup ?? (textOnly ? DefaultGuesses : _promptLookup);
        int maxNew = options.MaxNewTokens ?? config.DefaultMaxNewTokens(longest);
        return new GenerationOptions
        {
            MaxNewTokens = Math.Min(maxNew, Math.Max(0, (options.Context ?? Model.Config.MaxPositionEmbeddings) - longest + 1)),
            Context = options.Context,
            IgnoreEos = options.IgnoreEos,
            EosTokenIds = EosTokenIds,
            Sampling = options.Sampling.Resolve(config).WithDryBreakers(options.Sampling, Tokenizer),
            Logprobs = options.Logprobs,
            StopCondition = text,
            // The chat client's held calls include its response format, when it has one.
            Constraint = options.HeldCalls ?? AnswerRule(options),
            PromptLookup = guesses > 0 ? new PromptLookup(guesses.Value) : null,
            DraftModel = textOnly && guesses > 0 ? _draft : null,
            CancellationToken = cancellationToken,
            AdapterScales = AdapterScalesFor(options.LoraAdapter, options.LoraScales, nameof(TextGenerationOptions.LoraScales)),
        };
    }

    /// <summary>
    /// The scale of each adapter for a call: the one <paramref name="adapter"/> names alone, else <paramref name="scales"/>
    /// (<see cref="TextGenerationOptions.LoraAdapter"/>, <see cref="TextGenerationOptions.LoraScales"/> and their
    /// <see cref="TextEmbeddingOptions"/> twins), or null for their own.
    /// </summary>
    private float[]? AdapterScalesFor(string? adapter, IReadOnlyList<float>? scales, string scalesName)
    {
        IReadOnlyList<Lora.LoraAdapter> adapters = Model.Adapters;
        if (adapter is string name)
        {
            int[] named = [.. Enumerable.Range(0, AdapterNames.Count).Where(i => AdapterNames[i] == name)];
            if (named.Length == 0)
            {
                throw new ArgumentException(
                    $"LoRA adapter '{name}' is not one of the model's ({(adapters.Count == 0 ? "it has none" : string.Join(", ", AdapterNames.Select(n => $"'{n}'")))})",
                    "options");
            }

            if (named.Length > 1)
            {
                // As serve does: a name two adapters share picks neither.
                throw new ArgumentException(
                    $"LoRA adapter name '{name}' is shared by adapters {string.Join(" and ", named)}; give each its own {nameof(LoraAdapterOptions)}.{nameof(LoraAdapterOptions.Name)}, or use {scalesName}",
                    "options");
            }

            return Model.AdapterScalesAlone(named[0]);
        }

        if (scales is { } given)
        {
            if (given.Count != adapters.Count || given.Any(scale => !float.IsFinite(scale)))
            {
                throw new ArgumentException(
                    $"{scalesName} gives {given.Count} scale(s); the model has {adapters.Count} LoRA adapter(s), one finite scale each",
                    "options");
            }

            return [.. given];
        }

        return null;
    }
}
