using System.Diagnostics;
using QwenSharp.Backend;

namespace QwenSharp.Server.Scheduling;

/// <summary>
/// The scheduler's slot actions (llama-server's <c>POST /slots/{id}?action=save|restore|erase</c>, <see cref="SlotAction"/>):
/// run on its thread between steps, each once its slot is idle, before the next job may take the slot.
/// </summary>
internal sealed partial class BatchScheduler
{
    /// <summary>Queues a slot action (<c>POST /slots/{id}</c>); it runs once its slot is idle, before the next job may take the slot.</summary>
    public void Enqueue(SlotAction action)
    {
        ArgumentNullException.ThrowIfNull(action);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)action.Slot, (uint)_options.Slots, nameof(action));
        lock (_lock)
        {
            if (_stopping)
            {
                throw new InvalidOperationException("the server is shutting down");
            }

            _slotActions.Add(action);
        }

        _wake.Release();
    }

    /// <summary>
    /// Runs each waiting slot action whose slot is idle, in the order they came (one on a busy slot waits for it, as
    /// llama-server defers one); drops those whose request was cancelled.
    /// </summary>
    private void RunSlotActions()
    {
        while (true)
        {
            SlotAction? action;
            lock (_lock)
            {
                action = _slotActions.Find(a => _cancelAll || a.Cancellation.IsCancellationRequested || _slotOwners[a.Slot] is null);
                if (action is null)
                {
                    return;
                }

                _slotActions.Remove(action);
            }

            if (_cancelAll || action.Cancellation.IsCancellationRequested)
            {
                action.Result.TrySetCanceled(action.Cancellation.IsCancellationRequested ? action.Cancellation : CancellationToken.None);
                continue;
            }

            long started = Stopwatch.GetTimestamp();
            try
            {
                (int tokens, long bytes) = action.Kind switch
                {
                    SlotActionKind.Save => SaveSlot(action.Slot, action.Path!, action.FileName!),
                    SlotActionKind.Restore => RestoreSlot(action.Slot, action.Path!, action.FileName!),
                    _ => EraseSlot(action.Slot),
                };
                action.Result.TrySetResult(new SlotActionResult(tokens, bytes, Stopwatch.GetElapsedTime(started)));
            }
            catch (Exception e)
            {
                action.Result.TrySetException(e);
            }
        }
    }

    /// <summary>
    /// Writes what <paramref name="slot"/> holds up to its first picture (what a later prompt can reuse) to a new file beside
    /// <paramref name="path"/>, then puts it in place: a file there already is replaced only when it is a slot file.
    /// </summary>
    private (int Tokens, long Bytes) SaveSlot(int slot, string path, string name)
    {
        List<int> held = _slotTokens[slot];
        int picture = held.IndexOf(-1);
        int[] tokens = [.. held.Take(Math.Min(picture < 0 ? held.Count : picture, _cache.LengthOf(slot)))];
        try
        {
            return (tokens.Length, SlotFile.WriteFile(path, $"'{name}'", stream => SlotFile.Write(stream, _cache, slot, tokens, _slotAdapterScales[slot])));
        }
        catch (SlotFile.OtherFileException e)
        {
            // A name the request can change, not a failure of the server's disk.
            throw new SlotFileException(e.Message);
        }
    }

    /// <summary>
    /// Reads a slot file into <paramref name="slot"/> after checking it whole (<see cref="SlotFile.ReadHeader"/>), then
    /// recomputes its last position with this model (at the file's LoRA scales) and compares the keys and values
    /// (<see cref="SlotFile.Distance"/>): a file of another model is refused and the slot left empty.
    /// </summary>
    private (int Tokens, long Bytes) RestoreSlot(int slot, string path, string name)
    {
        if (!File.Exists(path))
        {
            throw new SlotFileException($"'{name}': no such slot file (POST /slots/{{id}}?action=save writes one)");
        }

        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        SlotFile.Header header;
        try
        {
            // The whole header is checked before the slot gives up what it holds.
            header = SlotFile.ReadHeader(stream, $"'{name}'", _cache, _model.Config.VocabSize, _model.Adapters.Count);
        }
        catch (InvalidDataException e)
        {
            throw new SlotFileException(e.Message);
        }

        _cache.Reset(slot);
        _slotTokens[slot].Clear();
        try
        {
            (long Bytes, float[]? Scales) restored;
            try
            {
                restored = SlotFile.Restore(stream, $"'{name}'", header, _cache, slot, _model, _state, _batch);
            }
            catch (InvalidDataException e)
            {
                throw new SlotFileException(e.Message);
            }

            _slotTokens[slot].AddRange(header.Tokens);
            _slotAdapterScales[slot] = restored.Scales;
            return (header.Tokens.Length, restored.Bytes);
        }
        catch
        {
            _cache.Reset(slot);
            _slotTokens[slot].Clear();
            throw;
        }
    }

    private (int Tokens, long Bytes) EraseSlot(int slot)
    {
        int held = _slotTokens[slot].Count;
        _slotTokens[slot].Clear();
        _cache.Reset(slot);
        return (held, 0);
    }
}
