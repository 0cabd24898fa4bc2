namespace QwenSharp;

/// <summary>How to load a model folder.</summary>
public sealed record QwenModelOptions
{
    /// <summary>"cpu" (the only device in this build).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Threads for the kernels; null uses every core.</summary>
    public int? Threads { get; init; }
}
