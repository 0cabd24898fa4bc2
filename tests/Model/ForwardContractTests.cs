using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>What callers of <see cref="Qwen2Model.Forward"/> can rely on beyond the logits themselves.</summary>
public sealed class ForwardContractTests
{
    [Fact]
    public void Forward_DecodeStep_AllocatesNothing()
    {
        // One thread, so all the work happens on the thread whose allocations are counted (other tests run in parallel).
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using Qwen2Model model = Qwen2Model.Load(Fixtures.Directory("tiny-qwen2"), backend);
        using var decode = new TwoSequenceDecode(model);
        for (int p = TwoSequenceDecode.FirstPosition; p < 16; p++)
        {
            decode.Step(p); // warm-up: per-thread scratch grows to size here, once
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int p = 16; p < 40; p++)
        {
            decode.Step(p);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Forward_AnyThreadCount_GivesBitwiseEqualLogits()
    {
        int[] prompt = Reference.Load("tiny-qwen2").PromptIds;
        float[][] Run(int threads)
        {
            using var backend = new CpuBackend(new CpuBackendOptions { Threads = threads });
            using Qwen2Model model = Qwen2Model.Load(Fixtures.Directory("tiny-qwen2"), backend);
            return ReferenceModelTests.AllPositionLogits(model, prompt);
        }

        float[][] one = Run(1), three = Run(3);
        for (int p = 0; p < prompt.Length; p++)
        {
            Assert.Equal(one[p], three[p]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Forward_LogitsNotFiniteInSomeRows_NamesTheFirstOfThem(int threads)
    {
        // TinyCheckpoint's zero weights, untied, with token 5's embedding NaN: the rows of sequences that read token 5 have
        // NaN logits, the others zeros. The rows are checked on the backend's threads at once; the error names the first.
        string dir = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(dir, "config.json"), TinyCheckpoint.Config.Replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", StringComparison.Ordinal));
        var entries = new List<SafeTensorsWriter.Entry>();
        foreach ((string name, long[] shape) in TinyCheckpoint.Tensors().Append(("lm_head.weight", [16, 8])))
        {
            var values = new float[shape.Aggregate(1L, (a, b) => a * b)];
            if (name == "model.embed_tokens.weight")
            {
                values.AsSpan(5 * 8, 8).Fill(float.NaN);
            }

            entries.Add(new SafeTensorsWriter.Entry(name, "F32", shape, SafeTensorsWriter.F32(values)));
        }

        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), [.. entries]);
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = threads });
        using Qwen2Model model = Qwen2Model.Load(dir, backend);
        using KvCache cache = model.CreateKvCache(5, 8);
        using ForwardState state = model.CreateState(8, 8);
        var batch = new TokenBatch(8);
        (int Slot, int[] Tokens)[] sequences = [(0, [1, 2]), (1, [3]), (2, [5, 4]), (3, [5]), (4, [6, 7])];
        foreach ((int slot, int[] tokens) in sequences)
        {
            for (int i = 0; i < tokens.Length; i++)
            {
                batch.Add(tokens[i], i, slot, wantLogits: i == tokens.Length - 1);
            }
        }

        var error = Assert.Throws<InvalidDataException>(() => model.Forward(batch, cache, state));
        Assert.Equal("the model's logits at position 1 (token 4, sequence slot 2) are not finite (NaN or infinity): the weights may be corrupt", error.Message);
    }

    [Fact]
    public void Forward_PositionThatSkipsAhead_ThrowsAndLeavesTheCacheUsable()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        using KvCache cache = model.CreateKvCache(1, 16);
        using ForwardState state = model.CreateState(4, 4);
        var batch = new TokenBatch(4);
        batch.Add(1, 0, 0, wantLogits: false);
        batch.Add(403, 1, 0, wantLogits: false);
        model.Forward(batch, cache, state);

        batch.Clear();
        batch.Add(407, 3, 0, wantLogits: true);
        var e = Assert.Throws<ArgumentException>(() => model.Forward(batch, cache, state));
        Assert.Contains("position 3 of sequence slot 0 skips positions 2..2", e.Message);
        Assert.Equal(2, cache.LengthOf(0));
    }

    [Fact]
    public void Forward_Tap_SeesTheEmbeddingRowsOfTheTokens()
    {
        // The bundled model's embedding table, read straight from model.safetensors (F32, [512, 64]).
        string file = Path.Combine(Fixtures.DemoModel, "model.safetensors");
        byte[] raw = File.ReadAllBytes(file);
        long headerLength = BitConverter.ToInt64(raw, 0);
        using var header = System.Text.Json.JsonDocument.Parse(raw.AsMemory(8, (int)headerLength));
        long begin = header.RootElement.GetProperty("model.embed_tokens.weight").GetProperty("data_offsets")[0].GetInt64();
        float EmbeddingAt(int token, int i) => BitConverter.ToSingle(raw, (int)(8 + headerLength + begin + (((token * 64) + i) * 4)));

        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        using KvCache cache = model.CreateKvCache(1, 8);
        using ForwardState state = model.CreateState(4, 1);
        var batch = new TokenBatch(4);
        int[] tokens = [1, 403, 407];
        for (int p = 0; p < tokens.Length; p++)
        {
            batch.Add(tokens[p], p, 0, wantLogits: p == 2);
        }

        var seen = new List<string>();
        float[]? embedded = null;
        model.Forward(batch, cache, state, (name, layer, value, on) =>
        {
            seen.Add(layer < 0 ? name : $"layer{layer}.{name}");
            if (name == "embed")
            {
                embedded = new float[value.Rows * value.Cols];
                on.Download(value, embedded);
            }
        });

        Assert.Contains("layer4.ffn_out", seen);
        Assert.Contains("layer0.ffn_act", seen);
        Assert.Equal("final_norm", seen[^1]);
        for (int r = 0; r < tokens.Length; r++)
        {
            for (int i = 0; i < 64; i++)
            {
                Assert.Equal(EmbeddingAt(tokens[r], i), embedded![(r * 64) + i]);
            }
        }
    }
}
