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

    public string Usage => "qwensharp imatrix [--model DIR|FILE.gguf] --file F [--out imatrix.gguf] [--context N] [--chunks N|all] [--chunk N] [--process-output] [--output-format gguf|dat] [--output-frequency N] [--save-frequency N] [--in-file F]... [--no-ppl] | qwensharp imatrix --in-file F --show-statistics";

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
        new("chunk", "N", "skip the text's first N chunks (llama-imatrix's --chunk), to go on where an earlier run stopped"),
        new("in-file", "F", "an importance matrix computed before (GGUF or imatrix.dat) to add to: its sums and counts are the start of this one's (llama-imatrix's --in-file); repeat for several; without --file, they are only combined into --out", Repeatable: true),
        new("show-statistics", null, "print the statistics of one --in-file's squared activations, per tensor and per layer, and compute nothing (llama-imatrix's --show-statistics): Σ, min, max, μ, σ, % active (above 1e-5), N, entropy, normalized entropy, ZD score (share more than σ above μ) and cosine similarity with the layer before"),
        new("output-frequency", "N", "write --out every N chunks while computing, so a stopped run keeps what it did (default 10, as llama-imatrix; 0: only at the end)"),
        new("save-frequency", "N", "also write OUT.at_K every N chunks, K the chunks so far (llama-imatrix's snapshots; default 0: none)"),
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
        "qwensharp imatrix --in-file imatrix-part1.gguf --in-file imatrix-part2.gguf --out imatrix.gguf",
        "qwensharp imatrix --in-file imatrix.gguf --show-statistics",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string? file = args.Value("file");
        IReadOnlyList<string> inFiles = args.Values("in-file");
        if (args.Flag("show-statistics"))
        {
            return ShowStatistics(file, inFiles, stdout, stderr);
        }

        if (file is null && inFiles.Count == 0)
        {
            throw new UsageException("imatrix needs --file F, the text to compute the importance matrix on (or --in-file F, repeated, to combine matrices computed before)");
        }

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

        int outputFrequency = args.Int("output-frequency", 0) ?? 10, saveFrequency = args.Int("save-frequency", 0) ?? 0, skip = args.Int("chunk", 0) ?? 0;
        List<ImportanceMatrix> loaded = [.. inFiles.Select(path => File.Exists(path) ? ImportanceMatrixFile.Read(path) : throw new UsageException($"--in-file {path}: file not found"))];
        if (file is null)
        {
            return Combine(args, loaded, output, legacy, stdout);
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
            int available = ids.Length / context - skip;
            if (available <= 0)
            {
                throw new UsageException($"--file {file}: {ids.Length} tokens, fewer than one chunk of {context} (--context){(skip > 0 ? $" after the {skip} skipped (--chunk)" : "")}");
            }

            int chunks = Math.Min(available, limit ?? available);
            bool processOutput = args.Flag("process-output");
            if (processOutput && model.Config.TieWordEmbeddings)
            {
                stderr.WriteLine("note: --process-output: this model's LM head is its embedding (tied), which llama-imatrix leaves out; the matrix has the layers' entries only");
            }

            // The matrices given start the sums (their chunks count on, as llama-imatrix numbers its saves); combined once.
            ImportanceMatrix? start = loaded.Count == 0 ? null : ImportanceMatrix.Combine(loaded, context);
            int before = start?.ChunkCount ?? 0;
            var collector = new ImportanceCollector(model.Config, processOutput);
            ImportanceMatrix Current(int done)
            {
                ImportanceMatrix collected = collector.ToMatrix([file], done, context);
                return start is null ? collected : ImportanceMatrix.Combine([start, collected], context);
            }

            double nll = 0, nll2 = 0;
            int count = 0;
            var clock = Stopwatch.StartNew();
            var progress = ProgressBar.For(stderr, "imatrix", chunks);
            TextChunks.Score(model, ids.AsSpan(skip * context), context, chunks, PerplexityChunks.Bos(tokenizer), (_, _, next, logitsOf) =>
            {
                for (int r = 0; r < next.Length; r++)
                {
                    ReadOnlySpan<float> logits = logitsOf(r);
                    double value = LogProbs.LogSumExp(logits) - logits[next[r]];
                    nll += value;
                    nll2 += value * value;
                    count++;
                }
            }, chunk =>
            {
                progress.Report(chunk + 1, "chunks");
                int total = before + chunk + 1;
                bool last = chunk + 1 == chunks;
                if (!last && outputFrequency > 0 && total % outputFrequency == 0)
                {
                    Save(Current(chunk + 1), output, legacy, replace: true);
                }

                if (saveFrequency > 0 && total % saveFrequency == 0)
                {
                    string snapshot = string.Create(CultureInfo.InvariantCulture, $"{output}.at_{total}");
                    if (File.Exists(snapshot))
                    {
                        stderr.WriteLine($"note: {snapshot} already exists; not written over");
                    }
                    else
                    {
                        Save(Current(chunk + 1), snapshot, legacy, replace: false);
                    }
                }
            }, tap: collector.Tap, headOnEveryRow: processOutput);
            progress.Done();

            ImportanceMatrix matrix = Current(chunks);
            Save(matrix, output, legacy, replace: true);
            var c = CultureInfo.InvariantCulture;
            if (!args.Flag("no-ppl"))
            {
                (double ppl, _, double uncertainty) = PerplexityChunks.Estimate(nll, nll2, count);
                stdout.WriteLine(string.Create(c, $"Final estimate: PPL = {ppl:F4} +/- {ppl * uncertainty:F5}"));
            }

            double tokensPerSecond = (double)chunks * context / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            string added = loaded.Count == 0 ? "" : $", added to {loaded.Count} matrix file{(loaded.Count == 1 ? "" : "s")} of {before} chunk{(before == 1 ? "" : "s")}";
            stdout.WriteLine(string.Create(c,
                $"wrote {output}: {matrix.Entries.Count} entries from {chunks} chunk{(chunks == 1 ? "" : "s")} of {context} tokens ({collector.Tokens} tokens of {ids.Length} in the file){added}, {tokensPerSecond:F1} tokens/s"));
        }

        return 0;
    }

    /// <summary>--show-statistics: the tables of one --in-file's statistics (<see cref="ImportanceStatistics"/>), as llama-imatrix prints them.</summary>
    private static int ShowStatistics(string? file, IReadOnlyList<string> inFiles, TextWriter stdout, TextWriter stderr)
    {
        if (inFiles.Count != 1 || file is not null)
        {
            throw new UsageException($"--show-statistics reads one importance matrix, given as --in-file F, and computes nothing (got {inFiles.Count} --in-file{(file is null ? "" : " and --file")})");
        }

        string path = inFiles[0];
        ImportanceMatrix matrix = File.Exists(path) ? ImportanceMatrixFile.Read(path) : throw new UsageException($"--in-file {path}: file not found");
        IReadOnlyList<ImportanceStatistics.TensorStatistics> tensors = ImportanceStatistics.Of(matrix, out IReadOnlyList<string> empty);
        foreach (string name in empty)
        {
            stderr.WriteLine($"note: {path}: tensor {name} has no tokens (every count 0); left out");
        }

        if (tensors.Count == 0)
        {
            throw new UsageException($"--in-file {path}: no tensor with tokens to compute statistics of");
        }

        CultureInfo c = CultureInfo.InvariantCulture;
        stdout.WriteLine(string.Create(c, $"statistics of {path} ({tensors.Count} tensors; of the squared activations, not the activations)"));
        stdout.WriteLine();
        stdout.WriteLine(" Layer  Tensor                  Σ(Act²)          Min          Max            μ            σ   % Active       N     Entropy  E (norm)        ZD    CosSim");
        foreach (ImportanceStatistics.TensorStatistics t in tensors)
        {
            string cosine = t.CosineSimilarity is { } cs ? cs.ToString("F4", c) : "-";
            stdout.WriteLine(string.Create(c,
                $"{(t.Layer < 0 ? "-" : t.Layer.ToString(c)),6}  {t.Tensor,-20} {t.Sum,12:F2} {t.Min,12:F4} {t.Max,12:F4} {t.Mean,12:F4} {t.Deviation,12:F4} {100 * t.ActiveFraction,9:F2}% {t.Count,7} {t.Entropy,11:F4} {100 * t.NormalizedEntropy,8:F2}% {100 * t.ZdScore,8:F2}% {cosine,9}"));
        }

        IReadOnlyList<ImportanceStatistics.LayerStatistics> layers = ImportanceStatistics.PerLayer(tensors);
        stdout.WriteLine();
        stdout.WriteLine(string.Create(c, $"per layer ({layers.Count} layers; weighted by each tensor's N)"));
        stdout.WriteLine();
        stdout.WriteLine(" Layer       μΣ(Act²)        μZD   μCosSim");
        foreach (ImportanceStatistics.LayerStatistics l in layers)
        {
            string cosine = l.CosineSimilarity is { } cs ? cs.ToString("F4", c) : "-";
            stdout.WriteLine(string.Create(c, $"{l.Layer,6} {l.Sum,14:F2} {100 * l.ZdScore,9:F4}% {cosine,9}"));
        }

        return 0;
    }

    /// <summary>--in-file without --file: the matrices combined into --out, counted in chunks of --context (else their own chunk size, else 512).</summary>
    private static int Combine(Arguments args, List<ImportanceMatrix> loaded, string output, bool legacy, TextWriter stdout)
    {
        int chunkSize = args.Int("context", 1) ?? loaded.Select(m => m.ChunkSize).FirstOrDefault(size => size > 0, PerplexityChunks.DefaultContext);
        ImportanceMatrix matrix = ImportanceMatrix.Combine(loaded, chunkSize);
        Save(matrix, output, legacy, replace: false);
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {output}: {matrix.Entries.Count} entries combined from {loaded.Count} file{(loaded.Count == 1 ? "" : "s")}, {matrix.ChunkCount} chunks of {chunkSize} tokens"));
        return 0;
    }

    /// <summary>Writes the matrix in the format asked for; <paramref name="replace"/>: over this run's own earlier save of it, at once (written beside it, then moved).</summary>
    private static void Save(ImportanceMatrix matrix, string path, bool legacy, bool replace)
    {
        string target = replace ? path + ".saving" : path;
        if (replace)
        {
            File.Delete(target);
        }
        if (legacy)
        {
            ImportanceMatrixFile.WriteLegacy(matrix, target);
        }
        else
        {
            ImportanceMatrixFile.WriteGguf(matrix, target);
        }

        if (replace)
        {
            File.Move(target, path, overwrite: true);
        }
    }
}
