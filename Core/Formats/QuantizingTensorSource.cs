using QwenSharp.Memory;

namespace QwenSharp.Formats;

/// <summary>
/// Another source's tensors with its matrices quantized at load (<c>--quantize q8_0</c>): each matrix whose rows are
/// whole blocks is converted once, into memory this source owns, with the same quantizer the GGUF export uses;
/// vectors and other matrices pass through as stored.
/// </summary>
public sealed unsafe class QuantizingTensorSource : ITensorSource
{
    private readonly ITensorSource _inner;
    private readonly DType _type;
    private readonly Dictionary<string, TensorView> _converted = new(StringComparer.Ordinal);
    private readonly WeightArena _owned = new();

    public QuantizingTensorSource(ITensorSource inner, DType type)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (!DTypes.IsQuantized(type))
        {
            throw new ArgumentException($"{DTypes.Name(type)} is not a quantized type", nameof(type));
        }

        _inner = inner;
        _type = type;
    }

    public string Description => $"{_inner.Description} (quantized to {DTypes.Name(_type)} at load)";

    public IEnumerable<string> TensorNames => _inner.TensorNames;

    public bool TryGetView(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorView? view)
    {
        if (_converted.TryGetValue(name, out view))
        {
            return true;
        }

        if (!_inner.TryGetView(name, out view))
        {
            return false;
        }

        if (view.Shape.Length != 2 || view.DType == _type || view.Shape[1] % DTypes.BlockValues(_type) != 0)
        {
            return true;
        }

        long bytes = DTypes.ByteLength(_type, view.ElementCount);
        byte* data = (byte*)_owned.Allocate(bytes);
        TensorValues.RowsAs(view, _type, new Span<byte>(data, checked((int)bytes)));
        view = view with { DType = _type, Data = (nint)data };
        _converted[name] = view;
        return true;
    }

    public void Dispose()
    {
        _owned.Dispose();
        _inner.Dispose();
    }
}
