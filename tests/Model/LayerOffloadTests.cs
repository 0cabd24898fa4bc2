using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Gpu;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// Models split between the CPU and a second backend (<see cref="LayerOffload"/>, llama.cpp's --n-gpu-layers): the last
/// layer alone, every layer, every layer and the LM head, and a count past that, each against the fixtures' float64
/// reference (full logits, greedy ids through the KV cache) on the GPU; and, split between two CPU backends, every
/// result bit for bit the unsplit model's (prefill, decode, beams and samples that copy KV slots, last hidden states).
/// </summary>
public sealed class LayerOffloadTests
{
    private static readonly string[] Models = ["tiny-qwen2", "tiny-qwen2-f16-sharded", "stories260K-qwen2-bf16"];

    /// <summary>Each model with each count of offloaded layers: 1, all, all + the LM head, and 99 (taken as all + head).</summary>
    public static TheoryData<string, int> ModelsAndCounts()
    {
        var data = new TheoryData<string, int>();
        foreach (string model in Models)
        {
            int layers = LayersOf(model);
            foreach (int count in new[] { 1, layers, layers + 1, 99 }.Distinct())
            {
                data.Add(model, count);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsAndCounts))]
    public void OnTheGpu_FullLogitsAndGreedyIds_MatchReference(string fixture, int offloaded)
    {
        Reference reference = Reference.Load(fixture);
        (IBackend host, LayerOffload? offload) = TestBackends.CreatePlacement($"cpu+gpu:{offloaded}");
        using (host)
        using (Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), host, offload: offload))
        {
            int layers = model.Config.NumHiddenLayers;
            Assert.Equal(Math.Min(offloaded, layers + 1), model.OffloadedLayers);
            Assert.StartsWith($"{model.OffloadBackend!.Description} ({model.OffloadedLayers} of {layers + 1} layers", model.Placement);
            ReferenceModelTests.AssertFullLogitsMatch(model, reference);
            GenerationResult result = Generator.Greedy(model, [reference.PromptIds],
                new GenerationOptions { MaxNewTokens = reference.GreedyNewIds.Length, IgnoreEos = true });
            Assert.Equal(reference.GreedyNewIds, result.Sequences[0].Ids);
        }
    }

    [SkippableFact]
    public void OnTheGpu_DecodeSteps_SubmitOnceAndReplay()
    {
        // The device's part of a decode step is one submission, replayed from the step before (its inputs are the crossing
        // residual stream, written as token ids are).
        (IBackend host, LayerOffload? offload) = TestBackends.CreatePlacement("cpu+gpu:2");
        using (host)
        using (Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory("stories260K-qwen2-bf16"), host, offload: offload))
        {
            var gpu = (VulkanBackend)model.OffloadBackend!;
            ReferenceModelTests.OneTokenPerStepLogits(model, [1, 2, 3]);    // warm-up: the step's recording made
            (long submits, long replays) = gpu.Submissions;
            ReferenceModelTests.OneTokenPerStepLogits(model, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
            (long submitsAfter, long replaysAfter) = gpu.Submissions;
            Assert.Equal(10, submitsAfter - submits);
            Assert.True(replaysAfter - replays >= 9, $"{replaysAfter - replays} of 10 decode steps replayed");
        }
    }

    [Theory]
    [MemberData(nameof(ModelsAndCounts))]
    public void BetweenTwoCpuBackends_EveryResultIsTheUnsplitModels(string fixture, int offloaded)
    {
        Reference reference = Reference.Load(fixture);
        string folder = Fixtures.ModelDirectory(fixture);
        int[][] prompts = [reference.PromptIds, reference.PromptIds[..5]];
        var sampled = new GenerationOptions { MaxNewTokens = 6, IgnoreEos = true, NumReturnSequences = 3, Sampling = new SamplingOptions { DoSample = true, Temperature = 1.2, Seed = 7 } };
        var beamed = new GenerationOptions { MaxNewTokens = 6, IgnoreEos = true };

        (float[][] Logits, GenerationResult Sampled, GenerationResult Beams, float[][] Decoded, float[] Hidden) Run(string placement)
        {
            (IBackend host, LayerOffload? offload) = TestBackends.CreatePlacement(placement);
            using (host)
            using (Qwen2Model model = Qwen2Model.Load(folder, host, offload: offload))
            {
                int layers = model.Config.NumHiddenLayers;
                Assert.Equal(offload is null ? 0 : Math.Min(offloaded, layers + 1), model.OffloadedLayers);

                // What the CPU reads (load-time prefetch touches these): the embedding always, the last layer only unsplit.
                string[] hostNames = [.. model.HostWeights.Select(view => view.Name)];
                Assert.Contains("model.embed_tokens.weight", hostNames);
                Assert.Equal(offload is null, hostNames.Contains($"model.layers.{layers - 1}.mlp.down_proj.weight"));
                return (ReferenceModelTests.AllPositionLogits(model, reference.PromptIds), Generator.Generate(model, prompts, sampled),
                    BeamSearch.Generate(model, prompts, beamed, new BeamOptions { NumBeams = 3 }), ReferenceModelTests.OneTokenPerStepLogits(model, reference.PromptIds[..8]),
                    HiddenStates(model, reference.PromptIds[..6]));
            }
        }

        var whole = Run("cpu");
        var split = Run($"cpu+cpu:{offloaded}");
        Assert.Equal(whole.Logits, split.Logits);
        Assert.Equal(whole.Decoded, split.Decoded);
        Assert.Equal(whole.Hidden, split.Hidden);
        Assert.Equal(whole.Sampled.Sequences.Select(s => s.Ids), split.Sampled.Sequences.Select(s => s.Ids));
        Assert.Equal(whole.Beams.Sequences.Select(s => (s.Ids, s.Score)), split.Beams.Sequences.Select(s => (s.Ids, s.Score)));
    }

    [SkippableFact]
    public void MoreThanTheGpuHolds_IsRefusedSayingHowManyLayersFit()
    {
        TestBackends.RequireGpu();
        const string Fixture = "stories260K-qwen2-bf16";
        string folder = Fixtures.ModelDirectory(Fixture);
        Qwen2Config config = Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName));
        long layerBytes;
        using (var checkpoint = SafeTensorsCheckpoint.Open(folder))
        {
            layerBytes = Qwen2WeightBinder.Bind(config, checkpoint).Layers[^1].Tensors.Sum(t => t.ByteLength);
        }

        // Room for the weights of two and a half layers (the backend's own buffers are about 17 MiB besides).
        long limit;
        using (var probe = new VulkanBackend())
        {
            limit = probe.AllocatedBytes + (5 * layerBytes / 2);
        }

        foreach (int offloaded in new[] { config.NumHiddenLayers + 1, 3 })
        {
            var device = new VulkanBackend(new VulkanBackendOptions { MemoryLimit = limit });
            using var cpu = TestBackends.Create("cpu");
            var e = Assert.Throws<GpuException>(() => Qwen2Model.Load(folder, cpu, offload: new LayerOffload(device, offloaded)));
            Assert.Contains($"not enough device memory for the weights of the last {Math.Min(offloaded, config.NumHiddenLayers)} of ", e.Message);
            Assert.Contains("(the weights of the last 2 layers fit: --gpu-layers 2 or GpuLayers = 2 runs those there and the rest on the CPU", e.Message);
            Assert.Equal(0, device.AllocatedBytes);    // disposed by the load that failed, and nothing left behind
        }

        // The whole model on the GPU: the same count.
        using var gpu = new VulkanBackend(new VulkanBackendOptions { MemoryLimit = limit });
        var whole = Assert.Throws<GpuException>(() => Qwen2Model.Load(folder, gpu));
        Assert.Contains("(the weights of the last 2 layers fit", whole.Message);
    }

    [SkippableFact]
    public void Fitting_PlacesTheLastLayersTheGpuHolds_WhichMatchReference()
    {
        TestBackends.RequireGpu();
        const string Fixture = "stories260K-qwen2-bf16";
        const int Positions = 512;
        Reference reference = Reference.Load(Fixture);
        string folder = Fixtures.ModelDirectory(Fixture);
        Qwen2Config config = Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName));
        int layers = config.NumHiddenLayers;

        // A layer: its bf16 weights as stored, and keys and values of f32 for the positions.
        long layerBytes;
        using (var checkpoint = SafeTensorsCheckpoint.Open(folder))
        {
            layerBytes = Qwen2WeightBinder.Bind(config, checkpoint).Layers[^1].Tensors.Sum(t => t.ByteLength) + (2L * Positions * config.KvDim * sizeof(float));
        }

        long baseline;
        using (var probe = new VulkanBackend())
        {
            baseline = probe.AllocatedBytes + LayerFit.ActivationBytes(config);
        }

        // Room for two and a half layers: the last two go there, and run as the reference does in that memory, a KV cache
        // of the positions included.
        using (var cpu = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(folder, cpu, offload: LayerOffload.Fitting(new VulkanBackend(new VulkanBackendOptions { MemoryLimit = baseline + (5 * layerBytes / 2) }), Positions)))
        {
            Assert.Equal(2, model.OffloadedLayers);
            Assert.Contains($"the last 2 of {layers} layers, beside a KV cache of {Positions} positions; the rest on cpu", model.LoadNote);
            ReferenceModelTests.AssertFullLogitsMatch(model, reference);
            using KvCache cache = model.CreateKvCache(1, Positions);
        }

        // Room for half a layer: none goes there, and the GPU is let go.
        var small = new VulkanBackend(new VulkanBackendOptions { MemoryLimit = baseline + (layerBytes / 2) });
        using (var cpu = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(folder, cpu, offload: LayerOffload.Fitting(small, Positions)))
        {
            Assert.Equal(0, model.OffloadedLayers);
            Assert.Null(model.OffloadBackend);
            Assert.Contains($"not one fits beside a KV cache of {Positions} positions, so the whole model runs on cpu", model.LoadNote);
            Assert.Equal(0, small.AllocatedBytes);
            ReferenceModelTests.AssertFullLogitsMatch(model, reference);
        }

        // A larger cache to make room for leaves fewer layers in the same memory; the device's own memory, all of them and the head.
        using (var cpu = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(folder, cpu, offload: LayerOffload.Fitting(new VulkanBackend(new VulkanBackendOptions { MemoryLimit = baseline + (5 * layerBytes / 2) }), 2 * Positions)))
        {
            Assert.Equal(1, model.OffloadedLayers);
        }

        using (var cpu = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(folder, cpu, offload: LayerOffload.Fitting(new VulkanBackend(), Positions)))
        {
            Assert.Equal(layers + 1, model.OffloadedLayers);
            Assert.Contains("every layer and the LM head", model.LoadNote);
        }
    }

    [Fact]
    public void NegativeLayerCount_IsRefused()
    {
        using var cpu = TestBackends.Create("cpu");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new LayerOffload(cpu, -1));
        Assert.Contains("layers on the device cannot be negative", e.Message);
    }

    /// <summary>Every position's last hidden state (after the final norm: what embeddings pool), causal, from one step.</summary>
    private static float[] HiddenStates(Qwen2Model model, int[] ids)
    {
        using KvCache cache = model.CreateKvCache(1, ids.Length);
        using ForwardState state = model.CreateHiddenState(ids.Length);
        var batch = new TokenBatch(ids.Length);
        for (int p = 0; p < ids.Length; p++)
        {
            batch.Add(ids[p], p, 0, wantLogits: true);
        }

        var hidden = new float[ids.Length * model.Config.HiddenSize];
        model.ForwardHidden(batch, cache, state, hidden);
        return hidden;
    }

    private static int LayersOf(string fixture) =>
        Qwen2Config.Load(Path.Combine(Fixtures.ModelDirectory(fixture), Qwen2Config.FileName)).NumHiddenLayers;
}
