using LLama;
using LLama.Common;
using LLama.Extensions;
using LLama.Native;

namespace QwenSharp.Tests.Support;

/// <summary>
/// llama.cpp itself, in-process through LLamaSharp (its CPU builds): the independent implementation our GGUF files
/// and results are checked against. Files given to it must be ones llama.cpp supports: an unsupported one aborts
/// the process rather than throwing.
/// </summary>
internal static class LlamaCpp
{
    private static readonly object s_lock = new();

    static LlamaCpp() => NativeLogConfig.llama_log_set((_, _) => { });

    /// <summary>The logits after each token of <paramref name="ids"/>, read in one batch.</summary>
    public static float[][] Logits(string gguf, IReadOnlyList<int> ids) => Logits(gguf, ids, []);

    /// <summary>As <see cref="Logits(string, IReadOnlyList{int})"/>, with GGUF LoRA adapters applied at their scales (llama.cpp's --lora-scaled).</summary>
    public static float[][] Logits(string gguf, IReadOnlyList<int> ids, IReadOnlyList<(string Path, float Scale)> adapters) =>
        Logits(gguf, ids, adapters, GGMLType.GGML_TYPE_F32);

    /// <summary>
    /// As <see cref="Logits(string, IReadOnlyList{int})"/> with the KV cache stored as <paramref name="kvType"/>
    /// (llama.cpp's <c>--cache-type-k/-v</c>); a quantized cache runs flash attention, which llama.cpp needs for quantized
    /// values.
    /// </summary>
    public static float[][] Logits(string gguf, IReadOnlyList<int> ids, GGMLType kvType) => Logits(gguf, ids, [], kvType);

