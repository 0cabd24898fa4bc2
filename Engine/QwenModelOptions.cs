namespace QwenSharp;

/// <summary>How to load a model folder.</summary>
public sealed record QwenModelOptions
{
    /// <summary>Where <see cref="QwenModel.LoadAsync"/> finds or downloads a model named as on the Hugging Face Hub (default: its cache and https://huggingface.co).</summary>
    public Hub.HubOptions? Hub { get; init; }

    /// <summary>
    /// A smaller model with the same tokenizer (a folder, GGUF file or Hub name) that guesses the next tokens, which the model
    /// checks in one step (<see cref="Generation.DraftModel"/>): the tokens are those without it, more than one a step where
    /// the guesses hold. Loaded as stored, on the same device. Guesses a step: <see cref="PromptLookup"/>, else 4.
    /// </summary>
    public string? DraftModel { get; init; }

    /// <summary>
    /// LoRA adapters to add to the model's projections: PEFT folders (adapter_config.json and adapter_model.safetensors),
    /// GGUF adapters or Hub names, each at its scale (1: as trained), applied at run time as llama.cpp's <c>--lora</c> does,
    /// so the stored weights stay as they are (mapped, quantized).
    /// </summary>
    public IReadOnlyList<LoraAdapterOptions> LoraAdapters { get; init; } = [];

    /// <summary>"cpu", "gpu" (the first discrete GPU, else integrated, else any Vulkan device) or "gpu:N" (see <c>qwensharp devices</c>).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>
    /// With <see cref="Device"/> a GPU: how many of the model's last layers run there, the rest and the token embedding on
    /// the CPU (<see cref="Threads"/>), as llama.cpp's <c>--n-gpu-layers</c> places them. One more than the model's layers
    /// puts the final norm and LM head there too (larger counts are taken as that); 0 runs the whole model on the CPU. For
    /// a model larger than the GPU's memory: the load's error for one that does not fit says how many layers do, and
    /// <see cref="AutoGpuLayers"/> places as many as fit. Null: the whole model on the GPU, the embedding too. A draft model
    /// runs on the CPU beside a split model.
    /// </summary>
    public int? GpuLayers { get; init; }

    /// <summary>
    /// <see cref="GpuLayers"/> for as many of the last layers as the GPU's free memory holds, decided at load (as llama.cpp's
    /// <c>--fit</c>): from the last layer back, each layer's weights and its share of a KV cache of
    /// <see cref="GpuFitPositions"/> positions, beside room for a 512-row prefill step's activations; then the LM head
    /// when every layer fits. <see cref="QwenModel.Model"/>'s <c>LoadNote</c> and <c>Placement</c> say what was placed.
    /// </summary>
    public const int AutoGpuLayers = -1;

    /// <summary>
    /// With <see cref="GpuLayers"/> = <see cref="AutoGpuLayers"/>: the KV cache positions, every sequence's together, to
    /// leave room for on the GPU (stored as <see cref="KvCacheType"/>); null: 4096. A larger cache later may not fit.
    /// </summary>
    public int? GpuFitPositions { get; init; }

    /// <summary>
    /// What to convert the model's matrices to at load: a quantized type (<c>DType.Q8_0</c>, every matrix) or one of
    /// llama-quantize's mixes (<c>QuantizationMix.Mixes</c>: Q4_K_M and others, tensor by tensor); null keeps them as stored.
    /// </summary>
    public QwenSharp.Formats.QuantizationMix? Quantize { get; init; }

    /// <summary>
    /// How the KV cache stores keys and values: F32 (exact), F16 or BF16 (half the memory, so twice the context or
    /// sequences; attention over a long context reads half the bytes; each value rounded to nearest once as it is written),
    /// or Q8_0 or Q4_0 (34 or 18 bytes per 32 values, 53% or 28% of F16; each head rotated and quantized as llama.cpp's
    /// q8_0 and q4_0 caches do; heads of whole blocks of 32).
    /// </summary>
    public QwenSharp.Formats.DType KvCacheType { get; init; } = QwenSharp.Formats.DType.F32;

    /// <summary>Threads for the CPU kernels; null uses every core.</summary>
    public int? Threads { get; init; }

    /// <summary>
    /// On the CPU, every step of up to 7 rows gives each row exactly the bits it gets alone: a batch of up to 7 sequences, and
    /// prompt lookup (<see cref="PromptLookup"/>), then give exactly the tokens of each sequence decoded one token at a time.
    /// Without it such steps multiply repacked Q8_0, Q4_0 and Q4_K matrices through panels, about twice as fast, whose sums
    /// differ in the last bits, so tokens may differ at near-ties. The GPU's kernels give each row its bits alone anyway.
    /// </summary>
    public bool BatchInvariant { get; init; }

    /// <summary>
    /// Prompt lookup for every generation of this model, the chat client's too, unless
    /// <see cref="TextGenerationOptions.PromptLookup"/> says otherwise: up to this many guessed tokens a step (1 to
    /// <see cref="Generation.PromptLookup.MaxDraftTokens"/>), checked in the same step; the same tokens as without (up to
    /// near-ties on the CPU's repacked panels, exactly with <see cref="BatchInvariant"/>). Null: off.
    /// </summary>
    public int? PromptLookup { get; init; }
}

/// <summary>A LoRA adapter for <see cref="QwenModelOptions.LoraAdapters"/>: a PEFT folder, a GGUF adapter or a Hub name, and how strongly to apply it.</summary>
/// <param name="Path">The folder, file or Hub name (owner/name).</param>
/// <param name="Scale">Multiplies the adapter's own scaling (lora_alpha / r): 1 applies it as trained, 0 not at all.</param>
public sealed record LoraAdapterOptions(string Path, float Scale = 1f)
{
    /// <summary>
    /// What a server's requests call it (their <c>model</c>, as vLLM's <c>--lora-modules NAME=PATH</c>); null: the Hub name as
    /// given, else the folder's or GGUF file's name.
    /// </summary>
    public string? Name { get; init; }

    /// <summary>The name of an adapter at <paramref name="path"/>: a GGUF file's name without .gguf, or the folder's name.</summary>
    public static string NameOf(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string name = System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(path));
        return name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? name[..^5] : name;
    }
}
