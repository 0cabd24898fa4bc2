using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// Beam search against a brute-force transcription of transformers' algorithm that recomputes every
/// candidate's distribution from scratch (Scorer over the whole sequence, no KV cache, no slot copies).
/// </summary>
public class BeamSearchTests
{
    public static TheoryData<int, double, EarlyStopping, int[], string> Settings() => new()
    {
        { 3, 1.0, EarlyStopping.Heuristic, [426], "cpu" },
        { 4, 0.5, EarlyStopping.AsSoonAsFull, [426, 432], "cpu" },
        { 2, -1.0, EarlyStopping.Never, [426], "cpu" },
        { 3, 2.0, EarlyStopping.Heuristic, [], "cpu" },
        { 4, 0.5, EarlyStopping.AsSoonAsFull, [426, 432], TestBackends.Gpu },
    };

    [SkippableTheory]
    [MemberData(nameof(Settings))]
    public void EqualsBruteForceBeamSearch(int beams, double lengthPenalty, EarlyStopping earlyStopping, int[] eos, string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        int[] prompt = [1, 403, 407, 261, 378];
        const int maxNew = 7;
        var beamOptions = new BeamOptions { NumBeams = beams, LengthPenalty = lengthPenalty, EarlyStopping = earlyStopping };
        var options = new GenerationOptions { MaxNewTokens = maxNew, EosTokenIds = eos, NumReturnSequences = beams };

        GenerationResult result = BeamSearch.Generate(model, [prompt], options, beamOptions);
        List<(int[] Tokens, double Score)> expected = BruteForce(model, prompt, beams, lengthPenalty, earlyStopping, eos, maxNew);

        Assert.Equal(expected.Count, result.Sequences.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Tokens, result.Sequences[i].Ids);
            Assert.Equal(expected[i].Score, result.Sequences[i].Score!.Value, 1e-4);
        }

        Assert.True(result.Sequences.Zip(result.Sequences.Skip(1)).All(p => p.First.Score >= p.Second.Score), "best first");
    }

    [Fact]
    public void TwoBeamsFindWhatGreedyMisses()
    {
        // Beam search maximises the summed log-prob, so its best is at least greedy's (scored the same way).
        using var backend = new CpuBackend();
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        int[] prompt = [1, 274];
        var options = new GenerationOptions { MaxNewTokens = 6, IgnoreEos = true };
        GenerationResult beam = BeamSearch.Generate(model, [prompt], options, new BeamOptions { NumBeams = 4, LengthPenalty = 0 });
        GenerationResult greedy = Generator.Greedy(model, [prompt], options);

        double Sum(IReadOnlyList<int> tokens) => Scorer.Score(model, [.. prompt, .. tokens], 0).Positions
            .Skip(prompt.Length - 1).Take(tokens.Count).Sum(p => p.NextLogprob!.Value);
        Assert.True(Sum(beam.Sequences[0].Ids) >= Sum(greedy.Sequences[0].Ids) - 1e-6);
        Assert.Equal(Sum(beam.Sequences[0].Ids), beam.Sequences[0].Score!.Value, 1e-4);
    }

    private static List<(int[] Tokens, double Score)> BruteForce(Qwen2Model model, int[] prompt, int beams, double lengthPenalty,
        EarlyStopping earlyStopping, int[] eos, int maxNew)
    {
        int vocab = model.Config.VocabSize;
        var finished = new List<(int[] Tokens, double Score)>();
        var running = new List<(int[] Tokens, double Sum)> { ([], 0) };
        bool done = false;
        for (int step = 1; step <= maxNew && !done; step++)
        {
            var candidates = new List<(double Sum, int Beam, int Token)>();
            for (int r = 0; r < running.Count; r++)
            {
                // The whole distribution after prompt + beam, computed from scratch.
                PositionScore last = Scorer.Score(model, [.. prompt, .. running[r].Tokens], vocab).Positions[^1];
                candidates.AddRange(last.Top.Select(t => (running[r].Sum + t.Logprob, r, t.Id)));
            }

            candidates = [.. candidates.OrderByDescending(c => c.Sum).ThenBy(c => c.Beam).ThenBy(c => c.Token).Take(2 * beams)];
            var next = new List<(int[] Tokens, double Sum)>();
            for (int rank = 0; rank < candidates.Count && next.Count < beams; rank++)
            {
                int[] tokens = [.. running[candidates[rank].Beam].Tokens, candidates[rank].Token];
                if (eos.Contains(candidates[rank].Token))
                {
                    if (rank < beams)
                    {
                        finished.Add((tokens, candidates[rank].Sum / Math.Pow(tokens.Length, lengthPenalty)));
                        finished = [.. finished.OrderByDescending(f => f.Score).Take(beams)];
                    }
                }
                else
                {
                    next.Add((tokens, candidates[rank].Sum));
                }
            }

            running = next;
            if (finished.Count == beams)
            {
                double worst = finished.Min(f => f.Score);
                double best = candidates[0].Sum;
                done = earlyStopping switch
                {
                    EarlyStopping.AsSoonAsFull => true,
                    EarlyStopping.Heuristic => worst >= best / Math.Pow(step, lengthPenalty),
                    _ => worst >= best / Math.Pow(lengthPenalty > 0 ? maxNew : step, lengthPenalty),
                };
            }
        }

        if (!done)
        {
            foreach ((int[] tokens, double sum) in running)
            {
                finished.Add((tokens, sum / Math.Pow(tokens.Length, lengthPenalty)));
                finished = [.. finished.OrderByDescending(f => f.Score).Take(beams)];
            }
        }

        return finished;
    }
}
