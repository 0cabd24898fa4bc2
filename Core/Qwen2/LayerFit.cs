using QwenSharp.Backend;
using QwenSharp.Formats;

namespace QwenSharp.Qwen2;

/// <summary>
/// How many of a model's last layers a device holds (<see cref="LayerOffload.Fitting"/>, <c>--gpu-layers auto</c>), as
/// llama.cpp's <c>--fit</c> places them: from the last layer back, each layer's weights and its share of the KV cache while
/// they fit in the device's free memory less the room a step's activations take; then the final norm and LM head, when every
/// layer fits and they do too. Counted from the model's tensors and shape before anything is uploaded.
/// </summary>
internal static class LayerFit
{
    /// <summary>The rows of the largest step the room for activations is kept for: a prefill chunk (<c>GenerationOptions.PrefillChunk</c>).</summary>
    public const int StepRows = 512;

    /// <summary>Rows of logits kept room for: sequences of a batch, or a step's guessed tokens.</summary>
    private const int LogitRows = 16;

    /// <summary>What a device takes besides the model's buffers: its staging of each step's inputs, its own scratch.</summary>
    private const long BackendOverhead = 64L << 20;

    /// <summary>
    /// The layers to offload: 0 to <paramref name="config"/>'s layers + 1 (the head too), or the whole model where
    /// <paramref name="device"/> does not say how much memory it has free.
    /// </summary>
    public static int Layers(Qwen2Config config, Qwen2Weights<TensorView> views, IBackend device, KvReserve reserve)
    {
        int layers = config.NumHiddenLayers;
        if (device.AvailableMemory is not long available)
        {
            return layers + 1;
        }

        long budget = available - ActivationBytes(config);
        (int fit, long used) = LastLayersWithin(views, device, budget, KvCache.BytesPerToken(1, config.KvDim, reserve.Type) * reserve.Positions);
        return fit == layers && used + HeadBytes(views, device) <= budget ? layers + 1 : fit;
    }

    /// <summary>
    /// The most of the model's last layers whose weights on <paramref name="device"/>, each with <paramref name="extraPerLayer"/>
    /// bytes besides (its share of a KV cache), fit in <paramref name="budget"/> bytes, and the bytes they take.
    /// </summary>
    public static (int Layers, long Bytes) LastLayersWithin(Qwen2Weights<TensorView> views, IBackend device, long budget, long extraPerLayer)
    {
        int layers = views.Layers.Count, fit = 0;
        long used = 0;
        for (; fit < layers; fit++)
        {
            long layer = WeightBytes(views, device, layers - 1 - fit) + extraPerLayer;
            if (used + layer > budget)
            {
                break;
            }

            used += layer;
        }

        return (fit, used);
    }

    /// <summary>Bytes of layer <paramref name="layer"/>'s weights as <paramref name="device"/> holds them.</summary>
    public static long WeightBytes(Qwen2Weights<TensorView> views, IBackend device, int layer) => views.Layers[layer].Tensors.Sum(device.UploadBytes);

    /// <summary>Bytes of the final norm and LM head as <paramref name="device"/> holds them.</summary>
    public static long HeadBytes(Qwen2Weights<TensorView> views, IBackend device) => device.UploadBytes(views.Norm) + device.UploadBytes(views.LmHead);

    /// <summary>
    /// Room for a <see cref="StepRows"/>-row step on the device: the residual stream and each block's scratch
    /// (<see cref="LayerBuffers"/>), half-precision copies of the widest product's input for matrix units, the logits of
    /// <see cref="LogitRows"/> rows, and the backend's own overhead.
    /// </summary>
    public static long ActivationBytes(Qwen2Config config)
    {
        long perRow = (2L * config.HiddenSize) + (2L * config.QDim) + (2L * config.KvDim) + (2L * config.IntermediateSize);
        long halfCopies = 2L * Math.Max(config.HiddenSize, config.IntermediateSize) * sizeof(ushort);
        return (StepRows * ((perRow * sizeof(float)) + halfCopies)) + (LogitRows * (long)config.VocabSize * sizeof(float)) + BackendOverhead;
    }
}
