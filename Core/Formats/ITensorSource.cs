namespace QwenSharp.Formats;

/// <summary>Where a model's tensors come from: a checkpoint on disk, or tensors built in memory.</summary>
public interface ITensorSource : IDisposable
{
    /// <summary>What to name in an error message: "model.safetensors", "model.safetensors.index.json".</summary>
    string Description { get; }

    IEnumerable<string> TensorNames { get; }

    /// <summary>Finds a tensor by its checkpoint name; a dtype we do not compute with is a <see cref="NotSupportedException"/>.</summary>
    bool TryGetView(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorView? view);

    /// <summary>
    /// Says that nothing reads <paramref name="view"/>'s bytes any more (its weight was copied where it is computed with): a
    /// source that made them at load (quantized, widened, reordered) frees them and returns true (the view must not be read
    /// after that; asked for the tensor again, the source makes it again); bytes of the file itself stay (false).
    /// </summary>
    bool Release(TensorView view) => false;

    /// <summary>
    /// Says that <paramref name="view"/>'s bytes are read only now and then (its weight's products read copies the backend
    /// made): a source whose bytes are the mapped file's lets their pages go from the process's memory and returns true; they
    /// are read again from the file (through the page cache) where something does read them. Bytes the source made at load stay.
    /// </summary>
    bool DropPages(TensorView view) => false;
}
