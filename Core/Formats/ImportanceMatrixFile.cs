using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using QwenSharp.Errors;
using QwenSharp.Formats.Gguf;

namespace QwenSharp.Formats;

/// <summary>
/// llama-imatrix's two file formats. GGUF (its default since mid-2025): <c>general.type</c> "imatrix",
/// <c>imatrix.datasets</c>, <c>imatrix.chunk_count</c>, <c>imatrix.chunk_size</c>, and per matrix the F32 tensors
/// <c>NAME.in_sum2</c> [experts, columns], <c>NAME.counts</c> [experts, 1] and <c>NAME.in_sum</c>, names sorted. The
/// legacy imatrix.dat: int32 entry count; per entry int32 name length, name, int32 calls, int32 value count, the
/// float values (each column's mean square × calls); then int32 chunks and the dataset's name. Either is read whole and
/// checked against the file's length before anything is allocated.
/// </summary>
public static class ImportanceMatrixFile
{
    private const string InSum2 = ".in_sum2", Counts = ".counts", InSum = ".in_sum";

    /// <summary>Reads either format (GGUF by its magic); <see cref="InvalidDataException"/> naming the file and entry on any fault.</summary>
    public static ImportanceMatrix Read(string path)
    {
        string name = Path.GetFileName(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: importance matrix file not found", path);
        }

        return GgufFile.HasMagic(path) ? ReadGguf(path, name) : ReadLegacy(File.ReadAllBytes(path), name, path);
    }

    private static ImportanceMatrix ReadGguf(string path, string name)
    {
        using GgufFile file = GgufFile.Open(path);
        if (file.Metadata.TryGetValue("general.type", out object? type) && type is string kind && kind != "imatrix")
        {
            QwenThrow.InvalidData($"{name}: a GGUF file of general.type '{kind}', not an importance matrix (llama-imatrix's files are of type 'imatrix')");
        }

        var found = new SortedDictionary<string, (GgufTensorInfo? Squares, GgufTensorInfo? Counts, GgufTensorInfo? Sums)>(StringComparer.Ordinal);
        foreach (GgufTensorInfo tensor in file.TensorOrder)
        {
            if (tensor.Name.EndsWith(InSum2, StringComparison.Ordinal))
            {
                string key = tensor.Name[..^InSum2.Length];
                found[key] = found.GetValueOrDefault(key) with { Squares = tensor };
            }
            else if (tensor.Name.EndsWith(Counts, StringComparison.Ordinal))
            {
                string key = tensor.Name[..^Counts.Length];
                found[key] = found.GetValueOrDefault(key) with { Counts = tensor };
            }
            else if (tensor.Name.EndsWith(InSum, StringComparison.Ordinal))
            {
                string key = tensor.Name[..^InSum.Length];
                found[key] = found.GetValueOrDefault(key) with { Sums = tensor };
            }
        }

        if (found.Count == 0)
        {
            QwenThrow.InvalidData($"{name}: no importance-matrix entries (tensors named NAME{InSum2} and NAME{Counts}): not a file llama-imatrix wrote");
        }

        var entries = new SortedDictionary<string, ImportanceMatrix.Entry>(StringComparer.Ordinal);
        foreach ((string tensor, (GgufTensorInfo? squares, GgufTensorInfo? counts, GgufTensorInfo? sums)) in found)
        {
            if (squares is null || counts is null)
            {
                QwenThrow.InvalidData($"{name}: entry '{tensor}' has {(squares is null ? $"no {InSum2}" : $"no {Counts}")} tensor beside its {(squares is null ? Counts : InSum2)}");
            }

            float[] squareValues = Floats(file, squares, name);
            float[] countValues = Floats(file, counts, name);
            float[]? sumValues = sums is null ? null : Floats(file, sums, name);
            if (countValues.Length == 0 || squareValues.Length == 0 || squareValues.Length % countValues.Length != 0
                || (sumValues is not null && sumValues.Length != squareValues.Length))
            {
                QwenThrow.InvalidData($"{name}: entry '{tensor}' has {squareValues.Length} sums of squares{(sumValues is null ? "" : $", {sumValues.Length} sums")} for {countValues.Length} counts: they do not match");
            }

            long[] tokenCounts = new long[countValues.Length];
            for (int i = 0; i < countValues.Length; i++)
            {
                float count = countValues[i];
                if (!float.IsFinite(count) || count < 0 || count > 1e15f)
                {
                    QwenThrow.InvalidData($"{name}: entry '{tensor}' has a token count of {count}");
                }

                tokenCounts[i] = (long)Math.Round(count, MidpointRounding.AwayFromZero);
            }

            entries[tensor] = new ImportanceMatrix.Entry(squareValues, sumValues, tokenCounts);
        }

        IReadOnlyList<string> datasets = file.Metadata.TryGetValue("imatrix.datasets", out object? d) && d is string[] list ? list : [];
        return new ImportanceMatrix(entries, datasets, MetadataInt(file, "imatrix.chunk_count"), MetadataInt(file, "imatrix.chunk_size"), path: path);
    }

    private static unsafe float[] Floats(GgufFile file, GgufTensorInfo tensor, string name)
    {
        if (tensor.Type != (int)GgmlType.F32)
        {
            QwenThrow.InvalidData($"{name}: tensor '{tensor.Name}' is {GgmlTypes.Name(tensor.Type)}; an importance matrix's tensors are F32");
        }

        return new ReadOnlySpan<float>((void*)file.DataOf(tensor), checked((int)(tensor.ByteLength / 4))).ToArray();
    }

    private static int MetadataInt(GgufFile file, string key) =>
        file.Metadata.TryGetValue(key, out object? value) && value is long number && number is >= 0 and <= int.MaxValue ? (int)number : 0;

