namespace QwenSharp.Server.Scheduling;

/// <summary>What llama-server's <c>POST /slots/{id}?action=</c> does to a slot.</summary>
internal enum SlotActionKind
{
    /// <summary>Writes the slot's tokens, keys and values to a file.</summary>
    Save,

    /// <summary>Reads a saved slot back into the slot, for the next prompt that starts the same way.</summary>
    Restore,

    /// <summary>Forgets what the slot holds.</summary>
    Erase,
}

/// <summary>
/// A slot action waiting for the scheduler's thread, which runs it once the slot is idle (as llama-server defers one on a
/// busy slot): the slot's keys and values are only read and written between steps, by the thread that owns them.
/// </summary>
internal sealed class SlotAction
{
    public required SlotActionKind Kind { get; init; }

    public required int Slot { get; init; }

    /// <summary>The slot file's full path (save and restore).</summary>
    public string? Path { get; init; }

    /// <summary>The file's name as the request gave it, for errors.</summary>
    public string? FileName { get; init; }

    /// <summary>The request's deadline and its client's going away: an action still waiting is dropped.</summary>
    public required CancellationToken Cancellation { get; init; }

    public TaskCompletionSource<SlotActionResult> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>What a slot action did: the positions saved, restored or erased, the file's bytes, and how long it took.</summary>
internal sealed record SlotActionResult(int Tokens, long Bytes, TimeSpan Elapsed);
