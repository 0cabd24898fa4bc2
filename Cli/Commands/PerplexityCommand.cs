using System.Diagnostics;
using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp perplexity</c>: sliding-window perplexity of a text file, as Hugging Face's perplexity guide
/// computes it: windows of --context tokens starting every --stride tokens; each window scores only the
/// tokens the previous one did not, with all of its earlier tokens as context.
/// </summary>
internal sealed class PerplexityCommand : ICommand
{
    public string Name => "perplexity";

    public string Summary => "sliding-window perplexity of a text file";

    public string Usage => "qwensharp perplexity [--model DIR] --file F [--context N] [--stride S] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("file", "F", "the UTF-8 text file to measure"),
        new("context", "N", "tokens per window (default: the model's context, at most 2048)"),
        new("stride", "S", "tokens between window starts (default: the context, i.e. no overlap)"),
        new("json", null, "print JSON: {\"perplexity\",\"mean_nll\",\"tokens\",\"scored_tokens\",\"windows\",\"tokens_per_s\"}"),
        ModelLoading.Threads,
        ModelLoading.Quantize,
        ModelLoading.Lora,
        ModelLoading.LoraScale,
        ModelLoading.KvCacheType,
        ModelLoading.Device,
        ModelLoading.GpuLayers,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp perplexity --file story.txt",
        "qwensharp perplexity --model ~/models/Qwen2.5-0.5B-Instruct --file wiki.test.raw --context 512 --stride 256 --json",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string file = args.Value("file") ?? throw new UsageException("perplexity needs --file F");
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        int[] ids = TextInput.LoadTokenizer(directory).Encode(TextInput.ReadUtf8File(file), addSpecialTokens: true);
        if (ids.Length < 2)
        {
            throw new UsageException($"--file {file}: {ids.Length} token{(ids.Length == 1 ? "" : "s")}; perplexity needs at least 2");
        }

        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            int context = ModelLoading.Context(args, model.Config, min: 2) ?? Math.Min(model.Config.MaxPositionEmbeddings, 2048);
            int stride = args.Int("stride", 1, context) ?? context;
            var clock = Stopwatch.StartNew();
            var progress = ProgressBar.For(stderr, "perplexity", ids.Length);
            double totalNll = 0;
            int scored = 0, windows = 0, previousEnd = 0, read = 0;
            for (int begin = 0; previousEnd < ids.Length; begin += stride)
            {
                int end = Math.Min(begin + context, ids.Length);
                // Targets previousEnd..end-1 (never token 0, which nothing predicts), each from everything before it in the window.
                ScoreResult window = Scorer.Score(model, ids[begin..end], top: 0);
                for (int target = Math.Max(previousEnd, begin + 1); target < end; target++)
                {
                    totalNll -= window.Positions[target - 1 - begin].NextLogprob!.Value;
                    scored++;
                }

                read += end - begin;
                windows++;
                previousEnd = end;
                progress.Report(end, "tokens");
            }

            progress.Done();
            double meanNll = totalNll / scored;
            double tokensPerSecond = read / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            if (args.Flag("json"))
            {
                JsonOutput.Write(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteNumberOrNull("perplexity", Math.Exp(meanNll));
                    w.WriteNumberOrNull("mean_nll", meanNll);
                    w.WriteNumber("tokens", ids.Length);
                    w.WriteNumber("scored_tokens", scored);
                    w.WriteNumber("windows", windows);
                    w.WriteNumber("context", context);
                    w.WriteNumber("stride", stride);
                    w.WriteNumber("tokens_per_s", Math.Round(tokensPerSecond, 3));
                    w.WriteEndObject();
                });
            }
            else
            {
                var c = CultureInfo.InvariantCulture;
                stdout.WriteLine(string.Create(c, $"perplexity {Math.Exp(meanNll):F4}  (mean NLL {meanNll:F4} over {scored} tokens)"));
                stdout.WriteLine(string.Create(c, $"{ids.Length} tokens, {windows} window{(windows == 1 ? "" : "s")} of {context} every {stride}, {tokensPerSecond:F1} tokens/s"));
            }
        }

        return 0;
    }
}
