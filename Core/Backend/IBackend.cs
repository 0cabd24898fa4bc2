using QwenSharp.Formats;

namespace QwenSharp.Backend;

/// <summary>
/// The coarse operations the forward pass is written against. Tensors are backend-owned handles, so a GPU
/// backend keeps weights, activations and the KV cache on the device and only logits come back
/// (<see cref="Download"/>). Every operation works on all rows of a step at once: one row per token, the
/// tokens of several sequences side by side, told apart by their slot and position.
/// A backend runs one operation at a time; it is not safe to call from two threads at once.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>For people: "cpu, Vector512, 2 threads".</summary>
    string Description { get; }

    /// <summary>
    /// Refuses, before any weight is uploaded, a model whose <paramref name="bytes"/> of weights do not fit the
    /// memory the backend has, with needed against available; <paramref name="what"/> names the model.
    /// </summary>
    void CheckWeightMemory(long bytes, string what)
    {
    }

    /// <summary>Makes a stored weight ready: wrap, repack or upload. Matrices are [out, in]; vectors one row.</summary>
    DeviceWeight Upload(TensorView tensor);

    DeviceBuffer Allocate(int rows, int cols);

    KvCache CreateKvCache(int layers, int slots, int capacity, int kvDim);

    /// <summary>x[i] = table[tokens[i]].</summary>
    void Embed(DeviceWeight table, ReadOnlySpan<int> tokens, Activation x);

    /// <summary>y = x / sqrt(mean(x²) + eps) * weight, per row, accumulated in f32.</summary>
    void RmsNorm(Activation x, DeviceWeight weight, float eps, Activation y);

    /// <summary>y = x · Wᵀ + bias, W of [out, in] in its stored type; <paramref name="bias"/> may be null.</summary>
    void Linear(Activation x, DeviceWeight weight, DeviceWeight? bias, Activation y);

    /// <summary>Rotates every head of q and k by its row's position (NeoX rotate_half form).</summary>
    void Rope(Activation q, Activation k, ReadOnlySpan<int> positions, AttentionShape shape);

    /// <summary>
    /// Writes each row's k and v into the cache at (slot, position) of <paramref name="layer"/>, then for every
    /// row and head attends causally over positions 0..position of that row's slot.
    /// </summary>
    void Attention(Activation q, Activation k, Activation v, KvCache cache, int layer,
        ReadOnlySpan<int> slots, ReadOnlySpan<int> positions, AttentionShape shape, Activation output);

    /// <summary>
    /// The SwiGLU MLP, <c>y = down(silu(gate(x)) * up(x))</c>; gate and up are scratch of
    /// [rows, intermediate_size]. y may be the same buffer as x.
    /// </summary>
    void SwiGlu(Activation x, DeviceWeight gate, DeviceWeight up, DeviceWeight down,
        Activation gateScratch, Activation upScratch, Activation y);

    /// <summary>x += y (the residual connection).</summary>
    void Add(Activation x, Activation y);

    /// <summary>destination[i] = source[rows[i]].</summary>
    void GatherRows(Activation source, ReadOnlySpan<int> rows, Activation destination);

    /// <summary>Copies host values into activations (test inputs, features computed elsewhere).</summary>
    void Write(ReadOnlySpan<float> source, Activation destination);

    /// <summary>Copies activations to host memory; the only way results leave the backend.</summary>
    void Download(Activation source, Span<float> destination);
}
