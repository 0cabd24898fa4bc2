namespace QwenSharp.Sampling;

/// <summary>transformers' TemperatureLogitsWarper: logits divided by the temperature, before any filter, so it changes the gaps the filters see.</summary>
public static class Temperature
{
    public static void Apply(Span<float> logits, float temperature)
    {
        if (temperature == 1f)
        {
            return;
        }

        System.Numerics.Tensors.TensorPrimitives.Divide(logits, temperature, logits);
    }
}
