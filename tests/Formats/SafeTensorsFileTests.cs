using QwenSharp.Formats;
using QwenSharp.Tests.Support;
using static QwenSharp.Tests.Support.SafeTensorsWriter;

namespace QwenSharp.Tests.Formats;

public sealed class SafeTensorsFileTests
{
    private readonly string _dir = Fixtures.TempDirectory();

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void Open_Fixture_ViewsPointAtTheBytesTheHeaderNames()
    {
        string path = Fixtures.File("tiny-qwen2", "model.safetensors");
        using SafeTensorsFile file = SafeTensorsFile.Open(path);

        Assert.Equal(26, file.Tensors.Count); // 27 header entries, one of them __metadata__
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.True(file.TryGetView("model.layers.0.self_attn.q_proj.weight", out TensorView? view));
        Assert.Equal(DType.BF16, view.DType);
        Assert.Equal([32L, 32L], view.Shape);

        // Read the same bytes independently: 8-byte length, header, then data_offsets (9739488, 9741536) from the header.
        byte[] raw = File.ReadAllBytes(path);
        long dataStart = 8 + BitConverter.ToInt64(raw, 0);
        Assert.Equal(raw.AsSpan((int)dataStart + 9739488, 2048).ToArray(), view.Bytes.ToArray());
    }

    [Fact]
    public void Open_TooShort_ThrowsNamingTheFile()
    {
        File.WriteAllBytes(PathOf("short.safetensors"), [1, 2, 3]);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(PathOf("short.safetensors")));
        Assert.Contains("short.safetensors", e.Message);
        Assert.Contains("too short", e.Message);
    }

    [Fact]
    public void Open_HeaderLengthBeyondFile_Throws()
    {
        byte[] bytes = [.. BitConverter.GetBytes(1000UL), .. "{}"u8.ToArray()];
        File.WriteAllBytes(PathOf("h.safetensors"), bytes);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(PathOf("h.safetensors")));
        Assert.Contains("header length 1000 exceeds", e.Message);
    }

    [Fact]
    public void Open_HeaderNotJson_Throws()
    {
        WriteRaw(PathOf("j.safetensors"), "{\"a\": [1, 2", []);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(PathOf("j.safetensors")));
        Assert.Contains("j.safetensors: the safetensors header is not valid JSON", e.Message);
    }

    [Fact]
    public void Open_MissingDtype_ThrowsNamingTensorAndField()
    {
        WriteRaw(PathOf("m.safetensors"), """{"w": {"shape": [1], "data_offsets": [0, 4]}}""", new byte[4]);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(PathOf("m.safetensors")));
        Assert.Contains("tensor 'w' has no string field 'dtype'", e.Message);
    }

    [Fact]
    public void Open_TruncatedData_ThrowsOffsetsOutsideDataArea()
    {
        Write(PathOf("full.safetensors"), new Entry("w", "F32", [4], F32(1, 2, 3, 4)));
        byte[] bytes = File.ReadAllBytes(PathOf("full.safetensors"));
        File.WriteAllBytes(PathOf("cut.safetensors"), bytes[..^6]);

        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(PathOf("cut.safetensors")));
        Assert.Contains("cut.safetensors: tensor 'w': data_offsets [0, 16] lie outside the data area of 10 bytes", e.Message);
    }

    [Fact]
    public void Open_SizeDisagreesWithShape_Throws()
    {
        WriteRaw(PathOf("s.safetensors"), """{"w": {"dtype": "BF16", "shape": [3, 2], "data_offsets": [0, 8]}}""", new byte[8]);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(PathOf("s.safetensors")));
        Assert.Contains("cover 8 bytes, but shape [3, 2] of BF16 needs 12", e.Message);
    }

    [Fact]
    public void Open_OverlappingTensors_Throws()
    {
        WriteRaw(PathOf("o.safetensors"),
            """{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""",
            new byte[12]);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(PathOf("o.safetensors")));
        Assert.Contains("'a' [0, 8] and 'b' [4, 12] overlap", e.Message);
    }

    [Fact]
    public void TryGetView_UnsupportedDtype_ThrowsNotSupportedNamingTensorAndDtype()
    {
        Write(PathOf("i.safetensors"), new Entry("position_ids", "I64", [2], new byte[16]), new Entry("w", "F32", [1], F32(1)));
        using SafeTensorsFile file = SafeTensorsFile.Open(PathOf("i.safetensors"));

        Assert.True(file.TryGetView("w", out _));
        var e = Assert.Throws<NotSupportedException>(() => file.TryGetView("position_ids", out _));
        Assert.Contains("tensor 'position_ids' has dtype I64", e.Message);
    }

    [Fact]
    public void Checkpoint_Sharded_FindsTensorsInEveryShard()
    {
        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(Fixtures.Directory("tiny-qwen2-f16-sharded"));

        Assert.Equal(2, checkpoint.Files.Count);
        Assert.True(checkpoint.TryGetView("lm_head.weight", out TensorView? head));
        Assert.Equal("model-00001-of-00002.safetensors", head.Source);
        Assert.True(checkpoint.TryGetView("model.layers.2.mlp.down_proj.weight", out TensorView? down));
        Assert.Equal("model-00002-of-00002.safetensors", down.Source);
    }

    [Fact]
    public void Checkpoint_IndexNamesMissingShard_ThrowsNamingIt()
    {
        File.WriteAllText(PathOf("model.safetensors.index.json"), """{"weight_map": {"w": "model-00009.safetensors"}}""");
        var e = Assert.Throws<FileNotFoundException>(() => SafeTensorsCheckpoint.Open(_dir));
        Assert.Contains("shard 'model-00009.safetensors' (holding 'w') not found", e.Message);
    }

    [Fact]
    public void Checkpoint_IndexMapsTensorAbsentFromShard_Throws()
    {
        Write(PathOf("shard.safetensors"), new Entry("a", "F32", [1], F32(1)));
        File.WriteAllText(PathOf("model.safetensors.index.json"), """{"weight_map": {"b": "shard.safetensors"}}""");
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsCheckpoint.Open(_dir));
        Assert.Contains("tensor 'b' is mapped to 'shard.safetensors', which does not contain it", e.Message);
    }

    [Fact]
    public void Checkpoint_EmptyFolder_ThrowsSayingWhatIsMissing()
    {
        var e = Assert.Throws<FileNotFoundException>(() => SafeTensorsCheckpoint.Open(_dir));
        Assert.Contains("no model.safetensors or model.safetensors.index.json", e.Message);
    }
}
