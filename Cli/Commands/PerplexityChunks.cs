using System.Diagnostics;
using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>perplexity --chunks</c> and <c>--kl-divergence-base</c>: llama-perplexity's chunks (<see cref="TextChunks"/>), its
/// estimate with a standard error, its file of a base model's log-probabilities, and its comparison of a model with that
/// base (<see cref="KlDivergence"/>), printed under the headings it prints so that scripts written for it read ours.
/// </summary>
internal static class PerplexityChunks
{
    /// <summary>llama-perplexity's default context.</summary>
    internal const int DefaultContext = 512;

    /// <summary>Perplexity over the chunks of --file; with --kl-divergence-base B, each scored position's log-probabilities written to the new file B.</summary>
    public static int Perplexity(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string file = args.Value("file") ?? throw new UsageException("perplexity needs --file F");
        string? basePath = args.Value("kl-divergence-base");
        if (basePath is not null && (File.Exists(basePath) || Directory.Exists(basePath)))
        {
            throw new UsageException($"--kl-divergence-base {basePath} already exists; the log-probabilities go into a new file (remove it or choose another name), or add --kl-divergence to compare with it");
        }

        int? limit = ChunkLimit(args);
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        int[] ids = tokenizer.Encode(TextInput.ReadUtf8File(file), addSpecialTokens: true);
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            int context = ModelLoading.Context(args, model.Config, min: 3) ?? Math.Min(DefaultContext, model.Config.MaxPositionEmbeddings);
            int available = ids.Length / context;
            if (available == 0)
            {
                throw new UsageException($"--file {file}: {ids.Length} tokens, fewer than one chunk of {context} (--context)");
            }

            int chunks = Math.Min(available, limit ?? available), vocabulary = model.Config.VocabSize;
            using LogitsBaseWriter? writer = basePath is null ? null : LogitsBaseWriter.Create(basePath, context, vocabulary, ids.AsSpan(0, chunks * context));
            int rowValues = LogitsBaseFile.RowValues(vocabulary);
            double nll = 0, nll2 = 0;
            int count = 0;
            var clock = Stopwatch.StartNew();
            var progress = ProgressBar.For(stderr, "perplexity", chunks);
            TextChunks.Score(model, ids, context, chunks, Bos(tokenizer), (_, _, next, logitsOf) =>
            {
                // Rows on every core (the step's workers are idle now), then added and written in order.
                double[] nlls = new double[next.Length];
                ushort[] rows = writer is null ? [] : new ushort[next.Length * rowValues];
                Parallel.For(0, next.Length, r =>
                {
                    ReadOnlySpan<float> logits = logitsOf(r);
                    nlls[r] = LogProbs.LogSumExp(logits) - logits[next[r]];
                    if (writer is not null)
                    {
                        LogitsBaseFile.Encode(logits, rows.AsSpan(r * rowValues, rowValues));
                    }
                });
                for (int r = 0; r < next.Length; r++)
                {
                    nll += nlls[r];
                    nll2 += nlls[r] * nlls[r];
                    count++;
                    writer?.WriteRow(rows.AsSpan(r * rowValues, rowValues));
                }
            }, chunk => progress.Report(chunk + 1, "chunks"));
            writer?.Complete();
            progress.Done();

            (double ppl, double mean, double uncertainty) = Estimate(nll, nll2, count);
            double tokensPerSecond = (double)chunks * context / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            if (args.Flag("json"))
            {
                JsonOutput.Write(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("method", "chunks");
                    w.WriteNumberOrNull("perplexity", ppl);
                    w.WriteNumberOrNull("perplexity_uncertainty", ppl * uncertainty);
                    w.WriteNumberOrNull("mean_nll", mean);
                    w.WriteNumber("tokens", ids.Length);
                    w.WriteNumber("scored_tokens", count);
                    w.WriteNumber("chunks", chunks);
                    w.WriteNumber("context", context);
                    w.WriteNumber("tokens_per_s", Math.Round(tokensPerSecond, 3));
                    if (basePath is not null)
                    {
                        w.WriteString("kl_divergence_base", basePath);
                    }

                    w.WriteEndObject();
                });
            }
            else
            {
                var c = CultureInfo.InvariantCulture;
                stdout.WriteLine(string.Create(c, $"Final estimate: PPL = {ppl:F4} +/- {ppl * uncertainty:F5}"));
                stdout.WriteLine(string.Create(c, $"mean NLL {mean:F4} over {count} tokens: the second halves of {chunks} chunk{(chunks == 1 ? "" : "s")} of {context} ({ids.Length} tokens in the file), {tokensPerSecond:F1} tokens/s"));
                if (basePath is not null)
                {
                    stdout.WriteLine($"log-probabilities of the {count} scored positions written to {basePath} (compare a model with them: --kl-divergence-base {basePath} --kl-divergence)");
                }
            }
        }

        return 0;
    }

    /// <summary>This model against the base whose log-probabilities --kl-divergence-base holds, on the base's chunks.</summary>
    public static int Divergence(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string basePath = args.Value("kl-divergence-base")!;
        if (args.Has("file"))
        {
            stderr.WriteLine("note: --kl-divergence reads the base's tokens from --kl-divergence-base; --file is not read");
        }

        int? limit = ChunkLimit(args);
        using LogitsBaseReader reader = LogitsBaseReader.Open(basePath);
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            if (reader.Vocabulary != model.Config.VocabSize)
            {
                throw new UsageException($"--kl-divergence-base {basePath}: its log-probabilities are over {reader.Vocabulary} tokens, this model's over {model.Config.VocabSize}: the base had another vocabulary");
            }

            if (ModelLoading.Context(args, model.Config, min: 3) is int given && given != reader.Context)
            {
                throw new UsageException($"--context {given}: the base's chunks in {basePath} are {reader.Context} tokens; leave --context out");
            }

            int chunks = Math.Min(reader.Chunks, limit ?? reader.Chunks), rowValues = LogitsBaseFile.RowValues(reader.Vocabulary);
            ushort[] rows = new ushort[LogitsBaseFile.ScoredPerChunk(reader.Context) * rowValues];
            var divergence = new KlDivergence();
            int loaded = -1;
            var clock = Stopwatch.StartNew();
            var progress = ProgressBar.For(stderr, "kl-divergence", chunks);
            TextChunks.Score(model, reader.Tokens, reader.Context, chunks, Bos(tokenizer), (chunk, index, next, logitsOf) =>
            {
                if (chunk != loaded)
                {
                    reader.ReadChunk(rows);
                    loaded = chunk;
                }

                var measured = new PositionDivergence[next.Length];
                Parallel.For(0, next.Length, r =>
                    measured[r] = KlDivergence.Measure(logitsOf(r), rows.AsSpan((index + r) * rowValues, rowValues), next[r]));
                foreach (PositionDivergence position in measured)
                {
                    divergence.Add(position);
                }
            }, chunk => progress.Report(chunk + 1, "chunks"));
            progress.Done();

            double tokensPerSecond = (double)chunks * reader.Context / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            KlDivergenceSummary summary = divergence.Summarize();
            if (args.Flag("json"))
            {
                KlDivergenceReport.WriteJson(stdout, summary, chunks, reader.Context, tokensPerSecond);
            }
            else
            {
                KlDivergenceReport.WriteText(stdout, summary);
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{summary.Positions} positions: the second halves of {chunks} chunk{(chunks == 1 ? "" : "s")} of {reader.Context} from {basePath}, {tokensPerSecond:F1} tokens/s"));
            }
        }

        return 0;
    }

    /// <summary>
    /// llama-perplexity's final estimate from the sum of the scored positions' negative log-likelihoods and of their squares:
    /// the perplexity, the mean NLL, and the mean's standard error (the perplexity's is that × the perplexity).
    /// </summary>
    internal static (double Perplexity, double MeanNll, double Uncertainty) Estimate(double nll, double nll2, int count)
    {
        double mean = nll / count, spread = (nll2 / count) - (mean * mean);
        return (Math.Exp(mean), mean, spread > 0 && count > 1 ? Math.Sqrt(spread / (count - 1)) : 0);
    }

    /// <summary>--chunks N (at most N) or all (null).</summary>
    internal static int? ChunkLimit(Arguments args)
    {
        string? value = args.Value("chunks");
        if (value is null or "all")
        {
            return null;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int limit) && limit >= 1
            ? limit
            : throw new UsageException($"--chunks '{value}' is neither a number of chunks (1 or more) nor all");
    }

    /// <summary>The id llama-perplexity starts each chunk with: the BOS the tokenizer puts before a text, if it puts one.</summary>
    internal static int? Bos(Tokenizer tokenizer)
    {
        int[] around = tokenizer.Encode("", addSpecialTokens: true);
        return around.Length > 0 && around[0] == tokenizer.BosTokenId ? around[0] : null;
    }
}
