using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli;

/// <summary>Sizes that follow from a model's weights: parameters, bytes, bytes its backend reads per decoded token.</summary>
internal sealed record ModelSummary(long Parameters, long WeightBytes, long DecodeBytesPerToken, long KvBytesPerToken,
    IReadOnlyList<(string DType, int Count)> TensorsByDType)
{
    /// <summary>Every weight tensor once (a tied head is the embedding), a Qwen2-VL vision tower's included.</summary>
    public static IReadOnlyCollection<TensorView> TensorsOf(Qwen2Model model) =>
        model.Vision is null ? model.Weights.DistinctTensors() : [.. model.Weights.DistinctTensors(), .. model.Vision.Weights.Tensors];

    public static ModelSummary Of(Qwen2Model model)
    {
        IReadOnlyCollection<TensorView> all = TensorsOf(model);
        long matrixBytes = model.DecodeStepBytes;

        return new ModelSummary(
            all.Sum(t => t.ElementCount),
            all.Sum(t => t.ByteLength),
            matrixBytes,
            model.KvBytesPerToken,
            [.. all.GroupBy(t => DTypes.Name(t.DType)).OrderByDescending(g => g.Count()).Select(g => (g.Key, g.Count()))]);
    }
}
