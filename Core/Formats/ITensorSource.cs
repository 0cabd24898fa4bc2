namespace QwenSharp.Formats;

/// <summary>Where a model's tensors come from: a checkpoint on disk, or tensors built in memory.</summary>
public interface ITensorSource : IDisposable
{
    /// <summary>What to name in an error message: "model.safetensors", "model.safetensors.index.json".</summary>
    string Description { get; }

    IEnumerable<string> TensorNames { get; }

    /// <summary>Finds a tensor by its checkpoint name; a dtype we do not compute with is a <see cref="NotSupportedException"/>.</summary>
    bool TryGetView(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorView? view);
}
