using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>
/// imatrix and quantize --imatrix against llama.cpp: the sums llama-imatrix adds up, taken from llama.cpp's own eval
/// callback on the same GGUF file and chunks; every weighted matrix's bytes from ggml's quantizer given the importance
/// computed here from the file's values (llama-quantize's division); the files' layouts read and written in the tests
/// from llama-imatrix's source, apart from our reader and writer.
/// </summary>
public sealed class ImatrixTests
{
    private const string Story =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. " +
        "She ran to the ball and kicked it high into the sky. The ball flew over the trees and landed in a pond. Lily was sad. " +
        "Her friend Tom came by and saw her crying. He said, \"Don't worry, Lily. I will help you get the ball.\" Tom found a long stick " +
        "and reached into the pond. He pulled the ball out and gave it to Lily. She smiled and said, \"Thank you, Tom!\" ";

    /// <summary>A qwen2 model with its own LM head (not tied), F32 weights, and the demo model's tokenizer (it adds BOS).</summary>
    private static readonly Lazy<string> s_model = new(() => GgufFixture.Write(TestTokenizers.WithTokenizer(RandomKQuantModel.Qwen2Folder.Value, Fixtures.DemoModel)));

    private static readonly string[] s_layerMatrices = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

    private static string TextFile(int repeats = 3)
    {
        string path = Path.Combine(Fixtures.TempDirectory(), "calibration.txt");
        File.WriteAllText(path, string.Concat(Enumerable.Repeat(Story, repeats)));
        return path;
    }

    private static string Number(int value) => value.ToString(CultureInfo.InvariantCulture);

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Imatrix_AddsUpWhatLlamaCppSeesAtEachProduct(string device)
    {
        TestBackends.RequireDevice(device);
        AddsUpWhatLlamaCppSees(s_model.Value, device, processOutput: true, layers: 2);
    }

    [Fact]
    public void Imatrix_OnTheDemoModel_AddsUpWhatLlamaCppSees()
    {
        // 64- and 172-wide inputs (not whole SIMD vectors: the sums' scalar tail) and a tied head (no output entry).
        AddsUpWhatLlamaCppSees(GgufFixture.Write(Fixtures.DemoModel, dequantized: true), "cpu", processOutput: false, layers: 5);
    }

    private static void AddsUpWhatLlamaCppSees(string gguf, string device, bool processOutput, int layers)
    {
        string text = TextFile(), output = Path.Combine(Fixtures.TempDirectory(), "imatrix.gguf");
        const int context = 64, chunks = 3;
        int[] ids = [1, .. LlamaCpp.Tokenize(gguf, [File.ReadAllText(text)])[0]];
        Assert.True(ids.Length >= context * chunks, $"{ids.Length} tokens");
        int[][] chunkIds = [.. Enumerable.Range(0, chunks).Select(c =>
        {
            int[] chunk = ids[(c * context)..((c + 1) * context)];
            chunk[0] = 1;    // llama-imatrix starts every chunk with BOS
            return chunk;
        })];
        Dictionary<string, (double[] Sums, double[] Squares, long Count)> theirs = LlamaCpp.ImportanceSums(gguf, chunkIds, processOutput);
        Assert.Equal((layers * 7) + (processOutput ? 1 : 0), theirs.Count);

        CliRunner.Result result = CliRunner.Run([.. new[] { "imatrix", "--model", gguf, "--file", text, "--context", Number(context), "--chunks", Number(chunks),
            "--out", output, "--device", device }, .. processOutput ? new[] { "--process-output" } : []]);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("Final estimate: PPL = ", result.Stdout, StringComparison.Ordinal);
        ImportanceMatrix ours = ImportanceMatrixFile.Read(output);
        Assert.Equal(theirs.Keys.Order(StringComparer.Ordinal), ours.Entries.Keys);
        Assert.Equal((chunks, context), (ours.ChunkCount, ours.ChunkSize));
        Assert.Equal([text], ours.Datasets);
        foreach ((string name, (double[] sums, double[] squares, long count)) in theirs)
        {
            ImportanceMatrix.Entry entry = ours.Entries[name];
            Assert.Equal([count], entry.Counts);
            Assert.Equal(chunks * context, count);
            for (int j = 0; j < squares.Length; j++)
            {
                Assert.True(Math.Abs(entry.SumOfSquares[j] - squares[j]) <= 1e-4 * squares[j] + 1e-12, $"{name}[{j}]: Σx² {entry.SumOfSquares[j]}, llama.cpp {squares[j]}");
                double scale = Math.Sqrt(squares[j] * count);
                Assert.True(Math.Abs(entry.Sums![j] - sums[j]) <= 1e-4 * scale + 1e-12, $"{name}[{j}]: Σx {entry.Sums[j]}, llama.cpp {sums[j]}");
            }
        }
    }

