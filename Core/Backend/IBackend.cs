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

    /// <summary>Bytes of memory free for weights and caches where the backend knows it (a GPU's), else null.</summary>
    long? AvailableMemory => null;

    /// <summary>Bytes of memory <see cref="Upload"/> takes for <paramref name="tensor"/> (for <see cref="CheckWeightMemory"/>): its stored bytes unless it is stored again in another type.</summary>
    long UploadBytes(TensorView tensor) => tensor.ByteLength;

    /// <summary>
    /// The type <see cref="Upload"/> multiplies a matrix stored as <paramref name="stored"/>, of <paramref name="rows"/> ×
    /// <paramref name="cols"/>, as: a wider type that holds every value where the backend has no kernel for the stored one
    /// (<see cref="Widening"/>), else the stored type. For the load note.
    /// </summary>
    DType MultipliesAs(DType stored, long rows, long cols) => Widening.Target(stored) ?? stored;

    /// <summary>Makes a stored weight ready: wrap, repack or upload. Matrices are [out, in]; vectors one row.</summary>
    DeviceWeight Upload(TensorView tensor);

    /// <summary>
    /// <see cref="Upload"/> for a table only <see cref="Embed"/> reads (an embedding not tied to the head): a backend that
    /// repacks matrices for its products leaves it as stored.
    /// </summary>
    DeviceWeight UploadTable(TensorView tensor) => Upload(tensor);

    DeviceBuffer Allocate(int rows, int cols);

    /// <summary>
    /// A cache of keys and values stored as <paramref name="elementType"/> (F32, or F16/BF16 where
    /// <see cref="StoresKvCacheAs"/> says so).
    /// </summary>
    KvCache CreateKvCache(int layers, int slots, int capacity, int kvDim, DType elementType = DType.F32);

    /// <summary>Whether <see cref="CreateKvCache"/> can store keys and values as <paramref name="elementType"/>.</summary>
    bool StoresKvCacheAs(DType elementType) => elementType == DType.F32;

    /// <summary>x[i] = table[tokens[i]].</summary>
    void Embed(DeviceWeight table, ReadOnlySpan<int> tokens, Activation x);

    /// <summary>y = x / sqrt(mean(x²) + eps) * weight, per row, accumulated in f32.</summary>
    void RmsNorm(Activation x, DeviceWeight weight, float eps, Activation y);

    /// <summary>y = x · Wᵀ + bias, W of [out, in] in its stored type; <paramref name="bias"/> may be null.</summary>
    void Linear(Activation x, DeviceWeight weight, DeviceWeight? bias, Activation y);

    /// <summary>
    /// The attention's three projections of one input: q = x · Wqᵀ + bq, k = x · Wkᵀ + bk, v = x · Wvᵀ + bv (biases may
    /// be null). A backend may run them as one pass; by default they are three <see cref="Linear"/>s.
    /// </summary>
    void QkvProjection(Activation x, DeviceWeight wq, DeviceWeight? bq, Activation q, DeviceWeight wk, DeviceWeight? bk, Activation k,
        DeviceWeight wv, DeviceWeight? bv, Activation v)
    {
        Linear(x, wq, bq, q);
        Linear(x, wk, bk, k);
        Linear(x, wv, bv, v);
    }

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

    /// <summary>
    /// gate = silu(gate) * up elementwise, the middle of <see cref="SwiGlu"/> on its own (for a model whose gate, up or
    /// down projection carries a LoRA update).
    /// </summary>
    void SiluMultiply(Activation gate, Activation up);

    /// <summary>x += y (the residual connection).</summary>
    void Add(Activation x, Activation y);

    /// <summary>
    /// x *= factors elementwise, the two the same shape (each row's own weights of the LoRA adapters, on the products with
    /// their A matrices, when a step's sequences run with different adapters).
    /// </summary>
    void Multiply(Activation x, Activation factors);

    /// <summary>destination[i] = source[rows[i]].</summary>
    void GatherRows(Activation source, ReadOnlySpan<int> rows, Activation destination);

    /// <summary>Copies host values into activations (test inputs, features computed elsewhere).</summary>
    void Write(ReadOnlySpan<float> source, Activation destination);

    /// <summary>Copies host rows (of destination's width) into rows <paramref name="firstRow"/>.. of <paramref name="destination"/>.</summary>
    void WriteRows(ReadOnlySpan<float> source, Activation destination, int firstRow);

    /// <summary>
    /// Rotates every head of q and k by angles given per row: <paramref name="cos"/> and <paramref name="sin"/> are
    /// [rows, head_dim/2], pair i of a head in the rotate_half form (Qwen2-VL's M-RoPE and its vision tower's 2-D RoPE).
    /// </summary>
    void RopeTable(Activation q, Activation k, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, AttentionShape shape);

    /// <summary>y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, per row (the vision tower's LayerNorm).</summary>
    void LayerNorm(Activation x, DeviceWeight weight, DeviceWeight bias, float eps, Activation y);

    /// <summary>x = f(x) elementwise, in place.</summary>
    void Activate(Activation x, ActivationFunction function);

    /// <summary>
    /// Bidirectional attention within segments of rows (the patches of one picture): rows
    /// <c>segmentStarts[s]..segmentStarts[s+1]-1</c> attend to each other and to no other row; the last entry is the
    /// row count (transformers' <c>cu_seqlens</c>). Scores scaled by 1/sqrt(head_dim); no cache is involved. Query heads
    /// share key-value heads in equal groups, as in <see cref="Attention"/>.
    /// </summary>
    void SegmentAttention(Activation q, Activation k, Activation v, ReadOnlySpan<int> segmentStarts, AttentionShape shape, Activation output);

    /// <summary>Copies activations to host memory; the only way results leave the backend.</summary>
    void Download(Activation source, Span<float> destination);

    /// <summary>
    /// Runs <paramref name="body"/> for each of 0 .. <paramref name="count"/> − 1 on the host threads this backend computes
    /// with, and returns when all have run: a step's host work that splits by sequence (each one's token choice, a scan of
    /// a vocabulary's logits), which on one thread grows with the batch while the step's matrix work hardly does. Each call
    /// of <paramref name="body"/> must touch only its own item's state and catch its own exceptions (one that escapes may
    /// leave other items not run). By default one after another on the calling thread; the CPU backend runs them on its
    /// kernel threads, the GPU backend on host threads of its own.
    /// </summary>
    void ForEachOnHost(int count, Action<int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        for (int i = 0; i < count; i++)
        {
            body(i);
        }
    }
}
