using System.Diagnostics;
using System.Globalization;
using QwenSharp.Sampling;

namespace QwenSharp.Bench;

/// <summary>
/// The time one token's choice takes on the CPU after the model's logits (<c>TokenSampler.Next</c>), over a vocabulary of
/// Qwen2.5's size, for the settings people run: greedy, Qwen2.5-Instruct's generation_config.json (temperature 0.7, top-p
/// 0.8, top-k 20, repetition penalty 1.05 over a 300-token prompt), llama-server's defaults (0.8, top-k 40, top-p 0.95,
/// min-p 0.05) and the whole vocabulary (top-k off); and a token's log-probs where they are asked for. It runs on one thread between two decode steps, whatever the backend:
/// on a GPU that decodes a small model in a couple of milliseconds, a large share of the step.
/// <code>
///   dotnet run -c Release --project bench -- token-choice [--vocabulary 151936] [--tokens 2000] [--rounds 5]
/// </code>
/// Logits are a fixed pseudo-random draw, uniform in ±5 with every thousandth 8 higher (a head of likely tokens), the
/// same every run; each figure the median of the rounds' mean microseconds a token.
/// </summary>
internal static class TokenChoice
{
    public static int Run(string[] args)
    {
        int vocabulary = PeerDecode.Count(args, "--vocabulary", 151_936, minimum: 1000);
        int tokens = PeerDecode.Count(args, "--tokens", 2000, minimum: 10);
        int rounds = PeerDecode.Count(args, "--rounds", 5, minimum: 1);
        var random = new Random(1);
        float[] logits = new float[vocabulary];
        for (int i = 0; i < vocabulary; i++)
        {
            logits[i] = (float)((random.NextDouble() * 10) - 5 + (i % 1000 == 0 ? 8 : 0));
        }

        int[] prompt = [.. Enumerable.Range(0, 300).Select(_ => random.Next(vocabulary))];
        (string Name, SamplingOptions Options)[] settings =
        [
            ("greedy", new SamplingOptions { DoSample = false }),
            ("Qwen2.5-Instruct's generation_config", new SamplingOptions { DoSample = true, Temperature = 0.7, TopP = 0.8, TopK = 20, RepetitionPenalty = 1.05 }),
            ("llama-server's defaults", new SamplingOptions { DoSample = true, Temperature = 0.8, TopK = 40, TopP = 0.95, MinP = 0.05 }),
            ("whole vocabulary (top-k off), temperature 1", new SamplingOptions { DoSample = true, Temperature = 1, TopK = 0 }),
        ];
        Console.WriteLine($"a token's choice over {vocabulary} logits, {tokens} tokens a round, median of {rounds} rounds");
        foreach ((string name, SamplingOptions options) in settings)
        {
            var sampler = new TokenSampler(options, vocabulary, 7);
            for (int i = 0; i < tokens / 10; i++)
            {
                sampler.Next(logits, prompt, []);
            }

            var microseconds = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                long start = Stopwatch.GetTimestamp();
                for (int i = 0; i < tokens; i++)
                {
                    sampler.Next(logits, prompt, []);
                }

                microseconds.Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds / tokens);
            }

            microseconds.Sort();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-46} {microseconds[rounds / 2],8:F1} µs a token (rounds {microseconds[0]:F1}-{microseconds[^1]:F1})"));
        }

        // What a token's log-probs add where they are asked for (logprobs, n_probs, scoring, perplexity: one a position).
        var times = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < tokens; i++)
            {
                double logSumExp = QwenSharp.Generation.LogProbs.LogSumExp(logits);
                QwenSharp.Generation.LogProbs.Top(logits, 20, logSumExp);
            }

            times.Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds / tokens);
        }

        times.Sort();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{"log-probs: log-sum-exp and the top 20",-46} {times[rounds / 2],8:F1} µs a token (rounds {times[0]:F1}-{times[^1]:F1})"));
        return 0;
    }
}
