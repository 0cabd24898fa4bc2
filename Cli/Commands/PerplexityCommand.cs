using System.Diagnostics;
using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp perplexity</c>: sliding-window perplexity of a text file, as Hugging Face's perplexity guide
/// computes it: windows of --context tokens starting every --stride tokens; each window scores only the
/// tokens the previous one did not, with all of its earlier tokens as context. With <c>--chunks</c> or
/// <c>--kl-divergence-base</c>, llama-perplexity's chunks instead (<see cref="PerplexityChunks"/>).
/// </summary>
internal sealed class PerplexityCommand : ICommand
{
    public string Name => "perplexity";

    public string Summary => "perplexity of a text file (sliding windows, or llama-perplexity's chunks), KL divergence from a base model, HellaSwag, Winogrande, multiple choice (ARC, MMLU, TruthfulQA)";

    public string Usage => "qwensharp perplexity [--model DIR] --file F [--context N] [--stride S | --chunks N|all] [--kl-divergence-base B [--kl-divergence]] [--hellaswag [--hellaswag-tasks N]] [--winogrande [--winogrande-tasks N]] [--multiple-choice [--multiple-choice-tasks N]] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("file", "F", "the UTF-8 text file to measure"),
        new("context", "N", "tokens per window (default: the model's context, at most 2048), or per chunk with --chunks (default 512, as llama-perplexity's -c)"),
        new("stride", "S", "tokens between window starts (default: the context, i.e. no overlap)"),
        new("chunks", "N|all", "score as llama-perplexity does, so the figures compare with its own: the text cut into chunks of --context tokens (default 512), each read alone, only its second half scored; N chunks at most, or all"),
        new("kl-divergence-base", "B", "with --file: also write the model's log-probabilities at every scored position to the new file B (llama-perplexity's format: either tool reads the other's); with --kl-divergence: read them"),
        new("kl-divergence", null, "compare this model (a quantized one, say) with the base whose log-probabilities --kl-divergence-base B holds, on its tokens: both perplexities, KL divergence, Δp and the same top token, as llama-perplexity prints them"),
        new("hellaswag", null, "llama-perplexity's HellaSwag score (acc_norm) over --file, llama.cpp's hellaswag_val_full.txt (six lines a task): the ending with the highest mean log-prob per token is the model's answer"),
        new("hellaswag-tasks", "N", "with --hellaswag: N tasks drawn at random as llama-perplexity draws them (the same tasks, the same figure; default: all, in its random order)"),
        new("winogrande", null, "llama-perplexity's Winogrande score over --file, llama.cpp's winogrande-debiased-eval.csv (index,sentence,choice1,choice2,answer): the choice whose sentence is likelier after the blank is the model's answer"),
        new("winogrande-tasks", "N", "with --winogrande: N tasks drawn at random as llama-perplexity draws them (default: all, in the file's order)"),
        new("multiple-choice", null, "llama-perplexity's multiple-choice score over --file, one of llama.cpp's binary task files (ARC, MMLU, TruthfulQA, HellaSwag): the answer with the highest mean log-prob per token after the question is the model's"),
        new("multiple-choice-tasks", "N", "with --multiple-choice: N tasks drawn at random as llama-perplexity draws them (default: all, in the file's order)"),
        new("json", null, "print JSON: {\"method\",\"perplexity\",\"mean_nll\",\"tokens\",\"scored_tokens\",\"windows\"|\"chunks\",\"tokens_per_s\",...}; with --kl-divergence the statistics by name"),
        ModelLoading.Threads,
        ModelLoading.Quantize,
        ModelLoading.Imatrix,
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
        "qwensharp perplexity --model ~/models/Qwen2.5-0.5B-Instruct --file wiki.test.raw --chunks 40 --kl-divergence-base base.kld",
        "qwensharp perplexity --model qwen2.5-0.5b-instruct-q4_k_m.gguf --kl-divergence-base base.kld --kl-divergence",
        "qwensharp perplexity --model qwen2.5-0.5b-instruct-q4_k_m.gguf --hellaswag --file hellaswag_val_full.txt",
        "qwensharp perplexity --model qwen2.5-0.5b-instruct-q4_k_m.gguf --multiple-choice --file arc-challenge-validation.bin",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string[] tasks = ["hellaswag", "winogrande", "multiple-choice"];
        string[] methods = [.. tasks.Where(args.Has)];
        if (methods.Length > 1)
        {
            throw new UsageException($"--{methods[0]} and --{methods[1]} are two task scores; give one at a time");
        }

        string? countWithout = tasks.FirstOrDefault(t => args.Has($"{t}-tasks") && !args.Has(t));
        if (countWithout is not null)
        {
            throw new UsageException($"--{countWithout}-tasks goes with --{countWithout}");
        }

        if (methods.Length == 1)
        {
            string? other = new[] { "chunks", "stride", "kl-divergence", "kl-divergence-base", "context" }.FirstOrDefault(args.Has);
            if (other is not null)
            {
                throw new UsageException($"--{methods[0]} scores its tasks whole; --{other} is for perplexity (leave it out)");
            }

            return methods[0] switch
            {
                "hellaswag" => PerplexityHellaSwag.Run(args, stdout, stderr),
                "winogrande" => PerplexityWinogrande.Run(args, stdout, stderr),
                _ => PerplexityMultipleChoice.Run(args, stdout, stderr),
            };
        }

        if (args.Has("kl-divergence") && !args.Has("kl-divergence-base"))
        {
            throw new UsageException("--kl-divergence compares with a base model's log-probabilities: give --kl-divergence-base F, written before by perplexity --kl-divergence-base F --file TEXT on the base model");
        }

        bool chunked = args.Has("chunks") || args.Has("kl-divergence-base");
        if (chunked && args.Has("stride"))
        {
            throw new UsageException("--stride moves sliding windows; --chunks and --kl-divergence-base read whole chunks of --context tokens instead (leave --stride out)");
        }

        if (args.Has("kl-divergence"))
        {
            return PerplexityChunks.Divergence(args, stdout, stderr);
        }

        return chunked ? PerplexityChunks.Perplexity(args, stdout, stderr) : Sliding(args, stdout, stderr);
    }

    private static int Sliding(Arguments args, TextWriter stdout, TextWriter stderr)
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
                    w.WriteString("method", "sliding");
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
