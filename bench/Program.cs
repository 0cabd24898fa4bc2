using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench -- --filter '*MatVec*'      (see --help for BenchmarkDotNet's options)
// dotnet run -c Release --project bench -- peer --model FILE.gguf   (or --config CONFIG.json --type q8_0: QwenSharp and llama.cpp side by side)
// dotnet run -c Release --project bench -- peer-embed --config CONFIG.json --type q8_0   (embeddings, side by side)
if (args.Length > 0 && args[0] is "peer" or "peer-embed")
{
    try
    {
        return args[0] == "peer" ? QwenSharp.Bench.PeerDecode.Run(args[1..]) : QwenSharp.Bench.PeerEmbed.Run(args[1..]);
    }
    catch (Exception e) when (e is ArgumentException or FormatException or IOException or InvalidDataException or NotSupportedException or UnauthorizedAccessException)
    {
        // Bad options or files: one line, as the CLI reports them, not a stack trace.
        Console.Error.WriteLine($"{args[0]}: {e.Message}");
        return 2;
    }
    catch (LLama.Exceptions.RuntimeError e)
    {
        // A file QwenSharp runs but llama.cpp will not load (an architecture or type it lacks).
        Console.Error.WriteLine($"{args[0]}: llama.cpp: {e.Message}");
        return 2;
    }
}

// dotnet run -c Release --project bench -- stream [--type q6_k,f16]   (decode kernels from memory, beside a plain read)
// dotnet run -c Release --project bench -- few-tokens [--rows 64] [--cols 896]   (Q8_0 decode kernels for 1-7 tokens, from cache)
// dotnet run -c Release --project bench -- attention [--positions 4096]   (decode attention over each KV cache type)
// dotnet run -c Release --project bench -- token-choice   (one token's sampling over a Qwen2.5-sized vocabulary)
Func<string[], int>? tool = args.Length == 0 ? null : args[0] switch
{
    "stream" => QwenSharp.Bench.KernelStreaming.Run,
    "few-tokens" => QwenSharp.Bench.FewTokenKernels.Run,
    "attention" => QwenSharp.Bench.AttentionKernels.Run,
    "token-choice" => QwenSharp.Bench.TokenChoice.Run,
    _ => null,
};
if (tool is not null)
{
    try
    {
        return tool(args[1..]);
    }
    catch (ArgumentException e)
    {
        // Bad options: one line, not a stack trace.
        Console.Error.WriteLine($"{args[0]}: {e.Message}");
        return 2;
    }
}

BenchmarkSwitcher.FromAssembly(typeof(QwenSharp.Bench.MatVecBenchmarks).Assembly).Run(args);
return 0;
