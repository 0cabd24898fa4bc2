using System.Globalization;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp quantize</c>: a Hugging Face folder, or a GGUF file, as one GGUF file that llama.cpp (and QwenSharp) load.</summary>
internal sealed class QuantizeCommand : ICommand
{
    /// <summary>The options that change what a tensor holds, which --type copy does not take.</summary>
    private static readonly string[] s_changers =
        ["imatrix", "include-weights", "exclude-weights", "output-tensor-type", "token-embedding-type", "leave-output-tensor", "tensor-type", "tensor-type-file", "allow-requantize", "lora"];

    public string Name => "quantize";

    public string Summary => "write a model folder (or an F16/BF16 GGUF file) as a GGUF file (Q4_K_M, Q5_K_M, Q3_K_M, Q2_K, IQ4_XS, IQ3_M, Q8_0, Q4_0, ... or F16, BF16, F32) that llama.cpp loads";

    public string Usage => "qwensharp quantize --model DIR|FILE.gguf --type q4_k_m|q5_k_m|q3_k_m|q2_k|...|q8_0|q4_0|...|f16|bf16|f32|copy --out FILE.gguf [--split-max-size N(M|G) | --split-max-tensors N | --keep-split] [--imatrix FILE [--include-weights NAME]... [--exclude-weights NAME]...] [--lora PATH [--lora-scale S]]...";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("model", "DIR|FILE.gguf", "the Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or a GGUF file (llama.cpp's F16, BF16 or F32 one, as llama-quantize takes; a split model by its first part, NAME-00001-of-0000N.gguf): its metadata is carried over as it is"),
        new("type", "T", "copy (every tensor as stored, metadata as it is: a split model merged into one file, or with --split-max-size a file split, as llama-gguf-split does; llama-quantize's COPY), llama-quantize's mixes q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, iq4_nl, iq4_xs, iq3_s, iq3_m, iq3_xs, iq3_xxs, iq2_m, iq2_s, iq2_xs, iq2_xxs, iq1_s, iq1_m (iq3_xs and below need --imatrix) (its types tensor by tensor: the output, or an embedding tied to it, in q6_k or q8_0; some layers' value, down and attention-output projections with more bits), or one type for every matrix: q8_0, q4_0, q5_0, q4_1 or q5_1 (for rows of whole 32-value blocks), q3_k, q4_k, q5_k or q6_k (whole 256-value super-blocks), f16, bf16 or f32; a matrix whose rows are not whole blocks takes llama.cpp's fallback (q4_0 for q2_k and q3_k, q5_0 for q4_k, q5_1 for q5_k, q8_0 for q6_k, iq4_nl for iq4_xs and the iq3, iq2 and iq1 types) or keeps its stored type"),
        new("out", "FILE.gguf", "the file to write (it must not exist yet); split: FILE-00001-of-0000N.gguf, ..."),
        new("split-max-size", "N(M|G)", "split the model across files of at most about N megabytes (M, 10^6 bytes) or gigabytes (G) of tensors each, as llama-gguf-split --split-max-size does (Hugging Face takes files up to 50G); llama.cpp and QwenSharp load the first part"),
        new("split-max-tensors", "N", "split the model across files of N tensors each, as llama-gguf-split --split-max-tensors does"),
        new("keep-split", null, "with a split GGUF model as --model: write the parts as its parts hold the tensors (llama-quantize's --keep-split)"),
        new("lora", "PATH", "a LoRA adapter (PEFT folder, GGUF adapter or Hub name) merged into the weights it changes, as llama.cpp's export-lora does; repeat for several", Repeatable: true),
        ModelLoading.LoraScale,
        new("imatrix", "FILE", "quantize with an importance matrix (qwensharp imatrix's or llama-imatrix's file, GGUF or the older imatrix.dat): each matrix it has an entry for is rounded where its inputs matter most, as llama-quantize --imatrix does (q4_0, q4_1, q5_0, q5_1, the k-quants, iq4_nl/iq4_xs, iq3_xxs/iq3_s, iq2_s/iq2_xs/iq2_xxs and iq1_s/iq1_m; q8_0 has no weighted form)"),
        new("include-weights", "NAME", "with --imatrix: use it only for the matrices whose names contain NAME (blk.0., attn_v, ...); repeat for several", Repeatable: true),
        new("exclude-weights", "NAME", "with --imatrix: not for the matrices whose names contain NAME; repeat for several", Repeatable: true),
        new("output-tensor-type", "T", "the output matrix in type T (and an embedding tied to it, where a mix picks its type), over the mix's choice (llama-quantize's option)"),
        new("token-embedding-type", "T", "token_embd.weight in type T, tied to the output or not (llama-quantize's option)"),
        new("leave-output-tensor", null, "keep output.weight as stored (llama-quantize's option)"),
        new("tensor-type", "PATTERN=T", "every matrix whose GGUF name the regular expression PATTERN is found in, in type T: attn_v=q8_0, blk\\.[0-3]\\.ffn_down=q6_k; the first pattern found wins, in place of the mix's choice, and takes llama.cpp's fallback where its blocks do not fit the rows (llama-quantize's option); repeat for several", Repeatable: true),
        new("tensor-type-file", "F", "--tensor-type's PATTERN=T entries read from F, separated by spaces or lines"),
        new("allow-requantize", null, "with a GGUF file whose matrices are quantized already: quantize them again to --type (loses more than quantizing the F16/BF16 file; llama-quantize's --allow-requantize)"),
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp quantize --model ~/models/Qwen2.5-0.5B-Instruct --type q8_0 --out qwen2.5-0.5b-instruct-q8_0.gguf",
        "qwensharp quantize --model ~/models/Qwen2.5-1.5B-Instruct --type q4_k_m --out qwen2.5-1.5b-instruct-q4_k_m.gguf",
        "qwensharp quantize --model qwen2.5-1.5b-instruct-f16.gguf --type q3_k_m --imatrix imatrix.gguf --out qwen2.5-1.5b-instruct-q3_k_m.gguf",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string directory = args.Value("model") ?? throw new UsageException("quantize needs --model DIR (a Hugging Face folder) or --model FILE.gguf");
        string typeText = args.Value("type") ?? throw new UsageException($"quantize needs --type {TypeNames('|')}");
        string output = args.Value("out") ?? throw new UsageException("quantize needs --out FILE.gguf");
        bool copy = string.Equals(typeText, "copy", StringComparison.OrdinalIgnoreCase);
        QuantizationMix? mix = null;
        if (!copy && (!QuantizationMix.TryParse(typeText, out mix) || !(ModelLoading.IsOffered(mix) || (mix.IsPure && mix.Base is DType.F16 or DType.BF16 or DType.F32))))
        {
            throw new UsageException($"--type '{typeText}' is not one of {TypeNames(',')}, copy");
        }

