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
    public IBackend Device { get; } = Device ?? throw new ArgumentNullException(nameof(Device));

    public int Layers { get; } = Layers >= 0 ? Layers : throw new ArgumentOutOfRangeException(nameof(Layers), Layers, "layers on the device cannot be negative");
}
