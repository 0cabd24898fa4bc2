using System.Diagnostics;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;

namespace QwenSharp.Cli;

/// <summary>What <see cref="VisionBench.Measure"/> found for one picture and the prompt around it.</summary>
internal sealed record VisionBenchResult(
    int Width, int Height, int Patches, int ImageTokens,
    double PreprocessSeconds, double EncoderSeconds, double EncoderGflops, double MatmulGflopPerSecond,
    double TextPrefillGflopPerSecond, int PromptTokens, double PromptPrefillTokensPerSecond, double DecodeTokensPerSecond)
{
    /// <summary>The vision tower's matmul rate as a fraction of the text prefill's (the target is at least 0.6).</summary>
    public double MatmulFractionOfPrefill => MatmulGflopPerSecond / TextPrefillGflopPerSecond;

    public double PreprocessFraction => PreprocessSeconds / EncoderSeconds;
}

/// <summary>
/// bench on a Qwen2-VL model: a 448x448 picture (1024 patches) through the processor and the vision tower, its
/// GFLOP/s against the text prefill's in the same run, and prefill/decode of a prompt with the picture in it.
/// </summary>
internal static class VisionBench
{
    public const int Side = 448;

    /// <summary>FLOPs of a text prefill of <paramref name="tokens"/> tokens per sequence: its matmuls (no LM head but one row) and causal attention.</summary>
    public static double TextPrefillFlops(Qwen2Config c, int tokens, int sequences)
    {
        double perToken = c.NumHiddenLayers * (((double)c.HiddenSize * (c.QDim + (2.0 * c.KvDim))) + ((double)c.QDim * c.HiddenSize) + (3.0 * c.HiddenSize * c.IntermediateSize));
        double attention = c.NumHiddenLayers * 2.0 * c.QDim * tokens * (tokens + 1) / 2.0;
        return 2.0 * sequences * ((perToken * tokens) + attention + ((double)c.HiddenSize * c.VocabSize));
    }

    public static VisionBenchResult Measure(Qwen2Model model, double textPrefillGflopPerSecond, int newTokens)
    {
        VisionTower tower = model.Vision!;
        ImageProcessorConfig processor = model.ImageProcessor!;
        var random = new Random(1234);
        var rgb = new byte[Side * Side * 3];
        random.NextBytes(rgb);
        var image = new RgbImage(Side, Side, rgb, "random 448x448 picture");

        // Warm-up (JIT, first-touch of the weights), then the median of three runs of each part.
        ImagePatches patches = ImageProcessor.Process(image, processor);
        tower.Encode([patches]);
        double preprocess = Median(() => ImageProcessor.Process(image, processor));
        double encoder = Median(() => tower.Encode([patches]));
        double flops = tower.Flops(patches.Patches);
        double matmulFlops = MatmulFlops(tower.Config, patches.Patches);

        // A prompt with the picture in the middle: text, <|vision_start|>, its pads, <|vision_end|>, text.
        Qwen2Config c = model.Config;
        int imageTokens = patches.Patches / tower.Config.MergeUnit;
        int[] Text(int n) => [.. Enumerable.Range(0, n).Select(_ => random.Next(1000, 100000))];
        int[] prompt = [.. Text(32), c.VisionStartTokenId!.Value, .. Enumerable.Repeat(c.ImageTokenId!.Value, imageTokens), c.VisionStartTokenId.Value + 1, .. Text(32)];
        VisionPrompt vision = VisionPrompt.Create(model, prompt, [patches]);
        GenerationResult result = Generator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = newTokens + 1, IgnoreEos = true }, vision: [vision]);

        return new VisionBenchResult(Side, Side, patches.Patches, imageTokens, preprocess, encoder, flops / 1e9, matmulFlops / encoder / 1e9,
            textPrefillGflopPerSecond, prompt.Length, result.PrefillTokensPerSecond, result.DecodeTokensPerSecond);
    }

    /// <summary>The matmuls of the tower alone: patch embedding, the blocks' projections and MLPs, the merger.</summary>
    private static double MatmulFlops(VisionConfig c, int patches) =>
        2.0 * patches * (((double)c.PatchValues * c.EmbedDim)
            + (c.Depth * ((4.0 * c.EmbedDim * c.EmbedDim) + (2.0 * c.EmbedDim * c.MlpDim)))
            + ((double)c.EmbedDim * ((c.EmbedDim * c.MergeUnit) + c.HiddenSize)));

    private static double Median(Action run)
    {
        var times = new double[3];
        for (int i = 0; i < times.Length; i++)
        {
            var clock = Stopwatch.StartNew();
            run();
            times[i] = clock.Elapsed.TotalSeconds;
        }

        Array.Sort(times);
        return times[1];
    }
}
