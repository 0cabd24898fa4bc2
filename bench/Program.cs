using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench -- --filter '*MatVec*'      (see --help for BenchmarkDotNet's options)
BenchmarkSwitcher.FromAssembly(typeof(QwenSharp.Bench.MatVecBenchmarks).Assembly).Run(args);