    [Fact]
    public void ImatrixFile_HasLlamaImatrixsLayout()
    {
        string gguf = s_model.Value, text = TextFile(), output = Path.Combine(Fixtures.TempDirectory(), "imatrix.gguf");
        Assert.Equal(0, CliRunner.Run("imatrix", "--model", gguf, "--file", text, "--context", "32", "--chunks", "2", "--no-ppl", "--out", output).ExitCode);

        using GgufFile file = GgufFile.Open(output);
        Dictionary<string, GgufRawValue> keys = file.RawMetadata.ToDictionary(k => k.Key);
        Assert.Equal("imatrix", file.Metadata["general.type"]);
        Assert.Equal(GgufValueType.UInt32, keys["imatrix.chunk_count"].Type);
        Assert.Equal(GgufValueType.UInt32, keys["imatrix.chunk_size"].Type);
        Assert.Equal((2L, 32L), ((long)file.Metadata["imatrix.chunk_count"], (long)file.Metadata["imatrix.chunk_size"]));
        Assert.Equal(new[] { text }, (string[])file.Metadata["imatrix.datasets"]);

        // Per matrix, names sorted: NAME.in_sum2 [256 columns, 1 expert], NAME.counts [1, 1] (64 tokens), NAME.in_sum; all F32.
        string[] names = [.. Enumerable.Range(0, 2).SelectMany(l => s_layerMatrices.Select(m => $"blk.{l}.{m}.weight")).Order(StringComparer.Ordinal)];
        string[] expected = [.. names.SelectMany(n => new[] { n + ".in_sum2", n + ".counts", n + ".in_sum" })];
        Assert.Equal(expected, file.TensorOrder.Select(t => t.Name));
        foreach (GgufTensorInfo tensor in file.TensorOrder)
        {
            Assert.Equal((int)GgmlType.F32, tensor.Type);
            long width = tensor.Name.StartsWith("blk.0.ffn_down", StringComparison.Ordinal) || tensor.Name.StartsWith("blk.1.ffn_down", StringComparison.Ordinal) ? 512 : 256;
            Assert.Equal(tensor.Name.EndsWith(".counts", StringComparison.Ordinal) ? [1L, 1L] : [width, 1L], tensor.Dimensions);
            if (tensor.Name.EndsWith(".counts", StringComparison.Ordinal))
            {
                Assert.Equal(64f, Floats(file, tensor)[0]);
            }
        }

        // q, k and v read the same input; so do gate and up.
        Assert.Equal(Floats(file, file.Tensors["blk.1.attn_q.weight.in_sum2"]), Floats(file, file.Tensors["blk.1.attn_v.weight.in_sum2"]));
        Assert.Equal(Floats(file, file.Tensors["blk.0.ffn_gate.weight.in_sum2"]), Floats(file, file.Tensors["blk.0.ffn_up.weight.in_sum2"]));
    }

