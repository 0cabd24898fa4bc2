using System.Globalization;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;

namespace QwenSharp;

/// <summary>
/// A GGUF file written again with its matrices in the types a <see cref="QuantizationMix"/> picks, as llama-quantize
/// does with the F16, BF16 or F32 files llama.cpp's converter writes: every metadata key carried as it is (its
/// <c>general.file_type</c> set to the mix's, <c>general.quantization_version</c> added), every tensor in the file's order,
/// vectors and the tensors llama.cpp leaves alone (norms, a RoPE table) copied byte for byte, matrices quantized with the
/// same quantizers as a folder's export. A matrix already quantized is quantized again only when asked
/// (llama-quantize's <c>--allow-requantize</c>): rounding twice loses more than rounding the original once. A split
/// model (<see cref="GgufSplit"/>) is read from its first part.
/// </summary>
public static class GgufRequantize
{
    /// <summary>ggml's quantization version (<c>GGML_QNT_VERSION</c>), which llama-quantize writes into a quantized file.</summary>
    public const uint QuantizationVersion = 2;

    public static IReadOnlyList<string> Write(string sourcePath, string outPath, QuantizationMix mix, bool allowRequantize = false, GgufSplitLimit? split = null)
    {
        ArgumentNullException.ThrowIfNull(mix);
        ImportanceMatrix? importance = mix.Importance;
        using GgufFile source = GgufFile.Open(sourcePath);
        string arch = GgufMetadata.Text(source.Metadata, "general.architecture", source.FileName) ?? "none";
        if (arch is not ("qwen2" or "llama"))
        {
            // llama-quantize's rules are written against its names for these models' tensors; another file (a vision
            // projector, an adapter) would be quantized by rules that were never meant for it.
            throw new NotSupportedException($"{source.FileName}: general.architecture '{arch}'; quantize reads GGUF files of \"qwen2\" and \"llama\" models");
        }

        var shape = new ModelShape(Layers(source), TiedEmbeddings: !source.Tensors.ContainsKey("output.weight"), QueriesPerKvHead(source));
        // Every tensor's type first (a tensor that cannot be written is refused before anything is), then the file,
        // each tensor quantized as it is written.
        var tensors = source.TensorOrder.Select(t => (Info: t, Target: TargetOf(source, t, mix, shape, allowRequantize))).ToList();
        var writer = new GgufWriter();
        bool quantized = tensors.Any(t => GgmlTypes.TryGetBlock((int)(t.Target is DType target ? GgmlTypes.Of(target) : (GgmlType)t.Info.Type), out int values, out _) && values > 1);
        foreach (GgufRawValue value in source.RawMetadata)
        {
            // The writer aligns to 32 (GGUF's default); the file type, quantization version, importance matrix and the
            // split (a split model is read whole and written as one file or split anew) are the new file's.
            if (value.Key is not ("general.alignment" or "general.file_type" or "general.quantization_version") && !GgufSplit.IsSplitKey(value.Key)
                && !(importance is not null && value.Key.StartsWith("quantize.imatrix.", StringComparison.Ordinal)))
            {
                writer.AddRaw(value.Key, value.Type, source.RawBytes(value));
            }
        }

        if (quantized)
        {
            writer.Add("general.quantization_version", QuantizationVersion);
        }

        if (mix.FileType is uint fileType)
        {
            writer.Add("general.file_type", fileType);
        }

        importance?.AddQuantizeKeys(writer);

        foreach ((GgufTensorInfo info, DType? target) in tensors)
        {
            writer.AddTensor(info.Name, info.Shape, () => Encode(source, info, target, mix));
        }

        return writer.WriteNew(outPath, split);
    }

    /// <summary>
    /// llama-quantize's COPY: every metadata key and tensor as stored (the split keys aside, and the alignment, the writer's
    /// 32), in one file or split as <paramref name="split"/> says: a split model merged, or a whole one split, as
    /// <c>llama-gguf-split --merge</c> / <c>--split</c> do. Any architecture (nothing is chosen by rule). Returns the paths written.
    /// </summary>
    public static IReadOnlyList<string> Copy(string sourcePath, string outPath, GgufSplitLimit? split = null)
    {
        using GgufFile source = GgufFile.Open(sourcePath);
        var writer = new GgufWriter();
        foreach (GgufRawValue value in source.RawMetadata.Where(v => v.Key != "general.alignment" && !GgufSplit.IsSplitKey(v.Key)))
        {
            writer.AddRaw(value.Key, value.Type, source.RawBytes(value));
        }

        foreach (GgufTensorInfo tensor in source.TensorOrder)
        {
            writer.AddTensor(tensor.Name, tensor.Shape, () => AsStored(source, tensor));
        }

        return writer.WriteNew(outPath, split);
    }

