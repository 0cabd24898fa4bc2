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
        if (File.Exists(path) && !SlotFile.IsSlotFile(path))
        {
            throw new SlotFileException($"'{name}' exists and is not a slot file; it is left as it is (save under another name)");
        }

        List<int> held = _slotTokens[slot];
        int picture = held.IndexOf(-1);
        int[] tokens = [.. held.Take(Math.Min(picture < 0 ? held.Count : picture, _cache.LengthOf(slot)))];
        // A new file beside it (never one that is there already), moved into place whole: a failed save leaves the old file.
        string partial = $"{path}.{Guid.NewGuid():N}.partial";
        var stream = new FileStream(partial, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        try
        {
            long bytes;
            using (stream)
            {
                bytes = SlotFile.Write(stream, _cache, slot, tokens, _slotAdapterScales[slot]);
            }

            File.Move(partial, path, overwrite: true);
            return (tokens.Length, bytes);
        }
        catch
        {
            File.Delete(partial);
            throw;
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
            header = SlotFile.ReadHeader(stream, $"'{name}'", _cache, _model.Config.VocabSize);
            int adapters = _model.Adapters.Count, saved = header.AdapterScales?.Length ?? 0;
            if (saved != adapters && header.Tokens.Length > 0)
            {
                throw new InvalidDataException($"'{name}': saved with {saved} LoRA adapters; this server has {adapters} (serve --lora)");
            }
        }
        catch (InvalidDataException e)
        {
            throw new SlotFileException(e.Message);
        }

        _cache.Reset(slot);
        _slotTokens[slot].Clear();
        try
        {
            long bytes;
            try
            {
                bytes = SlotFile.ReadRows(stream, $"'{name}'", header, _cache, slot);
            }
            catch (InvalidDataException e)
            {
                throw new SlotFileException(e.Message);
            }

            int n = header.Tokens.Length;
            float[]? scales = _model.Adapters.Count == 0 ? null : header.AdapterScales;
            if (n > 0)
            {
                CheckRestored(slot, header.Tokens, scales, name);
            }

            _cache.Hold(slot, n);
            _slotTokens[slot].AddRange(header.Tokens);
            _slotAdapterScales[slot] = scales;
            return (n, bytes);
        }
        catch
        {
            _cache.Reset(slot);
            _slotTokens[slot].Clear();
            throw;
        }
    }

    /// <summary>
    /// Feeds a restored slot's last token again at its position and compares what the model stores there with what the file
    /// held, layer by layer: within a rounding for this model, far off for another.
    /// </summary>
    private void CheckRestored(int slot, int[] tokens, float[]? scales, string name)
    {
        int last = tokens.Length - 1, rowBytes = _cache.RowBytes;
        byte[] saved = new byte[2 * _cache.Layers * rowBytes], recomputed = new byte[saved.Length];
        _cache.Hold(slot, tokens.Length);
        for (int layer = 0; layer < _cache.Layers; layer++)
        {
            Span<byte> rows = saved.AsSpan(2 * layer * rowBytes, 2 * rowBytes);
            _cache.ReadRows(layer, slot, last, 1, rows[..rowBytes], rows[rowBytes..]);
        }

        _cache.Hold(slot, last);
        _batch.Clear();
        _batch.Add(tokens[last], last, slot, wantLogits: true, scales);
        _model.Forward(_batch, _cache, _state);
        double tolerance = RestoreTolerance(_cache.ElementType), worst = 0;
        int worstLayer = 0;
        for (int layer = 0; layer < _cache.Layers; layer++)
        {
            Span<byte> rows = recomputed.AsSpan(2 * layer * rowBytes, 2 * rowBytes);
            _cache.ReadRows(layer, slot, last, 1, rows[..rowBytes], rows[rowBytes..]);
            for (int half = 0; half < 2; half++)
            {
                int at = (2 * layer * rowBytes) + (half * rowBytes);
                double distance = SlotFile.Distance(_cache, saved.AsSpan(at, rowBytes), recomputed.AsSpan(at, rowBytes));
                if (!(distance <= worst))
                {
                    (worst, worstLayer) = (distance, layer);
                }
            }
        }

        if (!(worst <= tolerance))
        {
            throw new SlotFileException(
                $"'{name}': its keys and values are not this model's: position {last} computed again differs from the file's by {worst:G3} in layer {worstLayer} (within {tolerance:G2} for the model that saved it; another model, other weights or other LoRA scales)");
        }
    }

    /// <summary>
    /// How far (<see cref="SlotFile.Distance"/>) a position computed again may land from the saved one: a step of one row
    /// and a prompt chunk run other kernels, and another backend others again, whose sums differ in their last bits; a
    /// narrow cache type may round a value to the neighbouring half or code. Another model's rows land about 1.4 away.
    /// </summary>
    private static double RestoreTolerance(Formats.DType type) => type switch
    {
        Formats.DType.F32 => 0.01,
        Formats.DType.F16 or Formats.DType.BF16 => 0.03,
        Formats.DType.Q8_0 => 0.08,
        _ => 0.3,
    };

    private (int Tokens, long Bytes) EraseSlot(int slot)
    {
        int held = _slotTokens[slot].Count;
        _slotTokens[slot].Clear();
        _cache.Reset(slot);
        return (held, 0);
    }
}