    [Fact]
    public void LegacyOutput_HasImatrixDatsLayout_AndBothFormatsGiveTheSameWeights()
    {
        string gguf = s_model.Value, text = TextFile(), directory = Fixtures.TempDirectory();
        string modern = Path.Combine(directory, "imatrix.gguf"), legacy = Path.Combine(directory, "imatrix.dat");
        Assert.Equal(0, CliRunner.Run("imatrix", "--model", gguf, "--file", text, "--context", "32", "--chunks", "3", "--no-ppl", "--out", modern).ExitCode);
        Assert.Equal(0, CliRunner.Run("imatrix", "--model", gguf, "--file", text, "--context", "32", "--chunks", "3", "--no-ppl", "--out", legacy, "--output-format", "dat").ExitCode);

        // int32 entries; per entry: int32 name length, name, int32 calls, int32 values, float mean square × calls; int32 chunks; dataset.
        using GgufFile file = GgufFile.Open(modern);
        var reader = new BinaryReader(File.OpenRead(legacy), Encoding.UTF8);
        int entries = reader.ReadInt32();
        Assert.Equal(14, entries);
        string previous = "";
        for (int e = 0; e < entries; e++)
        {
            string name = Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32()));
            Assert.True(string.CompareOrdinal(previous, name) < 0, $"{name} after {previous}");
            previous = name;
            int calls = reader.ReadInt32(), values = reader.ReadInt32();
            Assert.Equal(3, calls);    // ⌈96 tokens / 32⌉
            float[] squares = Floats(file, file.Tensors[name + ".in_sum2"]);
            Assert.Equal(squares.Length, values);
            for (int j = 0; j < values; j++)
            {
                Assert.Equal(squares[j] / 96f * 3, reader.ReadSingle());
            }
        }

        Assert.Equal(3, reader.ReadInt32());
        Assert.Equal(text, Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32())));
        Assert.Equal(reader.BaseStream.Length, reader.BaseStream.Position);
        reader.Dispose();

        // What llama-quantize weighs with: Σx² / tokens from the GGUF file, (mean × calls) / calls from the .dat.
        ImportanceMatrix fromGguf = ImportanceMatrixFile.Read(modern), fromDat = ImportanceMatrixFile.Read(legacy);
        foreach (string name in fromGguf.Entries.Keys)
        {
            float[] a = fromGguf.ImportanceOf(name, fromGguf.Entries[name].Columns, "gguf")!, b = fromDat.ImportanceOf(name, a.Length, "dat")!;
            for (int j = 0; j < a.Length; j++)
            {
                Assert.Equal(a[j], b[j], a[j] * 1e-6f);
            }
        }
    }

    [Fact]
    public void AHandWrittenImatrix_ReadsAsLlamaQuantizeReadsIt()
    {
        // Written here from the layout: two experts' worth of one entry is refused for a dense matrix; a count of 0 weighs 1.
        string path = Path.Combine(Fixtures.TempDirectory(), "hand.gguf");
        new GgufWriter().Add("general.type", "imatrix").Add("imatrix.datasets", ["wiki.train.raw"]).Add("imatrix.chunk_count", 7u).Add("imatrix.chunk_size", 512u)
            .AddTensor("blk.0.attn_q.weight.in_sum2", GgmlType.F32, [1, 4], Bytes([8f, 4f, 2f, 0f]))
            .AddTensor("blk.0.attn_q.weight.counts", GgmlType.F32, [1, 1], Bytes([4f]))
            .AddTensor("blk.0.ffn_up.weight.in_sum2", GgmlType.F32, [1, 2], Bytes([3f, 5f]))
            .AddTensor("blk.0.ffn_up.weight.counts", GgmlType.F32, [1, 1], Bytes([0f]))
            .Write(path);

        ImportanceMatrix matrix = ImportanceMatrixFile.Read(path);

        Assert.Equal([2f, 1f, 0.5f, 0f], matrix.ImportanceOf("blk.0.attn_q.weight", 4, "hand")!);
        Assert.Equal([1f, 1f], matrix.ImportanceOf("blk.0.ffn_up.weight", 2, "hand")!);
        Assert.Null(matrix.ImportanceOf("blk.0.attn_k.weight", 4, "hand"));
        Assert.Equal((7, 512), (matrix.ChunkCount, matrix.ChunkSize));
        var error = Assert.Throws<InvalidDataException>(() => matrix.ImportanceOf("blk.0.attn_q.weight", 8, "hand"));
        Assert.Contains("'blk.0.attn_q.weight' has 4 values, the tensor 8 columns", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A synthetic importance matrix over the random qwen2 model's layer matrices (llama-imatrix's GGUF layout, written here).</summary>
    private static string SyntheticImatrix(int seed, int columnsOff = 0, int firstLayer = 0)
    {
        var random = new Random(seed);
        string path = Path.Combine(Fixtures.TempDirectory(), "synthetic.imatrix.gguf");
        var writer = new GgufWriter().Add("general.type", "imatrix").Add("imatrix.datasets", ["calibration.txt"])
            .Add("imatrix.chunk_count", 5u).Add("imatrix.chunk_size", 512u);
        foreach (string name in Enumerable.Range(firstLayer, 2).SelectMany(l => s_layerMatrices.Select(m => $"blk.{l}.{m}.weight")).Order(StringComparer.Ordinal))
        {
            int columns = (name.Contains("ffn_down", StringComparison.Ordinal) ? 512 : 256) - columnsOff;
            float[] squares = [.. Enumerable.Range(0, columns).Select(_ => (float)(Math.Exp(3 * (random.NextDouble() - 0.5)) * 2560))];
            writer.AddTensor(name + ".in_sum2", GgmlType.F32, [1, columns], Bytes(squares))
                .AddTensor(name + ".counts", GgmlType.F32, [1, 1], Bytes([2560f]));
        }

        writer.Write(path);
        return path;
    }

    public static TheoryData<string, bool> Sources => new() { { "q4_k_m", false }, { "q3_k_m", false }, { "q5_0", false }, { "iq4_xs", false }, { "iq4_nl", true }, { "q4_k_m", true }, { "q2_k", true }, { "iq3_xs", false }, { "iq3_m", true }, { "iq3_xxs", false }, { "iq2_m", false }, { "iq2_s", false }, { "iq2_xs", true }, { "iq2_xxs", false }, { "iq1_s", false }, { "iq1_m", true } };

    [Fact]
    public void Iq4Mixes_WithAnImportanceMatrix_LeaveTheFirstDownProjectionsAlone()
    {
        // llama-quantize's IQ4_NL/IQ4_XS raise the first eighth's ffn_down to Q5_K only without a matrix (has_imatrix).
        var shape = new ModelShape(Layers: 16, TiedEmbeddings: false, QueriesPerKvHead: 2);
        QuantizationMix.TryParse("iq4_xs", out QuantizationMix? mix);
        Assert.Equal(DType.Q5_K, mix!.TypeOf("blk.1.ffn_down.weight", 512, DType.F32, shape));
        var any = new ImportanceMatrix(new Dictionary<string, ImportanceMatrix.Entry>(), [], 0, 0);
        Assert.Equal(DType.IQ4_XS, mix.WithImportance(any).TypeOf("blk.1.ffn_down.weight", 512, DType.F32, shape));
        Assert.Equal(DType.IQ4_XS, mix.TypeOf("blk.2.ffn_down.weight", 512, DType.F32, shape));
        Assert.Equal(DType.IQ4_NL, mix.TypeOf("blk.2.ffn_up.weight", 896, DType.F32, shape));
    }

    [Fact]
    public void Iq3XsMix_IsLlamaQuantizesAndNeedsAnImportanceMatrix()
    {
        // llama_tensor_get_type's IQ3_XS: IQ3_S, the query and key projections and the middle layers' gate and up IQ3_XXS,
        // the value projection Q4_K where 4 or more query heads share a key/value head; IQ3_XXS only with importance.
        var shape = new ModelShape(Layers: 16, TiedEmbeddings: false, QueriesPerKvHead: 4);
        QuantizationMix.TryParse("iq3_xs", out QuantizationMix? plain);
        QuantizationMix mix = plain!.WithImportance(Covering(16));
        foreach ((string name, DType type) in new (string, DType)[]
        {
            ("blk.0.attn_q.weight", DType.IQ3_XXS), ("blk.0.attn_k.weight", DType.IQ3_XXS), ("blk.0.attn_v.weight", DType.Q4_K),
            ("blk.0.attn_output.weight", DType.IQ3_S), ("blk.1.ffn_gate.weight", DType.IQ3_S), ("blk.2.ffn_gate.weight", DType.IQ3_XXS),
            ("blk.13.ffn_up.weight", DType.IQ3_XXS), ("blk.14.ffn_up.weight", DType.IQ3_S), ("blk.5.ffn_down.weight", DType.IQ3_S),
            ("token_embd.weight", DType.IQ3_S), ("output.weight", DType.Q6_K),
        })
        {
            Assert.True(type == mix.TypeOf(name, 512, DType.F32, shape), $"{name}: {mix.TypeOf(name, 512, DType.F32, shape)}, llama-quantize {type}");
        }

        var error = Assert.Throws<NotSupportedException>(() => plain.TypeOf("blk.0.attn_q.weight", 512, DType.F32, shape));
        Assert.Contains("tensor 'blk.0.attn_q.weight': IQ3_XXS needs an importance matrix", error.Message, StringComparison.Ordinal);
        CliRunner.Result refused = CliRunner.Run("quantize", "--model", RandomKQuantModel.Qwen2Folder.Value, "--type", "iq3_xs", "--out", Path.Combine(Fixtures.TempDirectory(), "x.gguf"));
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("IQ3_XXS needs an importance matrix, as llama-quantize requires", Assert.Single(refused.ErrorLines), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("iq3_xxs", 2)]
    [InlineData("iq3_xxs", 4)]
    [InlineData("iq2_m", 2)]
    [InlineData("iq2_m", 8)]
    [InlineData("iq2_s", 2)]
    [InlineData("iq2_xs", 2)]
    [InlineData("iq2_xxs", 4)]
    [InlineData("iq1_s", 2)]
    [InlineData("iq1_m", 4)]
    public void LowBitMixes_AreLlamaQuantizes(string name, int queriesPerKvHead)
    {
        // llama_tensor_get_type's IQ3_XXS (IQ2_S query and key, IQ3_S attention output and embedding) and IQ2 mixes (IQ2_M:
        // IQ2_S, IQ2_S: IQ2_XS, each with IQ3_S value, attention-output, first eighth's down projections and embedding;
        // IQ2_XS, IQ2_XXS: those but the attention output in Q2_K), with importance; the output in Q5_K; the value projection
        // Q4_K where 4 or more query heads share a key/value head, not raised further in an 80-layer IQ2 mix.
        var shape = new ModelShape(Layers: 16, TiedEmbeddings: false, QueriesPerKvHead: queriesPerKvHead);
        QuantizationMix.TryParse(name, out QuantizationMix? plain);
        QuantizationMix mix = plain!.WithImportance(Covering(80));
        bool iq2 = name.StartsWith("iq2", StringComparison.Ordinal) || name.StartsWith("iq1", StringComparison.Ordinal), wider = name is "iq2_m" or "iq2_s";
        DType main = plain.Base, side = wider ? DType.IQ3_S : DType.Q2_K;
        DType value = queriesPerKvHead >= 4 ? DType.Q4_K : iq2 ? side : DType.IQ3_XXS;
        foreach ((string tensor, DType type) in new (string, DType)[]
        {
            ("blk.0.attn_q.weight", iq2 ? main : DType.IQ2_S), ("blk.0.attn_k.weight", iq2 ? main : DType.IQ2_S), ("blk.3.attn_v.weight", value),
            ("blk.0.attn_output.weight", name.StartsWith("iq1", StringComparison.Ordinal) ? DType.IQ2_XXS : iq2 && !wider ? main : DType.IQ3_S), ("blk.1.ffn_down.weight", iq2 ? side : main), ("blk.2.ffn_down.weight", main),
            ("blk.5.ffn_up.weight", main), ("token_embd.weight", iq2 ? side : DType.IQ3_S), ("output.weight", DType.Q5_K),
        })
        {
            Assert.True(type == mix.TypeOf(tensor, 512, DType.F32, shape), $"{name}: {tensor}: {mix.TypeOf(tensor, 512, DType.F32, shape)}, llama-quantize {type}");
        }

        // llama.cpp's 70B rule raises IQ3_XXS's Q4_K value projection to Q5_K in 80 layers, not IQ2_M's (picked in its own branch).
        Assert.Equal(iq2 ? DType.Q4_K : DType.Q5_K, mix.TypeOf("blk.3.attn_v.weight", 512, DType.F32, shape with { Layers = 80, QueriesPerKvHead = 8 }));
        var error = Assert.Throws<NotSupportedException>(() => plain.TypeOf("blk.2.ffn_up.weight", 512, DType.F32, shape));
        Assert.Contains($"needs an importance matrix, as llama-quantize requires", error.Message, StringComparison.Ordinal);
        var partial = new ImportanceMatrix(new Dictionary<string, ImportanceMatrix.Entry> { ["blk.2.ffn_gate.weight"] = new([1f], null, [1]) }, [], 0, 0);
        error = Assert.Throws<NotSupportedException>(() => plain.WithImportance(partial).TypeOf("blk.2.ffn_up.weight", 512, DType.F32, shape));
        Assert.Contains("tensor 'blk.2.ffn_up.weight': ", error.Message, StringComparison.Ordinal);
        Assert.Contains("needs the importance matrix's entry for it", error.Message, StringComparison.Ordinal);
    }

    /// <summary>An importance matrix with an entry for every matrix of <paramref name="layers"/> layers (the mixes' choices only look at which exist).</summary>
    private static ImportanceMatrix Covering(int layers) => new(
        Enumerable.Range(0, layers).SelectMany(l => new[] { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" }.Select(r => $"blk.{l}.{r}.weight"))
            .ToDictionary(n => n, _ => new ImportanceMatrix.Entry([1f], null, [1])), [], 0, 0);

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Iq2MAtLoad_GivesTheLogitsOfItsFile(string device)
    {
        // --quantize iq2_m holds IQ2_S as Q8_0 of its values and IQ3_S as Q6_K, as loading the IQ2_M file does.
        TestBackends.RequireDevice(device);
        string folder = RandomKQuantModel.Qwen2Folder.Value, imatrix = SyntheticImatrix(seed: 13), file = Path.Combine(Fixtures.TempDirectory(), "iq2_m.gguf");
        CliRunner.Result quantized = CliRunner.Run("quantize", "--model", folder, "--type", "iq2_m", "--imatrix", imatrix, "--out", file);
        Assert.True(quantized.ExitCode == 0, quantized.Stderr);
        using (GgufFile written = GgufFile.Open(file))
        {
            Assert.Equal(GgmlType.IQ2_S, (GgmlType)written.Tensors["blk.1.ffn_up.weight"].Type);
        }

        Assert.True(QuantizationMix.TryParse("iq2_m", out QuantizationMix? mix));
        int[] ids = [1, 17, 300, 42, 7];
        float[][] fromFile, atLoad;
        using (IBackend backend = TestBackends.Create(device))
        using (Qwen2Model model = Qwen2Model.Load(file, backend))
        {
            fromFile = Model.ReferenceModelTests.AllPositionLogits(model, ids);
        }

        using (IBackend backend = TestBackends.Create(device))
        using (Qwen2Model model = Qwen2Model.Load(folder, backend, mix.WithImportance(ImportanceMatrixFile.Read(imatrix))))
        {
            Assert.Equal(DType.Q8_0, model.Weights.Layers[1].UpProj.DType);
            atLoad = Model.ReferenceModelTests.AllPositionLogits(model, ids);
        }

        Assert.Equal(fromFile, atLoad);
    }

    [Theory]
    [MemberData(nameof(Sources))]
    public void Quantize_WithTheImatrix_WeighsEachMatrixAsGgmlDoes(string mix, bool fromGguf)
    {
        string folder = RandomKQuantModel.Qwen2Folder.Value, imatrix = SyntheticImatrix(seed: mix.Length);
        string source = fromGguf ? GgufFixture.Write(folder) : folder, output = Path.Combine(Fixtures.TempDirectory(), $"{mix}.gguf");

        CliRunner.Result result = CliRunner.Run("quantize", "--model", source, "--type", mix, "--imatrix", imatrix, "--out", output);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains($"matrices weighted by {imatrix} (14 entries, 5 chunks)", result.Stdout, StringComparison.Ordinal);
        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(folder);
        using GgufFile written = GgufFile.Open(output);
        using GgufFile importance = GgufFile.Open(imatrix);
        int weighted = 0;
        foreach (string name in checkpoint.TensorNames)
        {
            Assert.True(checkpoint.TryGetView(name, out TensorView? view));
            string ggufName = GgufCheckpoint.GgufName(name);
            if (view.Shape.Length != 2 || !written.Tensors.TryGetValue(ggufName, out GgufTensorInfo? tensor) || tensor.Type == (int)GgmlType.F32)
            {
                continue;
            }

            // llama-quantize's weights: Σx² / count, in f32.
            float[]? weights = importance.Tensors.TryGetValue(ggufName + ".in_sum2", out GgufTensorInfo? squares)
                ? [.. Floats(importance, squares).Select(v => v / 2560f)]
                : null;
            weighted += weights is null ? 0 : 1;
            float[] values = TensorValues.ToSingle(view);
            int rows = (int)view.Shape[0], cols = (int)view.Shape[1];
            byte[] expected = Ggml.QuantizeChunk(tensor.Type, values, rows, cols, weights, (int)(tensor.ByteLength / rows));
            Assert.True(Bytes(written, tensor).SequenceEqual(expected), $"{mix}: tensor '{ggufName}' ({GgmlTypes.Name(tensor.Type)}) differs from ggml's quantizer with{(weights is null ? "out" : "")} the importance");
        }

        Assert.Equal(14, weighted);
        Assert.Equal(imatrix, written.Metadata["quantize.imatrix.file"]);
        Assert.Equal("calibration.txt", written.Metadata["quantize.imatrix.dataset"]);
        Dictionary<string, GgufRawValue> keys = written.RawMetadata.ToDictionary(k => k.Key);
        Assert.Equal(GgufValueType.UInt32, keys["quantize.imatrix.entries_count"].Type);
        Assert.Equal((14L, 5L), ((long)written.Metadata["quantize.imatrix.entries_count"], (long)written.Metadata["quantize.imatrix.chunks_count"]));
    }

    [Fact]
    public unsafe void QuantizeAtLoad_WithTheImatrix_HoldsTheBytesQuantizeWrites()
    {
        string folder = RandomKQuantModel.Qwen2Folder.Value, imatrix = SyntheticImatrix(seed: 11), output = Path.Combine(Fixtures.TempDirectory(), "q3_k_m.gguf");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", folder, "--type", "q3_k_m", "--imatrix", imatrix, "--out", output).ExitCode);
        Assert.True(QuantizationMix.TryParse("q3_k_m", out QuantizationMix? mix));
        global::QwenSharp.Qwen2.Qwen2Config config = global::QwenSharp.Qwen2.Qwen2Config.Load(Path.Combine(folder, "config.json"));

        using var source = new QuantizingTensorSource(SafeTensorsCheckpoint.Open(folder), mix.WithImportance(ImportanceMatrixFile.Read(imatrix)), config.QuantizationShape);
        using GgufFile written = GgufFile.Open(output);
        foreach (string name in new[] { "model.layers.0.self_attn.v_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight" })
        {
            Assert.True(source.TryGetView(name, out TensorView? view));
            GgufTensorInfo tensor = written.Tensors[GgufCheckpoint.GgufName(name)];
            Assert.Equal(GgmlTypes.Of(view.DType), (GgmlType)tensor.Type);
            Assert.True(new ReadOnlySpan<byte>((void*)view.Data, (int)tensor.ByteLength).SequenceEqual(Bytes(written, tensor)), name);
        }

        CliRunner.Result run = CliRunner.Run("generate", "--model", folder, "--prompt-ids", "1,2,3", "--max-new-tokens", "2", "--greedy", "--quantize", "q3_k_m", "--imatrix", imatrix);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Contains("--imatrix rounds the matrices --quantize quantizes at load", CliRunner.Run("generate", "--model", folder, "--prompt-ids", "1", "--imatrix", imatrix).Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void IncludeWeights_WeighsOnlyTheMatricesNamed()
    {
        string folder = RandomKQuantModel.Qwen2Folder.Value, imatrix = SyntheticImatrix(seed: 3), output = Path.Combine(Fixtures.TempDirectory(), "only-v.gguf");

        CliRunner.Result result = CliRunner.Run("quantize", "--model", folder, "--type", "q4_k", "--imatrix", imatrix, "--include-weights", "attn_v", "--out", output);

        Assert.True(result.ExitCode == 0, result.Stderr);
        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(folder);
        using GgufFile written = GgufFile.Open(output);
        Assert.Equal(2L, (long)written.Metadata["quantize.imatrix.entries_count"]);
        foreach (string layerMatrix in new[] { "attn_v", "attn_q" })
        {
            string ggufName = $"blk.1.{layerMatrix}.weight";
            Assert.True(checkpoint.TryGetView(checkpoint.TensorNames.First(n => GgufCheckpoint.GgufName(n) == ggufName), out TensorView? view));
            GgufTensorInfo tensor = written.Tensors[ggufName];
            byte[] unweighted = Ggml.QuantizeChunk(tensor.Type, TensorValues.ToSingle(view), (int)view.Shape[0], (int)view.Shape[1], null, (int)(tensor.ByteLength / view.Shape[0]));
            Assert.Equal(layerMatrix == "attn_q", Bytes(written, tensor).SequenceEqual(unweighted));
        }
    }

    [Fact]
    public void BadInput_IsOneLineNamingWhatIsWrong()
    {
        string folder = RandomKQuantModel.Qwen2Folder.Value, text = TextFile(), directory = Fixtures.TempDirectory();
        string existing = Path.Combine(directory, "exists.gguf");
        File.WriteAllText(existing, "mine");
        string narrow = SyntheticImatrix(seed: 5, columnsOff: 32);
        string truncated = Path.Combine(directory, "truncated.dat");
        File.WriteAllBytes(truncated, [2, 0, 0, 0, 19, 0, 0, 0, .. "blk.0.attn_q.weight"u8.ToArray(), 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 128, 63]);
        string model = GgufFixture.Write(Fixtures.DemoModel);
        string output = Path.Combine(directory, "out.gguf");
        (string[] Args, string Message)[] cases =
        [
            (["imatrix", "--file", text, "--out", existing], $"--out {existing} already exists"),
            (["imatrix", "--file", text, "--output-format", "xml", "--out", output], "--output-format 'xml' is not one of gguf, dat"),
            (["imatrix", "--out", output], "imatrix needs --file F"),
            (["imatrix", "--in-file", Path.Combine(directory, "none.gguf"), "--out", output], "--in-file " + Path.Combine(directory, "none.gguf") + ": file not found"),
            (["imatrix", "--in-file", SyntheticImatrix(seed: 8), "--in-file", narrow, "--out", output], "entry 'blk.0.attn_k.weight' has 224 values where the matrices before it have 256: they were computed for different models"),
            (["imatrix", "--file", TextFile(repeats: 1), "--context", "32", "--chunk", "1000", "--out", output], "fewer than one chunk of 32 (--context) after the 1000 skipped (--chunk)"),
            (["imatrix", "--file", text, "--output-frequency", "-1", "--out", output], "--output-frequency '-1' is not an integer >= 0"),
            (["imatrix", "--file", TextFile(repeats: 1), "--context", "500", "--out", output], "fewer than one chunk of 500 (--context)"),
            (["quantize", "--model", folder, "--type", "q4_k_m", "--imatrix", narrow, "--out", output], "has 224 values, the tensor 256 columns: it was computed for another model"),
            (["quantize", "--model", folder, "--type", "q4_0", "--imatrix", SyntheticImatrix(seed: 6, firstLayer: 40), "--out", output], "none of its 14 entries (blk.40.attn_k.weight, ...) names a matrix of this model"),
            (["quantize", "--model", folder, "--type", "q4_k_m", "--include-weights", "attn_v", "--out", output], "--include-weights chooses the matrices --imatrix weighs"),
            (["quantize", "--model", folder, "--type", "q4_k_m", "--imatrix", narrow, "--include-weights", "a", "--exclude-weights", "b", "--out", output], "--include-weights and --exclude-weights do not go together"),
            (["quantize", "--model", folder, "--type", "q4_k_m", "--imatrix", Path.Combine(directory, "none.gguf"), "--out", output], "none.gguf: file not found"),
            (["quantize", "--model", folder, "--type", "q4_k_m", "--imatrix", model, "--out", output], "no importance-matrix entries"),
            (["quantize", "--model", folder, "--type", "q4_k_m", "--imatrix", truncated, "--out", output], "a truncated or corrupt imatrix.dat"),
            (["generate", "--model", SyntheticImatrix(seed: 7), "--prompt", "x"], "is an importance matrix (llama-imatrix's), not a model"),
        ];
        foreach ((string[] args, string message) in cases)
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.True(result.ExitCode == 2, $"{string.Join(' ', args)}: exit {result.ExitCode}, {result.Stderr}");
            string line = Assert.Single(result.ErrorLines);
            Assert.Contains(message, line, StringComparison.Ordinal);
        }

        Assert.Equal("mine", File.ReadAllText(existing));
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void InFile_AddsToTheSums_AsOneRunOverAllTheChunks_AndCombinesWithoutAText()
    {
        string gguf = s_model.Value, text = TextFile(), directory = Fixtures.TempDirectory();
        string Run(string name, params string[] options)
        {
            string output = Path.Combine(directory, name);
            CliRunner.Result result = CliRunner.Run([.. new[] { "imatrix", "--model", gguf, "--context", "32", "--no-ppl", "--out", output }, .. options]);
            Assert.True(result.ExitCode == 0, result.Stderr);
            return output;
        }

        ImportanceMatrix whole = ImportanceMatrixFile.Read(Run("whole.gguf", "--file", text, "--chunks", "4"));
        string first = Run("first.gguf", "--file", text, "--chunks", "2");
        string second = Run("second.gguf", "--file", text, "--chunk", "2", "--chunks", "2");
        string firstDat = Run("first.dat", "--file", text, "--chunks", "2", "--output-format", "dat");

        // Combined without a text (GGUF with GGUF, and the legacy file's mean squares × calls back into sums), and one run
        // that goes on from the first half: each is the whole run's sums, counts and chunks.
        CliRunner.Result combine = CliRunner.Run("imatrix", "--in-file", first, "--in-file", second, "--out", Path.Combine(directory, "combined.gguf"));
        Assert.True(combine.ExitCode == 0, combine.Stderr);
        Assert.Equal($"wrote {Path.Combine(directory, "combined.gguf")}: 14 entries combined from 2 files, 4 chunks of 32 tokens", combine.Stdout.Trim());
        foreach (ImportanceMatrix matrix in new[]
        {
            ImportanceMatrixFile.Read(Path.Combine(directory, "combined.gguf")),
            ImportanceMatrixFile.Read(Run("from-dat.gguf", "--in-file", firstDat, "--in-file", second)),
            ImportanceMatrixFile.Read(Run("continued.gguf", "--in-file", first, "--file", text, "--chunk", "2", "--chunks", "2")),
        })
        {
            Assert.Equal((4, 32), (matrix.ChunkCount, matrix.ChunkSize));
            Assert.Equal(whole.Entries.Keys, matrix.Entries.Keys);
            foreach ((string name, ImportanceMatrix.Entry entry) in whole.Entries)
            {
                ImportanceMatrix.Entry combined = matrix.Entries[name];
                Assert.Equal(entry.Counts, combined.Counts);
                for (int j = 0; j < entry.SumOfSquares.Length; j++)
                {
                    Assert.True(Math.Abs(entry.SumOfSquares[j] - combined.SumOfSquares[j]) <= 1e-5 * Math.Abs(entry.SumOfSquares[j]), $"{name}[{j}]: {entry.SumOfSquares[j]} against {combined.SumOfSquares[j]}");
                }
            }
        }

        Assert.Equal([text, text], ImportanceMatrixFile.Read(Path.Combine(directory, "combined.gguf")).Datasets);
        Assert.Null(ImportanceMatrixFile.Read(Path.Combine(directory, "from-dat.gguf")).Entries.First().Value.Sums);   // imatrix.dat has none
    }

    /// <summary>
    /// <c>--show-statistics</c> on a matrix made by hand, against statistics worked out by hand from llama-imatrix's definitions
    /// (README of tools/imatrix): blk.0's four mean squares of 2 (Σx² 4 over 2 tokens) are uniform: entropy 2 bits, 100%
    /// normalized, σ 0, no ZD; blk.1's 1, 0, 0, 3 (one token): Σ 4, μ 1, σ √1.5 = 1.2247, half active, entropy
    /// −(¼ log₂ ¼ + ¾ log₂ ¾) = 0.8113 bits, 40.56% of log₂ 4, one value (3) over a σ above μ: 25%; its Σx² against blk.0's,
    /// 16 / (8 × √10) = 0.6325. An expert without tokens is left out of N (blk.2's second); a tensor without any is named and
    /// left out. It writes nothing and refuses anything but one --in-file.
    /// </summary>
    [Fact]
    public void ShowStatistics_PrintsEachTensorsAndLayersStatistics_AsWorkedOutByHand()
    {
        string directory = Fixtures.TempDirectory(), path = Path.Combine(directory, "hand.gguf");
        var entries = new SortedDictionary<string, ImportanceMatrix.Entry>(StringComparer.Ordinal)
        {
            ["blk.0.attn_q.weight"] = new([4, 4, 4, 4], null, [2]),
            ["blk.1.attn_q.weight"] = new([1, 0, 0, 3], null, [1]),
            ["blk.1.ffn_up.weight"] = new([5, 5], null, [0]),
            ["blk.2.ffn_down_exps.weight"] = new([2, 2, 7, 7], null, [2, 0]),
        };
        ImportanceMatrixFile.WriteGguf(new ImportanceMatrix(entries, ["hand.txt"], 1, 4), path);
        CliRunner.Result result = CliRunner.Run("imatrix", "--in-file", path, "--show-statistics");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("tensor blk.1.ffn_up.weight has no tokens", result.Stderr, StringComparison.Ordinal);
        string[] lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        string[] Row(string first, string second) =>
            lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Single(f => f.Length > 2 && f[0] == first && f[1] == second);

        // Layer, tensor, Σ, min, max, μ, σ, % active, N, entropy, E (norm), ZD, CosSim.
        Assert.Equal(["0", "attn_q", "8.00", "2.0000", "2.0000", "2.0000", "0.0000", "100.00%", "4", "2.0000", "100.00%", "0.00%", "-"], Row("0", "attn_q"));
        Assert.Equal(["1", "attn_q", "4.00", "0.0000", "3.0000", "1.0000", "1.2247", "50.00%", "4", "0.8113", "40.56%", "25.00%", "0.6325"], Row("1", "attn_q"));
        Assert.Equal(["2", "ffn_down_exps", "2.00", "1.0000", "1.0000", "1.0000", "0.0000", "100.00%", "2", "1.0000", "100.00%", "0.00%", "-"], Row("2", "ffn_down_exps"));
        Assert.DoesNotContain(lines, l => l.Contains("ffn_up", StringComparison.Ordinal));

        // Per layer: μΣ, μZD, μCosSim (one tensor each).
        Assert.Equal(["0", "8.00", "0.0000%", "-"], Row("0", "8.00"));
        Assert.Equal(["1", "4.00", "25.0000%", "0.6325"], Row("1", "4.00"));
        Assert.Equal(["2", "2.00", "0.0000%", "-"], Row("2", "2.00"));
        Assert.Equal(["hand.gguf"], Directory.GetFiles(directory).Select(Path.GetFileName));

        foreach (string[] args in new[]
        {
            new[] { "imatrix", "--show-statistics" },
            ["imatrix", "--in-file", path, "--in-file", path, "--show-statistics"],
            ["imatrix", "--in-file", path, "--file", path, "--show-statistics"],
        })
        {
            CliRunner.Result refused = CliRunner.Run(args);
            Assert.True(refused.ExitCode == 2, $"{string.Join(' ', args)}: exit {refused.ExitCode}");
            Assert.Contains("--show-statistics reads one importance matrix", Assert.Single(refused.ErrorLines), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void PeriodicSaves_WriteTheSumsSoFar_NumberedOnFromTheMatricesGiven()
    {
        string gguf = s_model.Value, text = TextFile(), directory = Fixtures.TempDirectory();
        string output = Path.Combine(directory, "imatrix.gguf"), two = Path.Combine(directory, "two.gguf");
        string[] common = ["imatrix", "--model", gguf, "--file", text, "--context", "32", "--no-ppl"];
        Assert.Equal(0, CliRunner.Run([.. common, "--chunks", "2", "--out", two]).ExitCode);

        CliRunner.Result result = CliRunner.Run([.. common, "--chunks", "4", "--output-frequency", "1", "--save-frequency", "2", "--out", output]);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(new[] { output, output + ".at_2", output + ".at_4", two }.Order(StringComparer.Ordinal), Directory.GetFiles(directory).Order(StringComparer.Ordinal));
        Assert.Equal(File.ReadAllBytes(two), File.ReadAllBytes(output + ".at_2"));
        Assert.Equal(File.ReadAllBytes(output), File.ReadAllBytes(output + ".at_4"));

        // Going on from a two-chunk matrix, the saves count its chunks too (llama-imatrix's numbering).
        string more = Path.Combine(directory, "more.gguf");
        Assert.Equal(0, CliRunner.Run([.. common, "--in-file", two, "--chunk", "2", "--chunks", "2", "--save-frequency", "1", "--out", more]).ExitCode);
        Assert.True(File.Exists(more + ".at_3") && File.Exists(more + ".at_4") && !File.Exists(more + ".at_1"));
        Assert.Equal(3, ImportanceMatrixFile.Read(more + ".at_3").ChunkCount);
    }

    [Fact]
    public void ProcessOutput_OnATiedHead_SaysItHasNoEntry()
    {
        string text = TextFile(), output = Path.Combine(Fixtures.TempDirectory(), "demo.imatrix.gguf");

        CliRunner.Result result = CliRunner.Run("imatrix", "--file", text, "--context", "32", "--chunks", "2", "--process-output", "--out", output);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("note: --process-output: this model's LM head is its embedding (tied)", result.Stderr, StringComparison.Ordinal);
        ImportanceMatrix matrix = ImportanceMatrixFile.Read(output);
        Assert.Equal(5 * 7, matrix.Entries.Count);
        Assert.DoesNotContain("output.weight", matrix.Entries.Keys);
    }

    private static unsafe float[] Floats(GgufFile file, GgufTensorInfo tensor) =>
        new ReadOnlySpan<float>((void*)file.DataOf(tensor), (int)(tensor.ByteLength / 4)).ToArray();

    private static unsafe byte[] Bytes(GgufFile file, GgufTensorInfo tensor) =>
        new ReadOnlySpan<byte>((void*)file.DataOf(tensor), (int)tensor.ByteLength).ToArray();

    private static byte[] Bytes(float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
