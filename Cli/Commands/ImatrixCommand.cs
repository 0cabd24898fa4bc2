using System.Diagnostics;
using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp imatrix</c>: llama-imatrix. Reads a text as llama-perplexity's chunks (<see cref="TextChunks"/>) and adds
/// up, at the input of every matrix of the layers, each column's squared activation (<see cref="ImportanceCollector"/>);
/// writes the sums as llama-imatrix's file, which <c>quantize --imatrix</c> (ours or llama-quantize) quantizes with. Prints
/// the text's perplexity on the way, as llama-imatrix does.
/// </summary>
internal sealed class ImatrixCommand : ICommand
{
    public string Name => "imatrix";

    public string Summary => "compute an importance matrix over a text file (llama-imatrix), which quantize then rounds the weights by";

    public string Usage => "qwensharp imatrix [--model DIR|FILE.gguf] --file F [--out imatrix.gguf] [--context N] [--chunks N|all] [--process-output] [--output-format gguf|dat] [--no-ppl]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("file", "F", "the UTF-8 text to compute it on (calibration text: varied, a few hundred thousand tokens serve)"),
        new("out", "FILE", "the file to write (it must not exist yet; default imatrix.gguf)"),
        new("context", "N", "tokens per chunk, each read alone from an empty cache as llama-imatrix does (default 512, its -c)"),
        new("chunks", "N|all", "the first N chunks of the text, or all (default)"),
        new("process-output", null, "also the LM head's input (output.weight), as llama-imatrix's --process-output; a head tied to the embedding has none"),
        new("output-format", "gguf|dat", "gguf (llama-imatrix's format since mid-2025, the default) or dat (its older imatrix.dat, for older llama-quantize builds)"),
        new("no-ppl", null, "do not print the perplexity"),
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
        "qwensharp imatrix --model ~/models/Qwen2.5-1.5B-Instruct --file calibration.txt --out imatrix.gguf",
        "qwensharp imatrix --model qwen2.5-7b-instruct-f16.gguf --file calibration.txt --chunks 100 --device gpu",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string file = args.Value("file") ?? throw new UsageException("imatrix needs --file F, the text to compute the importance matrix on");
        string output = args.Value("out") ?? "imatrix.gguf";
        bool legacy = args.Value("output-format") switch
        {
            null or "gguf" => false,
            "dat" => true,
            string other => throw new UsageException($"--output-format '{other}' is not one of gguf, dat"),
        };
        if (File.Exists(output) || Directory.Exists(output))
        {
            throw new UsageException($"--out {output} already exists; imatrix does not overwrite anything (remove it or choose another name with --out)");
        }

        int? limit = PerplexityChunks.ChunkLimit(args);
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        int[] ids = tokenizer.Encode(TextInput.ReadUtf8File(file), addSpecialTokens: true);
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            int context = ModelLoading.Context(args, model.Config, min: 3) ?? Math.Min(PerplexityChunks.DefaultContext, model.Config.MaxPositionEmbeddings);
            int available = ids.Length / context;
            if (available == 0)
            {
                throw new UsageException($"--file {file}: {ids.Length} tokens, fewer than one chunk of {context} (--context)");
            }

            int chunks = Math.Min(available, limit ?? available);
            bool processOutput = args.Flag("process-output");
            if (processOutput && model.Config.TieWordEmbeddings)
            {
                stderr.WriteLine("note: --process-output: this model's LM head is its embedding (tied), which llama-imatrix leaves out; the matrix has the layers' entries only");
            }

            var collector = new ImportanceCollector(model.Config, processOutput);
            double nll = 0, nll2 = 0;
            int count = 0;
            var clock = Stopwatch.StartNew();
            var progress = ProgressBar.For(stderr, "imatrix", chunks);
            TextChunks.Score(model, ids, context, chunks, PerplexityChunks.Bos(tokenizer), (_, _, next, logitsOf) =>
            {
                for (int r = 0; r < next.Length; r++)
                {
                    ReadOnlySpan<float> logits = logitsOf(r);
                    double value = LogProbs.LogSumExp(logits) - logits[next[r]];
                    nll += value;
                    nll2 += value * value;
                    count++;
                }
            }, chunk => progress.Report(chunk + 1, "chunks"), tap: collector.Tap, headOnEveryRow: processOutput);
            progress.Done();

            ImportanceMatrix matrix = collector.ToMatrix([file], chunks, context);
            if (legacy)
            {
                ImportanceMatrixFile.WriteLegacy(matrix, output);
            }
            else
            {
                ImportanceMatrixFile.WriteGguf(matrix, output);
            }

            var c = CultureInfo.InvariantCulture;
            if (!args.Flag("no-ppl"))
            {
                (double ppl, _, double uncertainty) = PerplexityChunks.Estimate(nll, nll2, count);
                stdout.WriteLine(string.Create(c, $"Final estimate: PPL = {ppl:F4} +/- {ppl * uncertainty:F5}"));
            }

            double tokensPerSecond = (double)chunks * context / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            stdout.WriteLine(string.Create(c,
                $"wrote {output}: {matrix.Entries.Count} entries from {chunks} chunk{(chunks == 1 ? "" : "s")} of {context} tokens ({collector.Tokens} tokens of {ids.Length} in the file), {tokensPerSecond:F1} tokens/s"));
        }

        return 0;
    }
}
