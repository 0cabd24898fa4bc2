using QwenSharp.Formats;

namespace QwenSharp.Backend;

/// <summary>
/// The part of a model that runs on a second backend, a GPU, as llama.cpp's <c>--n-gpu-layers</c> places it: the last
/// <see cref="Layers"/> decoder layers (their weights, their keys and values); with more than the model has, all of them
/// and the final norm and LM head too. The token embedding and the layers before stay on the model's own backend.
/// The residual stream crosses between the two (a step's rows × hidden_size floats): to the device before its first
/// layer, and back for the LM head unless that is on the device too. The model owns <see cref="Device"/> and disposes it.
/// </summary>
/// <param name="Device">The backend the offloaded part runs on.</param>
/// <param name="Layers">How many of the last layers it runs: 0 to the model's layers + 1 (larger counts are taken as that, as llama.cpp's -ngl 99).</param>
public sealed record LayerOffload(IBackend Device, int Layers)
{
    /// <summary>The KV cache positions <see cref="Fitting"/> leaves room for unless told: a 4096-token conversation.</summary>
    public const int DefaultFitPositions = 4096;

    public IBackend Device { get; } = Device ?? throw new ArgumentNullException(nameof(Device));

    public int Layers { get; } = Layers >= 0 ? Layers : throw new ArgumentOutOfRangeException(nameof(Layers), Layers, "layers on the device cannot be negative");

    /// <summary>
    /// Where the layers are not counted but fitted (<see cref="Fitting"/>): the KV cache they leave room for. Null: <see cref="Layers"/> as given.
    /// </summary>
    public KvReserve? Fit { get; private init; }

    /// <summary>
    /// As many of the model's last layers as the device's free memory holds (then the final norm and LM head too, when every
    /// layer fits), decided at load: each layer's weights and its keys and values for <paramref name="positions"/> positions
    /// stored as <paramref name="kvCacheType"/>, beside the activations of a 512-row prefill step. A device that does not say
    /// its free memory takes the whole model; one that holds not even one layer, none (the model then runs on its own backend).
    /// </summary>
    public static LayerOffload Fitting(IBackend device, int positions = DefaultFitPositions, DType kvCacheType = DType.F32)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(positions);
        KvCache.CheckType(kvCacheType);
        return new LayerOffload(device, int.MaxValue) { Fit = new KvReserve(positions, kvCacheType) };
    }
}

/// <summary>The KV cache a fitted <see cref="LayerOffload"/> leaves room for: <paramref name="Positions"/> positions (every sequence's together) of <paramref name="Type"/>.</summary>
public sealed record KvReserve(int Positions, DType Type);