        if (copy && s_changers.FirstOrDefault(args.Has) is string changer)
        {
            throw new UsageException($"--type copy writes every tensor as stored; --{changer} changes tensors (give a type to quantize to)");
        }

        bool gguf = File.Exists(directory) && GgufFile.HasMagic(directory);
        if (!Directory.Exists(directory) && !gguf)
        {
            throw new UsageException(File.Exists(directory)
                ? $"--model {directory} is neither a Hugging Face model folder nor a GGUF file"
                : $"--model {directory}: model folder or GGUF file not found");
        }

        GgufSplitLimit? split = SplitLimit(args, gguf ? directory : null);
        string? folder = Path.GetDirectoryName(Path.GetFullPath(output));
        if (folder is not null && !Directory.Exists(folder))
        {
            throw new UsageException($"--out {output}: the folder {folder} does not exist");
        }

        if (split is null && (File.Exists(output) || Directory.Exists(output)))
        {
            throw new UsageException($"--out {output} already exists; quantize does not overwrite anything (remove it or choose another name)");
        }

        if (split is not null && ExistingPart(output) is string part)
        {
            throw new UsageException($"--out {output}: {part} already exists; quantize does not overwrite anything (remove the parts or choose another name)");
        }

        if (args.Flag("allow-requantize") && !gguf)
        {
            throw new UsageException("--allow-requantize is for a GGUF file whose matrices are quantized already; a folder's are not");
        }

        if (copy)
        {
            // llama-quantize's COPY: a split model merged, a whole one split (with --split-*), a folder as stored.
            return Report(gguf ? GgufRequantize.Copy(directory, output, split) : GgufExport.Write(directory, output, (_, tensor) => GgufExport.Encode(tensor, null), split: split), null, stdout);
        }

        mix = mix!.With(Overrides(args));
        ImportanceMatrix? importance = Importance(args, directory, gguf, stderr);
        IReadOnlyList<string> paths;
        mix = mix.WithImportance(importance);
        IReadOnlyList<LoraAdapterOptions> adapterFiles = ModelLoading.LoraAdapters(args, stderr);
        if (gguf)
        {
            if (adapterFiles.Count > 0)
            {
                throw new UsageException("--lora merges adapters into a Hugging Face folder's weights; give the folder as --model (or run the GGUF file with --lora)");
            }

            paths = GgufRequantize.Write(directory, output, mix, args.Flag("allow-requantize"), split);
        }
        else if (adapterFiles.Count == 0)
        {
            paths = GgufExport.Write(directory, output, mix, split);
        }
        else
        {
            paths = [];
            Lora.LoraAdapter.UseAll([.. adapterFiles.Select(a => (a.Path, a.Scale))], adapters => paths = GgufExport.Write(directory, output, mix, adapters, split));
        }

