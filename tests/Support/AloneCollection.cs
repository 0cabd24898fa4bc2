namespace QwenSharp.Tests.Support;

/// <summary>
/// Tests that measure the whole process (managed memory, threads) run in this collection, which xunit runs after
/// the parallel ones and with nothing beside it, so other tests' allocations do not enter their figures.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AloneCollection
{
    public const string Name = "process-wide measurements";
}
