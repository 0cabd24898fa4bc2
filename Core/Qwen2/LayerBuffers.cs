using QwenSharp.Backend;

namespace QwenSharp.Qwen2;

/// <summary>
/// The activations decoder layers work in, on one backend: the residual stream and each block's scratch. A model split
/// between two backends (<see cref="LayerOffload"/>) has a set on each; a backend that only embeds tokens or runs the LM
/// head holds only the residual stream.
/// </summary>
internal sealed class LayerBuffers : IDisposable
{
    private readonly DeviceBuffer[] _owned;
    private readonly DeviceBuffer? _xb, _q, _k, _v, _attentionOut, _gate, _up;

    public LayerBuffers(IBackend backend, Qwen2Config config, int maxRows, bool runsLayers)
    {
        Backend = backend;
        X = backend.Allocate(maxRows, config.HiddenSize);
        if (runsLayers)
        {
            _xb = backend.Allocate(maxRows, config.HiddenSize);
            _q = backend.Allocate(maxRows, config.QDim);
            _k = backend.Allocate(maxRows, config.KvDim);
            _v = backend.Allocate(maxRows, config.KvDim);
            _attentionOut = backend.Allocate(maxRows, config.QDim);
            _gate = backend.Allocate(maxRows, config.IntermediateSize);
            _up = backend.Allocate(maxRows, config.IntermediateSize);
            _owned = [X, _xb, _q, _k, _v, _attentionOut, _gate, _up];
        }
        else
        {
            _owned = [X];
        }
    }

    public IBackend Backend { get; }

    public DeviceBuffer X { get; }                             // [rows, hidden]: the residual stream

    public DeviceBuffer Xb => _xb ?? NoLayers();               // [rows, hidden]: normed input of a block, then its output

    public DeviceBuffer Q => _q ?? NoLayers();                 // [rows, heads * head_dim]

    public DeviceBuffer K => _k ?? NoLayers();                 // [rows, kv_heads * head_dim]

    public DeviceBuffer V => _v ?? NoLayers();                 // [rows, kv_heads * head_dim]

    public DeviceBuffer AttentionOut => _attentionOut ?? NoLayers();  // [rows, heads * head_dim]

    public DeviceBuffer Gate => _gate ?? NoLayers();           // [rows, intermediate]

    public DeviceBuffer Up => _up ?? NoLayers();               // [rows, intermediate]

    private DeviceBuffer NoLayers() => throw new InvalidOperationException($"the {Backend.Description} backend runs no layers of this model");

    public void Dispose()
    {
        foreach (DeviceBuffer buffer in _owned)
        {
            buffer.Dispose();
        }
    }
}
