using QwenSharp.Memory;
using QwenSharp.Numerics;
using QwenSharp.Qwen2;

namespace QwenSharp.Formats;

/// <summary>
/// A same-shaped model with random weights, built in memory from a config alone, so a real architecture
/// (Qwen2.5-0.5B's config.json) can be benchmarked without downloading its weights. Matrices are uniform
/// with the standard deviation of the usual N(0, 0.02) initialization, norms are 1, biases small.
/// </summary>
public sealed unsafe class RandomTensorSource : ITensorSource
{
    private readonly Dictionary<string, TensorView> _tensors = new(StringComparer.Ordinal);
    private readonly WeightArena _memory = new();

    public RandomTensorSource(Qwen2Config config, DType dtype, ulong seed = 1)
    {
        Description = $"random {DTypes.Name(dtype)} weights";
        List<TensorView> shapes = Shapes(config, dtype, Description);

        // In one arena, as a file's tensors lie in one mapping (see WeightArena); what was mapped is unmapped again when
        // the memory runs out part way.
        var tensors = new TensorView[shapes.Count];
        try
        {
            for (int i = 0; i < shapes.Count; i++)
            {
                tensors[i] = shapes[i] with { Data = (nint)_memory.Allocate(shapes[i].ByteLength) };
            }
        }
        catch
        {
            _memory.Dispose();
            throw;
        }

        Parallel.For(0, tensors.Length, i => Fill(tensors[i], seed + (ulong)i));
        foreach (TensorView tensor in tensors)
        {
            _tensors[tensor.Name] = tensor;
        }
    }

    public string Description { get; }

    /// <summary>The bytes the weights of <paramref name="config"/> take in <paramref name="dtype"/>, before any is allocated.</summary>
    public static long ByteSize(Qwen2Config config, DType dtype) => Shapes(config, dtype, "").Sum(t => t.ByteLength);

    private static List<TensorView> Shapes(Qwen2Config config, DType dtype, string source)
    {
        var shapes = new List<TensorView>();
        TensorView Add(string name, long[] shape, string meaning, string? why)
        {
            var view = new TensorView(name, source, dtype, shape, 0);
            shapes.Add(view);
            return view;
        }

        Qwen2WeightBinder.Bind(config, Add);
        if (config.Vision is not null)
        {
            Qwen2VL.VisionWeightBinder.Bind(config.Vision, Add);
        }

        return shapes;
    }

    public IEnumerable<string> TensorNames => _tensors.Keys;

    public bool TryGetView(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorView? view) =>
        _tensors.TryGetValue(name, out view);

    private static void Fill(TensorView tensor, ulong seed)
    {
        // Uniform on [-a, a] has standard deviation a / sqrt(3).
        // Norm scales are 1 (RMSNorm's "norm.weight", the vision tower's LayerNorms "norm1/norm2/ln_q.weight").
        bool isNorm = tensor.Shape.Length == 1 && tensor.Name.EndsWith(".weight", StringComparison.Ordinal)
            && (tensor.Name.Contains("norm", StringComparison.Ordinal) || tensor.Name.Contains("ln_q", StringComparison.Ordinal));
        float amplitude = tensor.Shape.Length >= 2 ? 0.02f * MathF.Sqrt(3) : 0.002f;
        ulong state = (seed * 0x9E3779B97F4A7C15UL) | 1;
        long count = tensor.ElementCount;
        for (long i = 0; i < count; i++)
        {
            // xorshift64*: fast, and plenty random for benchmark weights.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            float unit = ((state * 0x2545F4914F6CDD1DUL) >> 40) * (1f / (1 << 24)); // [0, 1)
            float value = isNorm ? 1f : ((2 * unit) - 1) * amplitude;
            switch (tensor.DType)
            {
                case DType.BF16: ((ushort*)tensor.Data)[i] = BFloat16Bits.FromSingle(value); break;
                case DType.F16: ((ushort*)tensor.Data)[i] = HalfBits.FromSingle(value); break;
                default: ((float*)tensor.Data)[i] = value; break;
            }
        }
    }

    public void Dispose()
    {
        _memory.Dispose();
        _tensors.Clear();
    }
}
