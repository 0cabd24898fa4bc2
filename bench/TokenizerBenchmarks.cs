using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Microsoft.ML.Tokenizers;

namespace QwenSharp.Bench;

/// <summary>
/// Encode throughput of the Qwen2.5 tokenizer on one thread, ~1 MB of English prose, code, Chinese and
/// mixed scripts (bench/data/multilingual.txt): ours beside Hugging Face tokenizers (the Rust library,
/// through Tokenizers.DotNet) and Microsoft.ML.Tokenizers' BpeTokenizer set up for Qwen2 (byte-level, the
/// Qwen2 regex, its special tokens). Each keeps its word cache warm across iterations, as a server would.
/// </summary>
[Config(typeof(TokenizerBenchConfig))]
public class TokenizerBenchmarks
{
    private const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private string _text = "";
    private Tokenization.Tokenizer _ours = null!;
    private Tokenizers.DotNet.Tokenizer _huggingFace = null!;
    private BpeTokenizer _microsoftMl = null!;

    public static string RepositoryRoot
    {
        get
        {
            for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "QwenSharp.slnx")))
                {
                    return dir.FullName;
                }
            }

            throw new InvalidOperationException($"QwenSharp.slnx not found above {AppContext.BaseDirectory}");
        }
    }

    public static string CorpusPath => Path.Combine(RepositoryRoot, "bench", "data", "multilingual.txt");

    public static string TokenizerDirectory => Path.Combine(RepositoryRoot, "tests", "fixtures", "qwen2.5-0.5b-instruct");

    [GlobalSetup]
    public void Setup()
    {
        _text = File.ReadAllText(CorpusPath, Encoding.UTF8);
        _ours = Tokenization.Tokenizer.FromDirectory(TokenizerDirectory);
        _huggingFace = new Tokenizers.DotNet.Tokenizer(Path.Combine(TokenizerDirectory, "tokenizer.json"));
        _microsoftMl = CreateMicrosoftMl(Path.Combine(TokenizerDirectory, "tokenizer.json"));
    }

    [GlobalCleanup]
    public void Cleanup() => _huggingFace.Dispose();

    [Benchmark(Baseline = true, Description = "HF tokenizers (Rust, Tokenizers.DotNet)")]
    public int HuggingFace() => _huggingFace.Encode(_text).Length;

    [Benchmark(Description = "Microsoft.ML.Tokenizers BpeTokenizer")]
    public int MicrosoftMl() => _microsoftMl.EncodeToIds(_text).Count;

    [Benchmark(Description = "QwenSharp")]
    public int QwenSharp() => _ours.Encode(_text).Length;

    /// <summary>Microsoft.ML.Tokenizers' BPE with the vocabulary, merges and special tokens of a Qwen2 tokenizer.json.</summary>
    public static BpeTokenizer CreateMicrosoftMl(string tokenizerJson)
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(tokenizerJson));
        JsonElement model = document.RootElement.GetProperty("model");
        var vocabulary = model.GetProperty("vocab").EnumerateObject().Select(p => new KeyValuePair<string, int>(p.Name, p.Value.GetInt32())).ToList();
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.String ? m.GetString()! : $"{m[0].GetString()} {m[1].GetString()}").ToList();
        var specials = document.RootElement.GetProperty("added_tokens").EnumerateArray()
            .ToDictionary(t => t.GetProperty("content").GetString()!, t => t.GetProperty("id").GetInt32());
        return BpeTokenizer.Create(new BpeOptions(vocabulary)
        {
            Merges = merges,
            ByteLevel = true,
            SpecialTokens = specials,
            PreTokenizer = new RegexPreTokenizer(new Regex(Qwen2Pattern, RegexOptions.Compiled), specials),
        });
    }
}

/// <summary>A few iterations (each encodes the whole megabyte) and an MB/s column.</summary>
public sealed class TokenizerBenchConfig : ManualConfig
{
    public TokenizerBenchConfig()
    {
        AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(10));
        AddColumn(new MegabytesPerSecondColumn());
        AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default);
    }
}

/// <summary>UTF-8 megabytes of the corpus encoded per second.</summary>
public sealed class MegabytesPerSecondColumn : IColumn
{
    private static readonly Lazy<long> s_corpusBytes = new(() => new FileInfo(TokenizerBenchmarks.CorpusPath).Length);

    public string Id => "MB/s";

    public string ColumnName => "MB/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "UTF-8 bytes of bench/data/multilingual.txt encoded per second / 1e6 (one thread)";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
        summary[benchmarkCase]?.ResultStatistics is { } statistics
            ? (s_corpusBytes.Value / (statistics.Mean / 1e9) / 1e6).ToString("F2", CultureInfo.InvariantCulture)
            : "-";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;
}
