using QwenSharp.Memory;

namespace QwenSharp.Formats;

/// <summary>
/// Another source's tensors with its matrices quantized at load (<c>--quantize q8_0</c>, <c>q4_k_m</c>): each matrix is
/// converted once, into memory this source owns, with the same quantizer the GGUF export uses, to the type the
/// <see cref="QuantizationMix"/> picks for it (one type, or llama-quantize's per tensor) or, where its rows are not whole
/// blocks of it, to llama.cpp's fallback (<see cref="QuantizationFallback"/>), weighted by the mix's importance matrix where
/// it has one; vectors pass through as stored.
/// </summary>
public sealed unsafe class QuantizingTensorSource : ITensorSource
{
    private readonly ITensorSource _inner;
    private readonly QuantizationMix _mix;
    private readonly ModelShape _shape;
    private readonly Dictionary<string, TensorView> _converted = new(StringComparer.Ordinal);
    private readonly WeightArena _owned = new();

    /// <summary>Every matrix of <paramref name="inner"/> as <paramref name="type"/> (or its fallback).</summary>
    public QuantizingTensorSource(ITensorSource inner, DType type)
        : this(inner, QuantizationMix.Pure(type), default)
    {
    }

    /// <summary>Each matrix of a model of <paramref name="shape"/> as <paramref name="mix"/> picks.</summary>
    public QuantizingTensorSource(ITensorSource inner, QuantizationMix mix, ModelShape shape)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(mix);
        if (!DTypes.IsQuantized(mix.Base))
        {
            throw new ArgumentException($"{DTypes.Name(mix.Base)} is not a quantized type", nameof(mix));
        }

        _inner = inner;
        _mix = mix;
        _shape = shape;
    }

    public string Description => $"{_inner.Description} (quantized to {_mix.Name} at load)";

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

        string ggufName = Gguf.GgufCheckpoint.GgufName(name);
        DType type = view.Shape.Length == 2 ? _mix.TypeOf(ggufName, view.Shape[1], view.DType, _shape) : view.DType;
        if (type == view.DType)
        {
            return true;
        }

        // No kernel reads the lattice types: IQ3's values are held as the Q6_K that has every one of them, IQ2_S's quantized
        // again as Q8_0, as an IQ3 or IQ2 file's are at load.
        Numerics.IqType? lattice = DTypes.IqTypeOf(type);
        DType held = lattice switch { null => type, Numerics.IqType fits when Numerics.IqBlocks.FitsQ6_K(fits) => DType.Q6_K, _ => DType.Q8_0 };
        long bytes = DTypes.ByteLength(held, view.ElementCount);
        byte* data = (byte*)_owned.Allocate(bytes);
        if (lattice is Numerics.IqType iq)
        {
            byte[] iqBytes = new byte[DTypes.ByteLength(type, view.ElementCount)];
            TensorValues.RowsAs(view, type, iqBytes, _mix.ImportanceOf(ggufName, view.Shape[1]));
            if (held == DType.Q6_K)
            {
                Numerics.IqBlocks.ToQ6_K(iq, iqBytes, new Span<byte>(data, checked((int)bytes)));
            }
            else
            {
                // A row at a time: the matrix's values never all stand in f32 at once.
                int columns = checked((int)view.Shape[1]);
                long rowIn = DTypes.ByteLength(type, columns), rowOut = DTypes.ByteLength(held, columns);
                float[] row = new float[columns];
                for (long r = 0; r < view.Shape[0]; r++)
                {
                    Numerics.IqBlocks.Dequantize(iq, iqBytes.AsSpan(checked((int)(r * rowIn)), (int)rowIn), row);
                    Numerics.Q8_0Blocks.Quantize(row, new Span<byte>(data + (r * rowOut), (int)rowOut));
                }
            }
        }
        else
        {
            TensorValues.RowsAs(view, type, new Span<byte>(data, checked((int)bytes)), _mix.ImportanceOf(ggufName, view.Shape[1]));
        }

        view = view with { DType = held, Data = (nint)data };
        _converted[name] = view;
        ConvertedBytes += bytes;
        return true;
    }

    /// <summary>A matrix this source quantized goes back to its arena (and is made again if asked for); the rest are the inner source's to release.</summary>
    public bool Release(TensorView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        foreach ((string name, TensorView converted) in _converted)
        {
            if (ReferenceEquals(converted, view))
            {
                _converted.Remove(name);
                _owned.Free((void*)view.Data);
                ConvertedBytes -= view.ByteLength;
                return true;
            }
        }

        return _inner.Release(view);
    }

    /// <summary>The inner source's matrices let their pages go as it does; those this source quantized stay (they are not a file's).</summary>
    public bool DropPages(TensorView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        return !_converted.Values.Any(converted => converted.Data == view.Data) && _inner.DropPages(view);
    }

    /// <summary>Bytes of the matrices converted at load and not released (for tests).</summary>
    internal long ConvertedBytes { get; private set; }

    public void Dispose()
    {
        _owned.Dispose();
        _inner.Dispose();
    }
}