    private static ImportanceMatrix ReadLegacy(byte[] bytes, string name, string path)
    {
        int position = 0;
        int Int(string what)
        {
            if (bytes.Length - position < 4)
            {
                QwenThrow.InvalidData($"{name}: ends inside {what} (at byte {position} of {bytes.Length}): a truncated imatrix.dat, or not an importance matrix");
            }

            int value = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(position));
            position += 4;
            return value;
        }

        int entryCount = Int("the entry count");
        if (entryCount < 1 || entryCount > bytes.Length / 16)
        {
            QwenThrow.InvalidData($"{name}: {entryCount} entries in a file of {bytes.Length} bytes: not an importance matrix (llama-imatrix's GGUF or imatrix.dat)");
        }

        var entries = new SortedDictionary<string, ImportanceMatrix.Entry>(StringComparer.Ordinal);
        for (int e = 0; e < entryCount; e++)
        {
            int length = Int($"entry {e + 1}'s name length");
            if (length < 1 || length > bytes.Length - position)
            {
                QwenThrow.InvalidData($"{name}: entry {e + 1}'s name is {length} bytes, at byte {position - 4} of {bytes.Length}: not an importance matrix, or a truncated one");
            }

            string tensor = Encoding.UTF8.GetString(bytes, position, length);
            position += length;
            int calls = Int($"entry '{tensor}''s call count");
            int values = Int($"entry '{tensor}''s value count");
            if (calls < 0 || values < 1 || values > (bytes.Length - position) / 4)
            {
                QwenThrow.InvalidData($"{name}: entry '{tensor}' claims {values} values after {calls} calls, at byte {position} of {bytes.Length}: a truncated or corrupt imatrix.dat");
            }

            float[] squares = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(position, values * 4)).ToArray();
            position += values * 4;
            if (!entries.TryAdd(tensor, new ImportanceMatrix.Entry(squares, null, [calls])))
            {
                QwenThrow.InvalidData($"{name}: entry '{tensor}' is listed twice");
            }
        }

        // Then, where present, the chunks it was computed on and the dataset's name.
        int chunks = 0;
        string[] datasets = [];
        if (bytes.Length - position >= 4)
        {
            chunks = Math.Max(0, Int("the chunk count"));
            if (bytes.Length - position >= 4)
            {
                int length = Int("the dataset's name length");
                if (length > 0 && length <= bytes.Length - position)
                {
                    datasets = [Encoding.UTF8.GetString(bytes, position, length)];
                }
            }
        }

        return new ImportanceMatrix(entries, datasets, chunks, chunkSize: 0, legacy: true, path: path);
    }

    /// <summary>Writes <paramref name="matrix"/> as llama-imatrix's GGUF file at the new <paramref name="path"/> (never over an existing file).</summary>
    public static void WriteGguf(ImportanceMatrix matrix, string path)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        var writer = new GgufWriter();
        writer.Add("general.type", "imatrix")
            .Add("imatrix.datasets", matrix.Datasets)
            .Add("imatrix.chunk_count", (uint)matrix.ChunkCount)
            .Add("imatrix.chunk_size", (uint)matrix.ChunkSize);
        foreach ((string tensor, ImportanceMatrix.Entry entry) in matrix.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            long experts = entry.Counts.Length, columns = entry.Columns;
            writer.AddTensor(tensor + InSum2, GgmlType.F32, [experts, columns], Bytes(entry.SumOfSquares));
            writer.AddTensor(tensor + Counts, GgmlType.F32, [experts, 1], Bytes([.. entry.Counts.Select(c => (float)c)]));
            if (entry.Sums is not null)
            {
                writer.AddTensor(tensor + InSum, GgmlType.F32, [experts, columns], Bytes(entry.Sums));
            }
        }

        writer.WriteNew(path);
    }

    /// <summary>
    /// Writes <paramref name="matrix"/> as llama-imatrix's legacy imatrix.dat at the new <paramref name="path"/>: per entry
    /// the calls ⌈tokens / chunk size⌉ and each column's mean square × calls (1 × calls for an expert no token reached).
    /// </summary>
    public static void WriteLegacy(ImportanceMatrix matrix, string path)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        if (matrix.ChunkSize <= 0)
        {
            throw new ArgumentException("the legacy format needs the chunk size its call counts are in", nameof(matrix));
        }

        using var bytes = new MemoryStream();
        using (var w = new BinaryWriter(bytes, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(matrix.Entries.Count);
            foreach ((string tensor, ImportanceMatrix.Entry entry) in matrix.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
            {
                byte[] nameBytes = Encoding.UTF8.GetBytes(tensor);
                w.Write(nameBytes.Length);
                w.Write(nameBytes);
                int calls = (int)((entry.Counts.Max() + matrix.ChunkSize - 1) / matrix.ChunkSize);
                w.Write(calls);
                w.Write(entry.SumOfSquares.Length);
                int perExpert = entry.Columns;
                for (int i = 0; i < entry.SumOfSquares.Length; i++)
                {
                    float count = entry.Counts[i / perExpert], value = entry.SumOfSquares[i];
                    w.Write(count == 0 ? calls : value / count * calls);
                }
            }

            w.Write(matrix.ChunkCount);
            byte[] dataset = Encoding.UTF8.GetBytes(matrix.Datasets.Count > 0 ? matrix.Datasets[^1] : "");
            w.Write(dataset.Length);
            w.Write(dataset);
        }

        string temporary = path + ".partial";
        try
        {
            File.WriteAllBytes(temporary, bytes.ToArray());
            File.Move(temporary, path, overwrite: false);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    private static byte[] Bytes(float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
}