        return Report(paths, importance, stdout);
    }

    /// <summary>"wrote FILE: N tensors (types), size" for what was written.</summary>
    private static int Report(IReadOnlyList<string> paths, ImportanceMatrix? importance, TextWriter stdout)
    {
        using GgufFile written = GgufFile.Open(paths[0]);
        IEnumerable<string> types = written.Tensors.Values.GroupBy(t => GgmlTypes.Name(t.Type)).OrderByDescending(g => g.Count()).Select(g => $"{g.Count()} {g.Key}");
        string weighted = importance is null ? ""
            : $"; matrices weighted by {importance.Path} ({importance.Entries.Count} entries{(importance.ChunkCount > 0 ? $", {importance.ChunkCount} chunks" : "")})";
        string files = paths.Count == 1 ? paths[0] : $"{paths[0]} to {Path.GetFileName(paths[^1])} ({paths.Count} files; load the first)";
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {files}: {written.Tensors.Count} tensors ({string.Join(", ", types)}), {InfoCommand.FormatBytes(written.ByteLength)}{weighted}"));
        return 0;
    }

    /// <summary>--split-max-size N(M|G) or --split-max-tensors N (llama-gguf-split's options and units); null for one file.</summary>
    private static GgufSplitLimit? SplitLimit(Arguments args, string? ggufModel)
    {
        string? size = args.Value("split-max-size"), tensors = args.Value("split-max-tensors");
        if (size is not null && tensors is not null)
        {
            throw new UsageException("--split-max-size and --split-max-tensors do not go together (as in llama-gguf-split): split by size or by tensors");
        }

        if (args.Flag("keep-split"))
        {
            if (size is not null || tensors is not null)
            {
                throw new UsageException($"--keep-split writes the parts --model has; --split-max-{(size is null ? "tensors" : "size")} would choose others");
            }

            if (ggufModel is null)
            {
                throw new UsageException("--keep-split is for a GGUF model split across files (its first part as --model); a folder has no parts");
            }

            using GgufFile model = GgufFile.Open(ggufModel);
            return GgufSplitLimit.Like(model);
        }

        if (tensors is not null)
        {
            return int.TryParse(tensors, NumberStyles.None, CultureInfo.InvariantCulture, out int most) && most > 0
                ? GgufSplitLimit.Tensors(most)
                : throw new UsageException($"--split-max-tensors '{tensors}' is not a positive whole number of tensors");
        }

        if (size is null)
        {
            return null;
        }

        long unit = size.Length > 1 ? char.ToUpperInvariant(size[^1]) switch { 'M' => 1_000_000L, 'G' => 1_000_000_000L, _ => 0 } : 0;
        return unit > 0 && long.TryParse(size.AsSpan(0, size.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out long count) && count > 0 && count <= long.MaxValue / unit
            ? GgufSplitLimit.Bytes(count * unit)
            : throw new UsageException($"--split-max-size '{size}' is not a size: a positive whole number and M (megabytes) or G (gigabytes), as 500M or 4G");
    }

    /// <summary>A file a split --out would write that is there already (the parts' count is not known before writing: any count is looked for).</summary>
    private static string? ExistingPart(string output)
    {
        string prefix = GgufSplit.PrefixFor(output);
        string folder = Path.GetDirectoryName(Path.GetFullPath(prefix))!;
        string name = Path.GetFileName(prefix);
        return Directory.Exists(folder)
            ? Directory.EnumerateFileSystemEntries(folder, name + "-?????-of-?????.gguf").Order(StringComparer.Ordinal).FirstOrDefault()
            : null;
    }

    /// <summary>
    /// --imatrix, filtered by --include-weights / --exclude-weights; null without. A matrix computed for another model is
    /// refused before anything is written: one whose entries name none of this model's matrices, or whose widths differ.
    /// </summary>
    private static ImportanceMatrix? Importance(Arguments args, string model, bool gguf, TextWriter stderr)
    {
        IReadOnlyList<string> include = args.Values("include-weights"), exclude = args.Values("exclude-weights");
        string? path = args.Value("imatrix");
        if (path is null)
        {
            return include.Count + exclude.Count == 0 ? null
                : throw new UsageException($"--{(include.Count > 0 ? "include" : "exclude")}-weights chooses the matrices --imatrix weighs; give --imatrix FILE");
        }

        if (include.Count > 0 && exclude.Count > 0)
        {
            throw new UsageException("--include-weights and --exclude-weights do not go together (as in llama-quantize): name the matrices to weigh, or those not to");
        }

        if (!File.Exists(path))
        {
            throw new UsageException($"--imatrix {path}: file not found");
        }

        ImportanceMatrix matrix = ImportanceMatrixFile.Read(path).Filter(include, exclude);
        Dictionary<string, long> columns = MatrixColumns(model, gguf);
        string[] known = [.. matrix.Entries.Keys.Where(columns.ContainsKey)];
        if (known.Length == 0)
        {
            throw new UsageException(matrix.Entries.Count == 0
                ? $"--imatrix {path}: no entries left after --include-weights / --exclude-weights"
                : $"--imatrix {path}: none of its {matrix.Entries.Count} entries ({matrix.Entries.Keys.First()}, ...) names a matrix of this model: it was computed for another model");
        }

        foreach (string name in known)
        {
            matrix.ImportanceOf(name, columns[name], path);    // a width that differs fails here, before anything is written
        }

        if (known.Length < matrix.Entries.Count)
        {
            stderr.WriteLine($"note: --imatrix {path}: {matrix.Entries.Count - known.Length} of its {matrix.Entries.Count} entries name no matrix of this model ({matrix.Entries.Keys.First(k => !columns.ContainsKey(k))}, ...); the rest are used");
        }

        return matrix;
    }

    /// <summary>The model's matrices by GGUF name, with their columns.</summary>
    private static Dictionary<string, long> MatrixColumns(string model, bool gguf)
    {
        if (gguf)
        {
            using GgufFile file = GgufFile.Open(model);
            return file.TensorOrder.Where(t => t.Dimensions.Length >= 2).ToDictionary(t => t.Name, t => t.Dimensions[0], StringComparer.Ordinal);
        }

        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(model);
        var columns = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string name in checkpoint.TensorNames)
        {
            if (checkpoint.TryGetView(name, out TensorView? view) && view.Shape.Length == 2)
            {
                columns[GgufCheckpoint.GgufName(name)] = view.Shape[1];
            }
        }

        return columns;
    }

    /// <summary>--output-tensor-type, --token-embedding-type, --leave-output-tensor, --tensor-type and --tensor-type-file.</summary>
    private static TensorTypeOverrides Overrides(Arguments args)
    {
        DType? Type(string option) => args.Value(option) is string text ? ParseType(text, $"--{option}") : null;
        var rules = new List<TensorTypeRule>();
        IEnumerable<(string Entry, string Where)> entries = args.Values("tensor-type").Select(e => (e, "--tensor-type"));
        if (args.Value("tensor-type-file") is string file)
        {
            if (!File.Exists(file))
            {
                throw new UsageException($"--tensor-type-file {file}: file not found");
            }

            entries = entries.Concat(File.ReadAllText(file).Split((char[])[' ', '\t', '\r', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(e => (e, $"--tensor-type-file {file}")));
        }

        foreach ((string entry, string where) in entries)
        {
            int equals = entry.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0 || equals == entry.Length - 1)
            {
                throw new UsageException($"{where}: '{entry}' is not PATTERN=TYPE (attn_v=q8_0, say)");
            }

            try
            {
                rules.Add(new TensorTypeRule(entry[..equals], ParseType(entry[(equals + 1)..], $"{where} '{entry}'")));
            }
            catch (ArgumentException e)
            {
                throw new UsageException($"{where}: {e.Message.Split(" (Parameter", 2)[0]}");
            }
        }

        if (args.Flag("leave-output-tensor") && args.Has("output-tensor-type"))
        {
            throw new UsageException("--leave-output-tensor keeps output.weight as stored; --output-tensor-type gives it a type (one or the other)");
        }

        return new TensorTypeOverrides(Type("output-tensor-type"), Type("token-embedding-type"), args.Flag("leave-output-tensor"), rules);
    }

    private static DType ParseType(string text, string where) =>
        DTypes.TryParse(text, out DType type) && Writable(type) ? type
            : throw new UsageException($"{where}: '{text}' is not one of {string.Join(", ", s_writable.Select(t => DTypes.Name(t).ToLowerInvariant()))}");

    /// <summary>The types a matrix can be written as: those with a quantizer here, and the floats.</summary>
    private static readonly DType[] s_writable = [.. ModelLoading.Quantizers, DType.IQ3_XXS, DType.IQ3_S, DType.IQ2_S, DType.IQ2_XS, DType.IQ2_XXS, DType.IQ1_S, DType.IQ1_M, DType.F16, DType.BF16, DType.F32];

    private static bool Writable(DType type) => s_writable.Contains(type);

    private static string TypeNames(char separator) =>
        string.Join(separator == ',' ? ", " : "|", ModelLoading.MixAndTypeNames([.. ModelLoading.Quantizers, DType.F16, DType.BF16, DType.F32]));
}
