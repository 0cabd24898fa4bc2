namespace QwenSharp.Server.Scheduling;

/// <summary>One KV cache slot as <c>GET /slots</c> shows it: the job and prompt of the sequence running in it (null when idle) and the tokens it has made.</summary>
internal sealed record SlotState(int Id, GenerationJob? Job, int[]? Prompt, int Decoded)
{
    public bool IsProcessing => Job is not null;
}
