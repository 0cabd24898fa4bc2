namespace QwenSharp.Backend;

/// <summary>The elementwise nonlinearities of <see cref="IBackend.Activate"/>.</summary>
public enum ActivationFunction
{
    /// <summary>x · sigmoid(1.702 x), CLIP's approximation (Qwen2-VL's vision MLP, transformers' quick_gelu).</summary>
    QuickGelu,

    /// <summary>x · Φ(x) = x/2 · (1 + erf(x/√2)), the exact GELU (PyTorch's nn.GELU(); Qwen2-VL's patch merger).</summary>
    Gelu,
}