    private static float[][] Logits(string gguf, IReadOnlyList<int> ids, IReadOnlyList<(string Path, float Scale)> adapters, GGMLType kvType)
    {
        lock (s_lock)
        {
            var parameters = new ModelParams(gguf) { ContextSize = (uint)Math.Max(64, ids.Count), BatchSize = (uint)Math.Max(64, ids.Count), UBatchSize = (uint)Math.Max(64, ids.Count), GpuLayerCount = 0, Threads = 2,
                // By default an f32 KV cache, as ours: llama.cpp's default f16 cache alone moves logits by ~1e-3.
                TypeK = kvType, TypeV = kvType,
                FlashAttention = kvType is not (GGMLType.GGML_TYPE_F32 or GGMLType.GGML_TYPE_F16),
            };
            using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
            using LLamaContext context = weights.CreateContext(parameters);
            if (adapters.Count > 0)
            {
                (LoraAdapter, float)[] loaded = [.. adapters.Select(a => (weights.NativeHandle.LoadLoraFromFile(a.Path), a.Scale))];
                context.NativeHandle.SetLoraAdapters(loaded);
            }

            var batch = new LLamaBatch();
            for (int i = 0; i < ids.Count; i++)
            {
                batch.Add(ids[i], i, LLamaSeqId.Zero, true);
            }

            DecodeResult result = context.NativeHandle.Decode(batch);
            Assert.Equal(DecodeResult.Ok, result);
            return [.. Enumerable.Range(0, ids.Count).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray())];
        }
    }

    /// <summary>
    /// llama.cpp's pooled embedding of <paramref name="ids"/> (not normalized), read in one batch with an f32 cache;
    /// <see cref="LLamaAttentionType.Unspecified"/> takes the file's <c>attention.causal</c>.
    /// </summary>
    public static float[] Embedding(string gguf, IReadOnlyList<int> ids, LLamaPoolingType pooling, LLamaAttentionType attention = LLamaAttentionType.Causal) =>
        Embedding(gguf, ids, pooling, [], attention);

    /// <summary>As <see cref="Embedding(string, IReadOnlyList{int}, LLamaPoolingType, LLamaAttentionType)"/>, with GGUF LoRA adapters applied at their scales.</summary>
    public static float[] Embedding(string gguf, IReadOnlyList<int> ids, LLamaPoolingType pooling, IReadOnlyList<(string Path, float Scale)> adapters,
        LLamaAttentionType attention = LLamaAttentionType.Causal)
    {
        lock (s_lock)
        {
            uint size = (uint)Math.Max(64, ids.Count);
            var parameters = new ModelParams(gguf) { ContextSize = size, BatchSize = size, UBatchSize = size, GpuLayerCount = 0, Threads = 2,
                TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
                Embeddings = true, PoolingType = pooling, AttentionType = attention,
            };
            using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
            using LLamaContext context = weights.CreateContext(parameters);
            if (adapters.Count > 0)
            {
                (LoraAdapter, float)[] loaded = [.. adapters.Select(a => (weights.NativeHandle.LoadLoraFromFile(a.Path), a.Scale))];
                context.NativeHandle.SetLoraAdapters(loaded);
            }

            var batch = new LLamaBatch();
            for (int i = 0; i < ids.Count; i++)
            {
                batch.Add(ids[i], i, LLamaSeqId.Zero, true);
            }

            Assert.Equal(DecodeResult.Ok, context.NativeHandle.Decode(batch));
            return context.NativeHandle.GetEmbeddingsSeq(LLamaSeqId.Zero).ToArray();
        }
    }

    /// <summary>As <see cref="ApplySamplers(float[], Action{SafeLLamaSamplerChainHandle})"/>, with samplers that read the vocabulary of <paramref name="gguf"/>.</summary>
    public static int[] ApplySamplers(string gguf, float[] logits, Action<SafeLLamaSamplerChainHandle, LLamaWeights> add)
    {
        lock (s_lock)
        {
            using LLamaWeights weights = LLamaWeights.LoadFromFile(new ModelParams(gguf) { ContextSize = 64, GpuLayerCount = 0, Threads = 2 });
            using SafeLLamaSamplerChainHandle chain = SamplerChain();
            add(chain, weights);
            LLamaTokenDataArray array = LLamaTokenDataArray.Create(logits);
            using (LLamaTokenDataArrayNative.Create(array, out LLamaTokenDataArrayNative native))
            {
                chain.Apply(ref native);
                return [.. native.Data.ToArray().Where(t => !float.IsNegativeInfinity(t.Logit)).Select(t => (int)t.ID).Order()];
            }
        }
    }

    /// <summary>An empty sampler chain of llama.cpp's, its native library loaded (LLamaSharp loads it on its first NativeApi call).</summary>
    public static SafeLLamaSamplerChainHandle SamplerChain()
    {
        NativeApi.llama_empty_call();
        return SafeLLamaSamplerChainHandle.Create(LLamaSamplerChainParams.Default());
    }

    /// <summary>
    /// llama.cpp's greedy continuation of <paramref name="prompt"/> under its DRY sampler (the prompt accepted into it
    /// first, as llama-server does), <paramref name="maxTokens"/> tokens.
    /// </summary>
    public static int[] GreedyWithDry(string gguf, IReadOnlyList<int> prompt, int maxTokens, string[] breakers, float multiplier, float @base, int allowedLength) =>
        Greedy(gguf, prompt, maxTokens, (chain, weights) => chain.AddDry(weights.NativeHandle, breakers, multiplier, @base, allowedLength, -1),
            acceptPrompt: true, stopAtEnd: false).Ids;

    /// <summary>
    /// <paramref name="logits"/> after llama.cpp's DRY sampler, its breakers made by the vocabulary of
    /// <paramref name="gguf"/>, the text so far (<paramref name="history"/>) accepted into it token by token.
    /// </summary>
    public static float[] DryPenalized(string gguf, float[] logits, IReadOnlyList<int> history, string[] breakers, float multiplier, float @base,
        int allowedLength, int penaltyLastN)
    {
        lock (s_lock)
        {
            var parameters = new ModelParams(gguf) { ContextSize = 64, GpuLayerCount = 0, Threads = 2 };
            using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
            using SafeLLamaSamplerChainHandle chain = SamplerChain();
            chain.AddDry(weights.NativeHandle, breakers, multiplier, @base, allowedLength, penaltyLastN);
            foreach (int token in history)
            {
                chain.Accept((LLamaToken)token);
            }

            LLamaTokenDataArray array = LLamaTokenDataArray.Create(logits);
            using (LLamaTokenDataArrayNative.Create(array, out LLamaTokenDataArrayNative native))
            {
                chain.Apply(ref native);
                float[] left = new float[logits.Length];
                foreach (LLamaTokenData candidate in native.Data)
                {
                    left[(int)candidate.ID] = candidate.Logit;
                }

                return left;
            }
        }
    }

    /// <summary>
    /// What llama.cpp's samplers (<paramref name="add"/> builds the chain) leave of a candidate list of
    /// <paramref name="logits"/>, one per token id: the ids still in the list with a finite logit, and the index (in the
    /// list as the chain left it) of the token a sampling step drew, -1 where none did.
    /// </summary>
    public static (int[] Kept, int Selected, int SelectedId) ApplySamplers(float[] logits, Action<SafeLLamaSamplerChainHandle> add) =>
        ApplySamplers(logits, add, out _);

    /// <summary>As <see cref="ApplySamplers(float[], Action{SafeLLamaSamplerChainHandle})"/>, with the logits the chain left, by id (−∞ for those it removed).</summary>
    public static (int[] Kept, int Selected, int SelectedId) ApplySamplers(float[] logits, Action<SafeLLamaSamplerChainHandle> add, out float[] left)
    {
        lock (s_lock)
        {
            using SafeLLamaSamplerChainHandle chain = SamplerChain();
            add(chain);
            LLamaTokenDataArray array = LLamaTokenDataArray.Create(logits);
            using (LLamaTokenDataArrayNative.Create(array, out LLamaTokenDataArrayNative native))
            {
                chain.Apply(ref native);
                LLamaTokenData[] candidates = native.Data.ToArray();
                int[] kept = [.. candidates.Where(t => !float.IsNegativeInfinity(t.Logit)).Select(t => (int)t.ID).Order()];
                left = Enumerable.Repeat(float.NegativeInfinity, logits.Length).ToArray();
                foreach (LLamaTokenData candidate in candidates)
                {
                    left[(int)candidate.ID] = candidate.Logit;
                }

                int selected = (int)native.Selected;
                return (kept, selected, selected >= 0 ? (int)candidates[selected].ID : -1);
            }
        }
    }

    /// <summary>
    /// llama.cpp's greedy continuation of <paramref name="prompt"/> held to the GBNF <paramref name="grammar"/> (its
    /// grammar sampler, then the argmax; an f32 cache, one token a step), up to <paramref name="maxTokens"/> tokens or one
    /// that llama.cpp takes as the end of generation (then the last id, and Ended).
    /// </summary>
    public static (int[] Ids, bool Ended) GreedyWithGrammar(string gguf, IReadOnlyList<int> prompt, string grammar, int maxTokens) =>
        Greedy(gguf, prompt, maxTokens, (chain, weights) => chain.AddGrammar(weights.NativeHandle, grammar, "root"), acceptPrompt: false, stopAtEnd: true);

    /// <summary>
    /// llama.cpp's greedy continuation of <paramref name="prompt"/> (an f32 cache, one token a step) through the samplers
    /// <paramref name="add"/> puts before the argmax, the prompt accepted into them first where <paramref name="acceptPrompt"/>;
    /// up to <paramref name="maxTokens"/> tokens, or (<paramref name="stopAtEnd"/>) one llama.cpp takes as the end of generation.
    /// </summary>
    private static (int[] Ids, bool Ended) Greedy(string gguf, IReadOnlyList<int> prompt, int maxTokens, Action<SafeLLamaSamplerChainHandle, LLamaWeights> add,
        bool acceptPrompt, bool stopAtEnd)
    {
        lock (s_lock)
        {
            uint size = (uint)Math.Max(64, prompt.Count + maxTokens);
            var parameters = new ModelParams(gguf) { ContextSize = size, BatchSize = size, UBatchSize = size, GpuLayerCount = 0, Threads = 2,
                TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
            };
            using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
            using LLamaContext context = weights.CreateContext(parameters);
            using SafeLLamaSamplerChainHandle chain = SamplerChain();
            add(chain, weights);
            chain.AddGreedySampler();
            var batch = new LLamaBatch();
            for (int i = 0; i < prompt.Count; i++)
            {
                if (acceptPrompt)
                {
                    chain.Accept((LLamaToken)prompt[i]);
                }

                batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Count - 1);
            }

            var ids = new List<int>();
            while (true)
            {
                Assert.Equal(DecodeResult.Ok, context.NativeHandle.Decode(batch));
                LLamaToken token = chain.Sample(context.NativeHandle, -1);
                ids.Add((int)token);
                bool ended = stopAtEnd && token.IsEndOfGeneration(weights.Vocab);
                if (ids.Count == maxTokens || ended)
                {
                    return ([.. ids], ended);
                }

                batch.Clear();
                batch.Add(token, prompt.Count + ids.Count - 1, LLamaSeqId.Zero, true);
            }
        }
    }

    /// <summary>
    /// What llama-imatrix collects over <paramref name="chunks"/> (each read alone from an empty cache, every position's
    /// logits asked for): from llama.cpp's eval callback, at every matrix product (GGML_OP_MUL_MAT) of at least 16 rows of
    /// f32 activations whose weight is a layer's (or output.weight with <paramref name="processOutput"/>), Σ x and Σ x² of
    /// each input column in float64, and the rows, by the weight's name.
    /// </summary>
    public static Dictionary<string, (double[] Sums, double[] Squares, long Count)> ImportanceSums(string gguf, IReadOnlyList<int[]> chunks, bool processOutput)
    {
        lock (s_lock)
        {
            uint size = (uint)Math.Max(64, chunks.Max(c => c.Length));
            var parameters = new ModelParams(gguf) { ContextSize = size, BatchSize = size, UBatchSize = size, GpuLayerCount = 0, Threads = 2,
                TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
            };
            using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
            s_collected = [];
            s_processOutput = processOutput;
            try
            {
                foreach (int[] chunk in chunks)
                {
                    parameters.ToLlamaContextParams(out LLamaContextParams native);
                    unsafe
                    {
                        native.cb_eval = (nint)(delegate* unmanaged<nint, byte, nint, byte>)&CollectImportance;
                    }

                    using SafeLLamaContextHandle context = SafeLLamaContextHandle.Create(weights.NativeHandle, native);
                    var batch = new LLamaBatch();
                    for (int i = 0; i < chunk.Length; i++)
                    {
                        batch.Add(chunk[i], i, LLamaSeqId.Zero, true);
                    }

                    Assert.Equal(DecodeResult.Ok, context.Decode(batch));
                }

                return s_collected;
            }
            finally
            {
                s_collected = [];
            }
        }
    }

    private static Dictionary<string, (double[] Sums, double[] Squares, long Count)> s_collected = [];
    private static bool s_processOutput;

    /// <summary>llama-imatrix's collect_imatrix, for dense models: ask for products it keeps, then add their inputs up.</summary>
    [System.Runtime.InteropServices.UnmanagedCallersOnly]
    private static unsafe byte CollectImportance(nint tensor, byte ask, nint userData)
    {
        if (Ggml.OperationOf(tensor) != "MUL_MAT")
        {
            return 0;
        }

        nint weight = Ggml.Source(tensor, 0), input = Ggml.Source(tensor, 1);
        string name = Ggml.TensorName(weight);
        bool wanted = name.StartsWith("blk.", StringComparison.Ordinal) || (s_processOutput && name == "output.weight");
        if (!wanted || Ggml.Dimension(input, 1) < 16 || *(int*)input != 0)
        {
            return 0;    // (ggml type 0 is F32)
        }

        if (ask != 0)
        {
            return 1;
        }

        int cols = checked((int)Ggml.Dimension(input, 0));
        long rows = Ggml.Dimension(input, 1);
        Assert.Equal(rows, Ggml.Rows(input));
        if (!s_collected.TryGetValue(name, out var sums))
        {
            sums = (new double[cols], new double[cols], 0);
        }

        byte* data = (byte*)Ggml.Data(input);
        long stride = Ggml.Stride(input, 1);
        for (long r = 0; r < rows; r++)
        {
            float* x = (float*)(data + (r * stride));
            for (int j = 0; j < cols; j++)
            {
                sums.Sums[j] += x[j];
                sums.Squares[j] += (double)x[j] * x[j];
            }
        }

        s_collected[name] = (sums.Sums, sums.Squares, sums.Count + rows);
        return 1;
    }

    /// <summary>llama.cpp's quantize tool: <paramref name="source"/> as <paramref name="type"/> (ALL_F32 dequantizes a quantized file).</summary>
    public static string Quantize(string source, LLamaFtype type) => Quantize(source, type, null, null, quantizeOutput: true);

    /// <summary>
    /// As <see cref="Quantize(string, LLamaFtype)"/> with llama-quantize's --output-tensor-type, --token-embedding-type
    /// (null: none) and --leave-output-tensor (<paramref name="quantizeOutput"/> false).
    /// </summary>
    public static string Quantize(string source, LLamaFtype type, GGMLType? outputType, GGMLType? tokenEmbeddingType, bool quantizeOutput)
    {
        lock (s_lock)
        {
            string destination = Path.Combine(Path.GetDirectoryName(source)!,
                $"{Path.GetFileNameWithoutExtension(source)}.{type}{(outputType is null ? "" : $".out-{outputType}")}{(tokenEmbeddingType is null ? "" : $".embd-{tokenEmbeddingType}")}{(quantizeOutput ? "" : ".keep")}.gguf");
            NativeApi.llama_empty_call();
            LLamaModelQuantizeParams parameters = LLamaModelQuantizeParams.Default();
            parameters.ftype = type;
            parameters.nthread = 2;
            parameters.allow_requantize = true;
            parameters.quantize_output_tensor = quantizeOutput;
            if (outputType is GGMLType output)
            {
                parameters.output_tensor_type = output;
            }

            if (tokenEmbeddingType is GGMLType embedding)
            {
                parameters.token_embedding_type = embedding;
            }

            uint result = NativeApi.llama_model_quantize(source, destination, ref parameters);
            Assert.True(result == 0, $"llama.cpp could not quantize {source} to {type}: {result}");
            return destination;
        }
    }

    /// <summary>llama.cpp's tokens for each text (special-token text parsed, no BOS added), from the vocabulary alone.</summary>
    public static int[][] Tokenize(string gguf, IEnumerable<string> texts)
    {
        lock (s_lock)
        {
            var parameters = new ModelParams(gguf) { ContextSize = 64, GpuLayerCount = 0, VocabOnly = true };
            using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
            return [.. texts.Select(text => weights.NativeHandle.Tokenize(text, false, true, System.Text.Encoding.UTF8).Select(t => (int)t).ToArray())];
        }
    }
}
