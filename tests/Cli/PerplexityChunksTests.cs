using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using QwenSharp.Formats;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>
/// perplexity --chunks and --kl-divergence-base/--kl-divergence against llama.cpp (LLamaSharp) on the same GGUF files:
/// its logits give the expected perplexities, log-probabilities and divergences here, computed from the definitions in
/// float64, and the base files are read and written in this test by llama-perplexity's layout, apart from our code.
/// </summary>
public sealed class PerplexityChunksTests
{
    private const string Story =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. " +
        "She ran to the ball and kicked it high into the sky. The ball flew over the trees and landed in a pond. Lily was sad. " +
        "Her friend Tom came by and saw her crying. He said, \"Don't worry, Lily. I will help you get the ball.\" Tom found a long stick " +
        "and reached into the pond. He pulled the ball out and gave it to Lily. She smiled and said, \"Thank you, Tom!\" They played " +
        "with the ball all day long, and when the sun went down they walked home together, happy and tired. The next morning the sky " +
        "was grey and it began to rain, so Lily and Tom stayed inside and built a castle out of blankets and chairs.";

    private static string StoryFile()
    {
        string path = Path.Combine(Fixtures.TempDirectory(), "story.txt");
        File.WriteAllText(path, Story);
        return path;
    }

    private static string Number(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>log_softmax in float64.</summary>
    private static double[] LogSoftmax(float[] logits)
    {
        double max = logits.Max(), sum = logits.Sum(l => Math.Exp(l - max));
        return [.. logits.Select(l => l - max - Math.Log(sum))];
    }

    /// <summary>llama.cpp's logits at each scored position of each chunk (positions context/2 to context-2), each chunk read alone.</summary>
    private static float[][][] ScoredLogits(string gguf, int[] ids, int context, int chunks, int? bos = null) =>
        [.. Enumerable.Range(0, chunks).Select(c =>
        {
            int[] chunk = ids[(c * context)..((c + 1) * context)];
            chunk[0] = bos ?? chunk[0];
            return LlamaCpp.Logits(gguf, chunk)[(context / 2)..(context - 1)];
        })];

    [Fact]
    public void Chunks_AndTheBaseFile_EqualLlamaCppsOnTheSameGguf()
    {
        // In f32 (the fixture's BF16 numbers), which llama.cpp multiplies in f32 as we do: logits agree to f32 rounding.
        string gguf = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer, dequantized: true);
        string story = StoryFile(), basePath = Path.Combine(Fixtures.TempDirectory(), "base.kld");
        int[] ids = LlamaCpp.Tokenize(gguf, [Story])[0];
        const int context = 16;
        int chunks = ids.Length / context;

        CliRunner.Result result = CliRunner.Run("perplexity", "--model", gguf, "--file", story, "--context", Number(context), "--kl-divergence-base", basePath, "--json");

        Assert.True(result.ExitCode == 0, result.Stderr);
        float[][][] theirs = ScoredLogits(gguf, ids, context, chunks);
        BaseFile file = BaseFile.Read(basePath);
        Assert.Equal((context, 151936, chunks), (file.Context, file.Vocabulary, file.Chunks));
        Assert.Equal(ids[..(chunks * context)], file.Tokens);
        double nll = 0;
        int count = 0;
        for (int c = 0; c < chunks; c++)
        {
            for (int i = 0; i < theirs[c].Length; i++, count++)
            {
                float[] logits = theirs[c][i];
                double[] logProbs = LogSoftmax(logits);
                nll -= logProbs[ids[(c * context) + (context / 2) + i + 1]];

                // Each code within half a step (and f32 rounding) of llama.cpp's log-prob; those 16 below the top, code 0.
                (float scale, float least, ushort[] codes) = file.Rows[count];
                float max = logits.Max();
                for (int t = 0; t < logits.Length; t++)
                {
                    if (logits[t] < max - LogitsBaseFile.Span - 1e-3)
                    {
                        Assert.Equal(0, codes[t]);
                    }
                    else if (logits[t] > max - LogitsBaseFile.Span + 1e-3)
                    {
                        double error = Math.Abs((scale * codes[t]) + least - logProbs[t]);
                        Assert.True(error <= (0.5 * scale) + 1e-4, $"chunk {c}, row {i}, token {t}: code {codes[t]} is {error:E3} from llama.cpp's log-prob {logProbs[t]:F5}");
                    }
                }
            }
        }

        JsonElement json = result.Json;
        Assert.Equal("chunks", json.GetProperty("method").GetString());
        Assert.Equal(chunks, json.GetProperty("chunks").GetInt32());
        Assert.Equal(count, json.GetProperty("scored_tokens").GetInt32());
        Assert.Equal(ids.Length, json.GetProperty("tokens").GetInt32());
        Assert.Equal(Math.Exp(nll / count), json.GetProperty("perplexity").GetDouble(), 1e-4 * Math.Exp(nll / count));

        // The same model against its own base: nothing between them but the codes' rounding.
        CliRunner.Result itself = CliRunner.Run("perplexity", "--model", gguf, "--kl-divergence-base", basePath, "--kl-divergence", "--json");
        Assert.True(itself.ExitCode == 0, itself.Stderr);
        Assert.True(Math.Abs(itself.Json.GetProperty("kld").GetProperty("mean").GetDouble()) < 2e-4, itself.Stdout);
        Assert.Equal(1.0, itself.Json.GetProperty("same_top_p").GetProperty("value").GetDouble());
    }