    /// <summary>Whether llama-quantize quantizes a tensor: a matrix of weights that is not a norm (<c>tensor_allows_quantization</c>, for the tensors of qwen2 and llama files).</summary>
    public static bool IsQuantizable(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return tensor.Dimensions.Length >= 2 && tensor.Name.EndsWith("weight", StringComparison.Ordinal)
            && !tensor.Name.Contains("_norm.weight", StringComparison.Ordinal) && !tensor.Name.Contains("ffn_gate_inp.weight", StringComparison.Ordinal);
    }

    /// <summary>The type a tensor is quantized to, or null where it is copied as stored; refuses what cannot be written.</summary>
    private static DType? TargetOf(GgufFile source, GgufTensorInfo tensor, QuantizationMix mix, ModelShape shape, bool allowRequantize)
    {
        if (!IsQuantizable(tensor))
        {
            return null;
        }

        string typeName = GgmlTypes.Name(tensor.Type);
        if (!GgmlTypes.TryGetDType(tensor.Type, out DType storedType))
        {
            throw new NotSupportedException($"{source.FileName}: tensor '{tensor.Name}' is stored as {typeName}, which quantize does not read (it reads F32, F16, BF16 and, with --allow-requantize, the types QwenSharp runs)");
        }

        DType target = mix.TypeOf(tensor.Name, tensor.Dimensions[0], storedType, shape);
        if (target == storedType)
        {
            return null;
        }

        if (DTypes.IsQuantized(storedType) && !allowRequantize)
        {
            throw new NotSupportedException($"{source.FileName}: tensor '{tensor.Name}' is already {typeName}; quantizing a quantized file again loses more than quantizing its F16, BF16 or F32 file once (give --allow-requantize to do it anyway, as llama-quantize's option)");
        }

        return target;
    }

    private static unsafe (GgmlType Type, byte[] Data) Encode(GgufFile source, GgufTensorInfo tensor, DType? target, QuantizationMix mix)
    {
        if (target is not DType type)
        {
            return AsStored(source, tensor);
        }

        GgmlTypes.TryGetDType(tensor.Type, out DType storedType);
        var view = new TensorView(tensor.Name, source.FileName, storedType, [tensor.Shape[0], tensor.Dimensions[0]], source.DataOf(tensor));
        if (tensor.Dimensions.Length > 2)
        {
            // Rows are the innermost dimension whatever the others: a 3-D tensor converts as its rows stacked.
            view = view with { Shape = [tensor.Dimensions.Skip(1).Aggregate(1L, (a, b) => a * b), tensor.Dimensions[0]] };
        }

        byte[] data = new byte[DTypes.ByteLength(type, view.ElementCount)];
        TensorValues.RowsAs(view, type, data, mix.ImportanceOf(tensor.Name, tensor.Dimensions[0]));
        return (GgmlTypes.Of(type), data);
    }

    private static unsafe (GgmlType Type, byte[] Data) AsStored(GgufFile source, GgufTensorInfo tensor) =>
        ((GgmlType)tensor.Type, new ReadOnlySpan<byte>((void*)source.DataOf(tensor), checked((int)tensor.ByteLength)).ToArray());

    /// <summary>An integer of the architecture's hyperparameters (<c>{arch}.NAME</c>) greater than 0, or null.</summary>
    private static int? Hyperparameter(GgufFile source, string name) =>
        source.Metadata.TryGetValue("general.architecture", out object? arch) && arch is string prefix
            && source.Metadata.TryGetValue($"{prefix}.{name}", out object? value) && value is long number and > 0 and < int.MaxValue
            ? (int)number
            : null;

    /// <summary>Query heads per key/value head (llama.cpp's n_gqa), 1 where the file does not say.</summary>
    private static int QueriesPerKvHead(GgufFile source) =>
        Hyperparameter(source, "attention.head_count") is int heads && Hyperparameter(source, "attention.head_count_kv") is int kvHeads ? heads / kvHeads : 1;

    /// <summary>The model's layer count: <c>{arch}.block_count</c>, else one more than the highest <c>blk.N</c>.</summary>
    private static int Layers(GgufFile source)
    {
        if (Hyperparameter(source, "block_count") is int blocks)
        {
            return blocks;
        }

        int highest = -1;
        foreach (string tensor in source.Tensors.Keys)
        {
            string[] parts = tensor.Split('.');
            if (parts.Length > 2 && parts[0] == "blk" && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int layer))
            {
                highest = Math.Max(highest, layer);
            }
        }

        return highest + 1;
    }
}
