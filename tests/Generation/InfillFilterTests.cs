using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// llama.cpp's infill sampler against its own (through LLamaSharp) on a GGUF file of the Qwen2.5 tokenizer, after the
/// same top-k: the tokens left are the same where tokens whose texts begin alike merge, where the 20% and 1/(n + 1)
/// bounds cut, and where ending is likely enough that only the end-of-generation tokens stay.
/// </summary>
public sealed class InfillFilterTests
{
    private const int Vocabulary = 151936;
    private static readonly Lazy<string> s_gguf = new(() => GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer));

    public static TheoryData<int, double, double, int> Cases() => new()
    {
        { 1, 6, -100, 40 },
        { 2, 3, -100, 40 },
        { 3, 1.5, -100, 40 },
        { 4, 0.5, -100, 40 },
        { 5, 4, 9, 40 },
        { 6, 6, 4, 40 },
        { 7, 8, -100, 3000 },    // thousands of candidates, many of whose texts begin others' (" t", " the" ...)
        { 8, 7.5, 6, 3000 },
        { 9, 3, -100, 3000 },
        { 10, 10, 8, 3000 },
    };

    /// <param name="boost">How far above the rest the tokens that begin alike ("re", "ret", "return", "de", "def") stand.</param>
    /// <param name="endLogit">The logit of &lt;|endoftext|&gt; (the other special tokens are out).</param>
    /// <param name="topK">The candidates the top-k before leaves.</param>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Infill_KeepsWhatLlamaCppsInfillKeeps(int seed, double boost, double endLogit, int topK)
    {
        var random = new Random(seed);
        float[] logits = [.. Enumerable.Range(0, Vocabulary).Select(i => i >= 151643 ? float.NegativeInfinity : (float)random.NextDouble())];
        string[] alike = ["re", "ret", "return", "de", "def", "print"];
        for (int i = 0; i < alike.Length; i++)
        {
            logits[TestTokenizers.Qwen.TokenToId(alike[i])!.Value] += (float)(boost - (0.4 * i));
        }

        logits[151643] = endLogit < -50 ? float.NegativeInfinity : (float)endLogit;

        // llama.cpp counts "</s>" (an ordinary text token in Qwen's vocabulary) among the end-of-generation tokens of this
        // file, by its text: among thousands of candidates it may be drawn, and the engines would then differ over what
        // the token is, not over the sampler.
        logits[TestTokenizers.Qwen.TokenToId("</s>")!.Value] = float.NegativeInfinity;
        int[] expected = LlamaCpp.ApplySamplers(s_gguf.Value, logits, (chain, weights) =>
        {
            chain.AddTopK(topK);
            chain.AddFillInMiddleInfill(weights.NativeHandle);
        });

        float[] ours = (float[])logits.Clone();
        TopKFilter.Apply(ours, topK);
        InfillVocabulary vocabulary = new SamplingOptions { DoSample = true }
            .WithInfill(new SamplingOverrides { Infill = true }, TestTokenizers.Qwen, [151643, 151645]).Infill!;
        InfillFilter.Apply(ours, vocabulary);

        Assert.Equal(expected, Enumerable.Range(0, Vocabulary).Where(i => !float.IsNegativeInfinity(ours[i])));
        Assert.True(expected.Length < topK, $"llama.cpp's infill left all {topK}: the case says nothing");
    }
}