    [Fact]
    public void KlDivergence_OnLlamaCppsBase_IsTheDefinitionsOverLlamaCppsLogits()
    {
        // The base: llama.cpp on the F32 model, its file written here. The model compared: the same model with every matrix
        // rounded to Q4_0's numbers (in an F32 file, so both engines multiply in f32 and agree to f32 rounding).
        string model = TestTokenizers.TinyQwenWithTokenizer;
        string f32 = GgufFixture.Write(model, dequantized: true), rounded = GgufFixture.Write(model, DType.Q4_0, dequantized: true);
        int[] ids = LlamaCpp.Tokenize(f32, [Story])[0];
        const int context = 16, vocabulary = 151936;
        int chunks = ids.Length / context;
        string basePath = BaseFile.Write(ids[..(chunks * context)], context, vocabulary, ScoredLogits(f32, ids, context, chunks));
        BaseFile file = BaseFile.Read(basePath);
        float[][][] compared = ScoredLogits(rounded, ids, context, chunks);

        double kld = 0, nll = 0, baseNll = 0, squaredChange = 0;
        int count = 0, sameTop = 0;
        for (int c = 0; c < chunks; c++)
        {
            for (int i = 0; i < compared[c].Length; i++, count++)
            {
                (float scale, float least, ushort[] codes) = file.Rows[count];
                double[] baseLogProbs = [.. codes.Take(vocabulary).Select(code => (double)((scale * code) + least))];
                double[] logProbs = LogSoftmax(compared[c][i]);
                kld += baseLogProbs.Select((b, t) => b > -LogitsBaseFile.Span ? Math.Exp(b) * (b - logProbs[t]) : 0).Sum();
                int next = ids[(c * context) + (context / 2) + i + 1];
                nll -= logProbs[next];
                baseNll -= baseLogProbs[next];
                squaredChange += Math.Pow(Math.Exp(logProbs[next]) - Math.Exp(baseLogProbs[next]), 2);
                sameTop += Array.IndexOf(logProbs, logProbs.Max()) == Array.IndexOf(baseLogProbs, baseLogProbs.Max()) ? 1 : 0;
            }
        }

        CliRunner.Result result = CliRunner.Run("perplexity", "--model", rounded, "--kl-divergence-base", basePath, "--kl-divergence", "--json");

        Assert.True(result.ExitCode == 0, result.Stderr);
        JsonElement json = result.Json;
        double expected = kld / count;
        Assert.True(expected > 1e-3, $"Q4_0's rounding moved the distributions by only {expected:E2}: the test would not tell a divergence from none");
        Assert.Equal(count, json.GetProperty("positions").GetInt32());
        Assert.Equal(expected, json.GetProperty("kld").GetProperty("mean").GetDouble(), 1e-4 + (1e-3 * expected));
        Assert.Equal(Math.Exp(nll / count), json.GetProperty("ppl").GetProperty("value").GetDouble(), 1e-4 * Math.Exp(nll / count));
        Assert.Equal(Math.Exp(baseNll / count), json.GetProperty("ppl_base").GetProperty("value").GetDouble(), 1e-6 * Math.Exp(baseNll / count));
        Assert.Equal(Math.Sqrt(squaredChange / count), json.GetProperty("rms_delta_p").GetProperty("value").GetDouble(), 1e-5);
        Assert.Equal((double)sameTop / count, json.GetProperty("same_top_p").GetProperty("value").GetDouble(), 1.01 / count);

        // As text, llama-perplexity's lines, which scripts read with patterns like these.
        CliRunner.Result text = CliRunner.Run("perplexity", "--model", rounded, "--kl-divergence-base", basePath, "--kl-divergence");
        Assert.True(text.ExitCode == 0, text.Stderr);
        double printed = double.Parse(Regex.Match(text.Stdout, @"Mean\s+KLD:\s+(-?[\d.]+)").Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.Equal(expected, printed, 1e-4 + (1e-3 * expected));
        double top = double.Parse(Regex.Match(text.Stdout, @"Same top p:\s+([\d.]+)").Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.Equal(100.0 * sameTop / count, top, 101.0 / count);
        foreach (string heading in new[] { "====== Perplexity statistics ======", "====== KL divergence statistics ======", "====== Token probability statistics ======", "99.0%   KLD:", "Median  Δp:", "RMS Δp    :" })
        {
            Assert.Contains(heading, text.Stdout, StringComparison.Ordinal);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Chunks_StartWithBos_WhereTheTokenizerAddsOne(string device)
    {
        TestBackends.RequireDevice(device);
        // The demo model's tokenizer puts BOS (id 1) before a text: llama-perplexity starts every chunk with it.
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        int[] ids = [1, .. LlamaCpp.Tokenize(gguf, [Story])[0]];
        const int context = 32;
        int chunks = ids.Length / context;
        Assert.True(chunks >= 3, $"{ids.Length} tokens");
        float[][][] theirs = ScoredLogits(gguf, ids, context, chunks, bos: 1);
        double nll = 0;
        int count = 0;
        for (int c = 0; c < chunks; c++)
        {
            for (int i = 0; i < theirs[c].Length; i++, count++)
            {
                nll -= LogSoftmax(theirs[c][i])[ids[(c * context) + (context / 2) + i + 1]];
            }
        }

        CliRunner.Result result = CliRunner.Run("perplexity", "--model", gguf, "--file", StoryFile(), "--context", Number(context), "--chunks", "all", "--json", "--device", device);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(ids.Length, result.Json.GetProperty("tokens").GetInt32());
        Assert.Equal(Math.Exp(nll / count), result.Json.GetProperty("perplexity").GetDouble(), 1e-4 * Math.Exp(nll / count));

        // --chunks N reads the first N only.
        CliRunner.Result two = CliRunner.Run("perplexity", "--model", gguf, "--file", StoryFile(), "--context", Number(context), "--chunks", "2", "--json", "--device", device);
        Assert.Equal(2, two.Json.GetProperty("chunks").GetInt32());
        Assert.Equal(2 * ((context / 2) - 1), two.Json.GetProperty("scored_tokens").GetInt32());
    }

    [Fact]
    public void Errors_OneLineExitCode2_AndNothingOverwritten()
    {
        string directory = Fixtures.TempDirectory(), story = StoryFile();
        string existing = Path.Combine(directory, "existing.kld");
        File.WriteAllText(existing, "mine");
        string demoBase = Path.Combine(directory, "demo.kld");
        Assert.Equal(0, CliRunner.Run("perplexity", "--file", story, "--context", "16", "--kl-divergence-base", demoBase).ExitCode);
        string truncated = Path.Combine(directory, "truncated.kld");
        File.WriteAllBytes(truncated, File.ReadAllBytes(demoBase)[..1000]);
        string badToken = Path.Combine(directory, "bad-token.kld");
        byte[] bytes = File.ReadAllBytes(demoBase);
        BitConverter.GetBytes(512).CopyTo(bytes, LogitsBaseFile.HeaderBytes + (4 * 5));
        File.WriteAllBytes(badToken, bytes);

        foreach ((string[] args, string message) in new (string[], string)[]
        {
            (["perplexity", "--file", story, "--kl-divergence-base", existing], $"--kl-divergence-base {existing} already exists"),
            (["perplexity", "--kl-divergence"], "--kl-divergence compares with a base model's log-probabilities: give --kl-divergence-base F"),
            (["perplexity", "--file", story, "--chunks", "2", "--stride", "4"], "--stride moves sliding windows"),
            (["perplexity", "--file", story, "--chunks", "none"], "--chunks 'none' is neither a number of chunks (1 or more) nor all"),
            (["perplexity", "--file", story, "--chunks", "all", "--context", "400"], "tokens, fewer than one chunk of 400 (--context)"),
            (["perplexity", "--kl-divergence-base", story, "--kl-divergence"], "does not start with '_logits_'"),
            (["perplexity", "--kl-divergence-base", truncated, "--kl-divergence"], "1000 bytes, but"),
            (["perplexity", "--kl-divergence-base", badToken, "--kl-divergence"], "token 5 (chunk 1, position 5) is id 512, outside its vocabulary of 512"),
            (["perplexity", "--kl-divergence-base", demoBase, "--kl-divergence", "--context", "32"], "--context 32: the base's chunks"),
            (["perplexity", "--model", TestTokenizers.TinyQwenWithTokenizer, "--kl-divergence-base", demoBase, "--kl-divergence"], "its log-probabilities are over 512 tokens, this model's over 151936"),
        })
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.True(result.ExitCode == 2, $"{string.Join(' ', args)}: exit {result.ExitCode}: {result.Stderr}");
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }

        Assert.Equal("mine", File.ReadAllText(existing));
    }

    /// <summary>llama-perplexity's file of log-probabilities, read and written here from its layout alone.</summary>
    private sealed record BaseFile(int Context, int Vocabulary, int Chunks, int[] Tokens, List<(float Scale, float Least, ushort[] Codes)> Rows)
    {
        public static BaseFile Read(string path)
        {
            using var reader = new BinaryReader(File.OpenRead(path));
            Assert.Equal("_logits_"u8.ToArray(), reader.ReadBytes(8));
            int context = reader.ReadInt32(), vocabulary = reader.ReadInt32(), chunks = reader.ReadInt32();
            int[] tokens = [.. Enumerable.Range(0, chunks * context).Select(_ => reader.ReadInt32())];
            var rows = new List<(float, float, ushort[])>();
            int padded = 2 * ((vocabulary + 1) / 2);
            for (int r = 0; r < chunks * (context - 1 - (context / 2)); r++)
            {
                float scale = reader.ReadSingle(), least = reader.ReadSingle();
                rows.Add((scale, least, [.. Enumerable.Range(0, padded).Select(_ => reader.ReadUInt16())]));
            }

            Assert.Equal(reader.BaseStream.Length, reader.BaseStream.Position);
            return new BaseFile(context, vocabulary, chunks, tokens, rows);
        }

        /// <summary>
        /// A base file of <paramref name="logits"/> (per chunk, its scored positions), as llama.cpp's log_softmax writes one:
        /// codes from the least logit (or 16 below the largest, if nearer) to the largest in 65535 steps.
        /// </summary>
        public static string Write(int[] tokens, int context, int vocabulary, float[][][] logits)
        {
            string path = Path.Combine(Fixtures.TempDirectory(), "llama-base.kld");
            using var writer = new BinaryWriter(File.Create(path));
            writer.Write("_logits_"u8);
            writer.Write(context);
            writer.Write(vocabulary);
            writer.Write(tokens.Length / context);
            foreach (int token in tokens)
            {
                writer.Write(token);
            }

            foreach (float[] row in logits.SelectMany(chunk => chunk))
            {
                float max = row.Max(), least = Math.Max(row.Min(), max - 16);
                double sum = row.Sum(l => Math.Exp(l - max));
                float scale = (max - least) / 65535f;
                writer.Write(scale);
                writer.Write(least - max - (float)Math.Log(sum));
                for (int t = 0; t < 2 * ((vocabulary + 1) / 2); t++)
                {
                    writer.Write(t < vocabulary && row[t] > least ? (ushort)Math.Round((row[t] - least) / scale) : (ushort)0);
                }
            }

            return path;
        }
    }
}
