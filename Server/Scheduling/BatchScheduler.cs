using System.Diagnostics;
using System.Runtime.ExceptionServices;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp.Server.Scheduling;

/// <summary>
/// Continuous batching: one thread owns the model, a KV cache of <see cref="SchedulerOptions.Slots"/> slots
/// and one forward state. Each step feeds every decoding sequence its newest token and, in the same batch,
/// up to <see cref="SchedulerOptions.PrefillChunk"/> prompt tokens of sequences still reading their prompt,
/// so a long prompt is read in chunks while the other streams keep flowing. Queued jobs join at the next
/// step once enough slots are free (first come, first served) and leave as soon as they end or their client
/// goes away. A finished slot keeps its keys and values: the next job whose prompt starts the same way
/// (a shared system prompt, a conversation's next turn) takes that slot and reads only the rest.
/// Every sequence draws from its own seeded stream and sits in its own slot, so its tokens are those it
/// gets alone, up to near-ties: a row read beside a prompt chunk, or a prompt's last token read alone after its
/// start was reused, goes through other kernels, whose last bits differ. With prompt lookup (the server's, or for a request with a prediction), a step that reads no prompt
/// and decodes one sequence also feeds guesses of its next tokens, as <see cref="Generator"/> does (see
/// <see cref="SpareRowsForGuesses"/>). Embedding requests wait in a queue of their own and run one forward step per loop
/// between the generation steps, with their own buffers and cache (<see cref="StepEmbedding"/>).
/// </summary>
internal sealed partial class BatchScheduler : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly Tokenizer _tokenizer;
    private readonly SchedulerOptions _options;
    private readonly KvCache _cache;
    private readonly ForwardState _state;
    private readonly TokenBatch _batch;
    /// <summary>Per logit row of a step, the sequence that chooses from it; null for rows of guesses (read by <see cref="Verify"/>).</summary>
    private readonly ScheduledSequence?[] _logitOwners;

    /// <summary>A step's choices in order (a sequence and its logit row), and those of them made at once (<see cref="ChooseAhead"/>).</summary>
    private readonly List<(ScheduledSequence Sequence, int Row)> _choices = [], _chosenTogether = [];
    private readonly Action<int> _chooseAhead;
    private readonly ScheduledSequence?[] _slotOwners;
    private readonly List<int>[] _slotTokens;
    /// <summary>The LoRA adapter scales each slot's keys and values were computed with: reused only by a prompt run with the same.</summary>
    private readonly float[]?[] _slotAdapterScales;
    private readonly LinkedList<GenerationJob> _queue = new();
    private readonly Queue<EmbeddingJob> _embeddingQueue = new();
    /// <summary>Slot actions waiting for their slot to be idle (<see cref="RunSlotActions"/>).</summary>
    private readonly List<SlotAction> _slotActions = [];
    /// <summary>The embedding job being read and its run, a step per loop (see <see cref="StepEmbedding"/>).</summary>
    private (EmbeddingJob Job, EmbeddingRun Run)? _embedding;
    private (EmbeddingJob Job, List<ScoreResult> Scored, ScoreRun Run)? _scoring;
    /// <summary>The buffers of embedding steps, made at the first embedding request.</summary>
    private Embedder? _embedder;
    private readonly List<ScheduledSequence> _running = [];
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private volatile bool _cancelAll;

    public BatchScheduler(Qwen2Model model, Tokenizer tokenizer, SchedulerOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _model = model;
        _tokenizer = tokenizer;
        _options = options;
        // A sequence classifier never generates (TryEnqueue refuses its generation jobs; its /classify requests run as
        // embedding jobs do): its generation cache and buffers are the smallest there are, and never stepped.
        bool generates = !model.Config.IsSequenceClassifier;
        _cache = generates ? model.CreateKvCache(options.Slots, options.Context) : model.CreateKvCache(1, 1);
        try
        {
            _state = generates
                ? model.CreateState(Math.Max(options.Slots + options.PrefillChunk, PromptLookup.MaxStepRows), LogitRows(options))
                : model.CreateHiddenState(1);
            options.DraftModel?.Begin(options.Slots, options.Context + PromptLookup.MaxDraftTokens);
        }
        catch
        {
            _cache.Dispose();
            throw;
        }

        _batch = new TokenBatch(Math.Max(options.Slots + options.PrefillChunk, PromptLookup.MaxStepRows));
        _logitOwners = new ScheduledSequence?[LogitRows(options)];
        _slotOwners = new ScheduledSequence?[options.Slots];
        _slotTokens = [.. Enumerable.Range(0, options.Slots).Select(_ => new List<int>())];
        _slotAdapterScales = new float[]?[options.Slots];
        _chooseAhead = ChooseAhead;
        _thread = new Thread(Loop) { Name = "qwensharp scheduler", IsBackground = true };
        _thread.Start();
    }

    /// <summary>Prompt lookup for a request with a prediction on a server without lookup of its own.</summary>
    private static readonly PromptLookup s_predictionLookup = new(PromptLookup.MaxDraftTokens);

    public SchedulerOptions Options => _options;

    /// <summary>
    /// Logit rows a step may want: one per slot, or the rows of a step with guesses (<see cref="PromptLookup.MaxStepRows"/>;
    /// any request may bring a prediction, so a server without lookup of its own has room for them too).
    /// </summary>
    private static int LogitRows(SchedulerOptions options) => Math.Max(options.Slots, PromptLookup.MaxStepRows);

    public SchedulerMetrics Metrics { get; } = new();

    /// <summary>Jobs waiting for slots.</summary>
    public int QueueDepth
    {
        get
        {
            lock (_lock)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>Slots held by running sequences.</summary>
    public int ActiveSlots
    {
        get
        {
            lock (_lock)
            {
                return _slotOwners.Count(s => s is not null);
            }
        }
    }

    /// <summary>What each slot is doing now: the sequence it runs (its job, prompt and tokens so far), or null when idle.</summary>
    public SlotState[] Slots
    {
        get
        {
            lock (_lock)
            {
                return [.. _slotOwners.Select((owner, s) => new SlotState(s, owner?.Job, owner?.Prompt, owner?.Generated.Count ?? 0))];
            }
        }
    }

    /// <summary>Positions of keys and values held for running sequences, of all slots' capacity.</summary>
    public (long Used, long Capacity) KvPositions
    {
        get
        {
            lock (_lock)
            {
                long used = 0;
                for (int s = 0; s < _slotOwners.Length; s++)
                {
                    used += _slotOwners[s] is null ? 0 : _cache.LengthOf(s);
                }

                return (used, (long)_cache.Slots * _cache.Capacity);
            }
        }
    }

    /// <summary>Queues a job; false when the queue is full (the caller answers 429).</summary>
    public bool TryEnqueue(GenerationJob job)
    {
        ArgumentNullException.ThrowIfNull(job);
        // A classifier's refusal is NotSupportedException: Jobs.Submit reads InvalidOperationException as the server shutting down.
        _model.RequireGenerates();

        if (job.Choices > _options.Slots)
        {
            throw new ArgumentException($"the request needs {job.Choices} sequences at once and the server has {_options.Slots} slots");
        }

        lock (_lock)
        {
            if (_stopping)
            {
                throw new InvalidOperationException("the server is shutting down");
            }

            // Jobs wait here even while slots are free (the scheduler thread admits them): free slots count as room.
            if (_queue.Count >= _options.MaxQueue + _slotOwners.Count(s => s is null))
            {
                return false;
            }

            job.EnqueuedTimestamp = Stopwatch.GetTimestamp();
            job.ChoicesLeft = job.Choices;
            _queue.AddLast(job);
        }

        _wake.Release();
        return true;
    }

    /// <summary>Queues an embedding job; false when <see cref="SchedulerOptions.MaxQueue"/> of them wait already (429).</summary>
    public bool TryEnqueue(EmbeddingJob job)
    {
        ArgumentNullException.ThrowIfNull(job);
        lock (_lock)
        {
            if (_stopping)
            {
                throw new InvalidOperationException("the server is shutting down");
            }

            if (_embeddingQueue.Count >= Math.Max(1, _options.MaxQueue))
            {
                return false;
            }

            _embeddingQueue.Enqueue(job);
        }

        _wake.Release();
        return true;
    }

    /// <summary>Stops taking jobs; what is queued or running still finishes unless <see cref="CancelAll"/> is called.</summary>
    public void StopAccepting()
    {
        lock (_lock)
        {
            _stopping = true;
        }

        _wake.Release();
    }

    /// <summary>Cancels every queued and running job (the end of a drain that took too long).</summary>
    public void CancelAll()
    {
        _cancelAll = true;
        _wake.Release();
    }

    /// <summary>Waits until nothing is queued or running, or the timeout passes; true when drained.</summary>
    public bool WaitIdle(TimeSpan timeout) => _thread.Join(timeout);

    public void Dispose()
    {
        StopAccepting();
        CancelAll();
        _thread.Join();
        _embedding?.Run.Dispose();
        _scoring?.Run.Dispose();
        _embedder?.Dispose();
        _state.Dispose();
        _cache.Dispose();
        _wake.Dispose();
    }

    private void Loop()
    {
        while (true)
        {
            DropCancelled();
            RunSlotActions();
            Admit();
            bool embedded = StepEmbedding();
            if (_running.Count == 0)
            {
                if (embedded)
                {
                    continue;
                }

                lock (_lock)
                {
                    if (_stopping && _queue.Count == 0 && _embeddingQueue.Count == 0)
                    {
                        return;
                    }
                }

                // Queued jobs cancelled while waiting are dropped within this interval.
                _wake.Wait(100);
                continue;
            }

            Step();
        }
    }

    /// <summary>
    /// One forward step of the embedding job at the head of its queue, between generation steps, so that streams keep
    /// flowing while a long input is read; false when there was none. A job ends with its vectors, its error, or its
    /// cancellation.
    /// </summary>
    private bool StepEmbedding()
    {
        if (_scoring is not null)
        {
            StepScoring();
            return true;
        }

        if (_embedding is null)
        {
            EmbeddingJob? next;
            lock (_lock)
            {
                _embeddingQueue.TryDequeue(out next);
            }

            if (next is null)
            {
                return false;
            }

            if (next.ScoreTop is not null)
            {
                try
                {
                    _scoring = (next, [], StartScoring(next, 0));
                    StepScoring();
                }
                catch (Exception e)
                {
                    next.Scores.TrySetException(e);
                }

                return true;
            }

            try
            {
                _embedder ??= new Embedder(_model, _options.PrefillChunk);
                EmbeddingRun started = next.Classify
                    ? SequenceClassification.Start(_embedder, next.Inputs, next.AdapterScales)
                    : _embedder.Start(next.Inputs, dimensions: next.Dimensions, adapterScales: next.AdapterScales);
                _embedding = (next, started);
            }
            catch (Exception e)
            {
                next.Result.TrySetException(e);
                return true;
            }
        }

        (EmbeddingJob job, EmbeddingRun run) = _embedding.Value;
        try
        {
            if (_cancelAll || job.Cancellation.IsCancellationRequested)
            {
                job.Result.TrySetCanceled(job.Cancellation.IsCancellationRequested ? job.Cancellation : new CancellationToken(canceled: true));
            }
            else if (run.Step())
            {
                if (job.Classify)
                {
                    Metrics.Classified(job.Inputs.Count, run.TokenCount);
                    job.Result.TrySetResult(SequenceClassification.Logits(_model, run));
                }
                else
                {
                    Metrics.Embedded(job.Inputs.Count, run.TokenCount);
                    job.Result.TrySetResult(run.Results);
                }
            }
            else
            {
                return true;
            }
        }
        catch (Exception e)
        {
            job.Result.TrySetException(e);
        }

        run.Dispose();
        _embedding = null;
        return true;
    }

    /// <summary>
    /// One forward step of the scoring job (<see cref="EmbeddingJob.ScoreTop"/>): a chunk of its input being read, the
    /// streams going on between steps as they do beside embeddings. The job ends with its scores, its error, or its
    /// cancellation.
    /// </summary>
    private void StepScoring()
    {
        (EmbeddingJob job, List<ScoreResult> scored, ScoreRun run) = _scoring!.Value;
        try
        {
            if (_cancelAll || job.Cancellation.IsCancellationRequested)
            {
                job.Scores.TrySetCanceled(job.Cancellation.IsCancellationRequested ? job.Cancellation : new CancellationToken(canceled: true));
            }
            else if (run.Step())
            {
                scored.Add(run.Result);
                run.Dispose();
                _scoring = null;
                if (scored.Count < job.Inputs.Count)
                {
                    _scoring = (job, scored, StartScoring(job, scored.Count));
                }
                else
                {
                    job.Scores.TrySetResult([.. scored]);
                }

                return;
            }
            else
            {
                return;
            }
        }
        catch (Exception e)
        {
            job.Scores.TrySetException(e);
        }

        // Cancelled, or failed: the input being read lets its cache go (unless it had already).
        _scoring?.Run.Dispose();
        _scoring = null;
    }

    private ScoreRun StartScoring(EmbeddingJob job, int input) =>
        new(_model, job.Inputs[input], job.ScoreTop!.Value, Math.Min(_options.PrefillChunk, Scorer.DefaultChunkTokens), adapterScales: job.AdapterScales);

    /// <summary>Removes jobs whose client went away (or that timed out), freeing their slots at once.</summary>
    private void DropCancelled()
    {
        lock (_lock)
        {
            for (LinkedListNode<GenerationJob>? node = _queue.First; node is not null;)
            {
                LinkedListNode<GenerationJob>? next = node.Next;
                if (_cancelAll || node.Value.Cancellation.IsCancellationRequested)
                {
                    _queue.Remove(node);
                    Cancel(node.Value);
                }

                node = next;
            }
        }

        // Every step checks: no list is built for it (Release takes the job's sequences out of _running).
        while (CancelledRunningJob() is GenerationJob job)
        {
            Release(job);
            Cancel(job);
        }
    }

    private GenerationJob? CancelledRunningJob()
    {
        foreach (ScheduledSequence sequence in _running)
        {
            if (_cancelAll || sequence.Job.Cancellation.IsCancellationRequested)
            {
                return sequence.Job;
            }
        }

        return null;
    }

    private void Cancel(GenerationJob job)
    {
        Metrics.JobCancelled(job);
        job.Writer.TryComplete(new OperationCanceledException(job.Cancellation.IsCancellationRequested ? job.Cancellation : new CancellationToken(canceled: true)));
    }

    /// <summary>Starts queued jobs in order while their sequences fit in the free slots.</summary>
    private void Admit()
    {
        while (true)
        {
            GenerationJob job;
            lock (_lock)
            {
                if (_queue.First is not { } first || first.Value.Choices > _slotOwners.Count(s => s is null))
                {
                    return;
                }

                job = first.Value;
                _queue.RemoveFirst();
            }

            try
            {
                Start(job);
            }
            catch (Exception e)
            {
                Release(job);
                Metrics.JobFailed(job);
                job.Writer.TryComplete(e);
            }
        }
    }

    /// <summary>
    /// Gives each choice a slot. The first sample of a prompt takes the free slot holding the longest start of
    /// that prompt and keeps those positions; its other samples take the free slots worth least.
    /// </summary>
    private void Start(GenerationJob job)
    {
        job.StartedTimestamp = Stopwatch.GetTimestamp();
        // A prompt's pictures go through the vision tower here, on the thread that owns the model.
        Qwen2VL.VisionPrompt? vision = job.Pictures.Count > 0 ? Qwen2VL.VisionPrompt.Create(_model, job.Prompts[0], job.Pictures) : null;
        for (int p = 0; p < job.Prompts.Count; p++)
        {
            int[] prompt = job.Prompts[p];
            Qwen2VL.VisionPrompt? pictures = p == 0 ? vision : null;
            (int slot, int common) = BestSlotFor(prompt, job.AdapterScales);
            // At least the prompt's last token is read again: its logits choose the first new token.
            int reused = Math.Min(common, prompt.Length - 1);
            ScheduledSequence first = Occupy(job, p * job.SamplesPerPrompt, slot, prompt, pictures);
            _cache.Truncate(slot, reused);
            _slotTokens[slot].RemoveRange(reused, _slotTokens[slot].Count - reused);
            first.Fed = reused;
            job.CachedPromptTokens += reused;
            Metrics.PromptRead(prompt.Length - reused, reused);
            for (int j = 1; j < job.SamplesPerPrompt; j++)
            {
                int other = WorstFreeSlot();
                ScheduledSequence sibling = Occupy(job, (p * job.SamplesPerPrompt) + j, other, prompt, pictures);
                sibling.WaitsForPrompt = true;
                first.Siblings.Add(sibling);
            }
        }
    }

    private ScheduledSequence Occupy(GenerationJob job, int choice, int slot, int[] prompt, Qwen2VL.VisionPrompt? vision)
    {
        var text = new StopStrings(_tokenizer, job.StopStrings, 1, job.CodeStops);
        if (job.PrimeTextWithPrompt)
        {
            text.Prime(0, prompt);
        }

        var sampler = new TokenSampler(job.Sampling, _model.Config.VocabSize, SeededRandom.Derive(job.Seed, choice % job.SamplesPerPrompt), job.Constraint?.Invoke());
        // A prediction is searched before the prompt (the text ends with the prompt and the answer, as lookup needs).
        PromptLookup? lookup = _options.PromptLookup ?? (job.Prediction is null ? null : s_predictionLookup);
        var sequence = new ScheduledSequence(job, choice, slot, prompt, sampler, text, vision)
        {
            LookupText = job.Prediction is int[] prediction ? [.. prediction, .. prompt] : prompt,
            // A draft model guesses from the prompt and the answer (text only: not beside pictures); a prediction is looked
            // up (it is not the model's text).
            Pace = lookup is null ? null
                : _options.DraftModel is DraftModel draft && job.Prediction is null && vision is null
                    ? new LookupPace(lookup, (_, generated, guesses) => draft.Draft(slot, prompt, generated, guesses, _model.Config.VocabSize))
                    : new LookupPace(lookup),
        };
        lock (_lock)
        {
            _slotOwners[slot] = sequence;
        }

        _slotAdapterScales[slot] = job.AdapterScales;

        _running.Add(sequence);
        return sequence;
    }

    private (int Slot, int Common) BestSlotFor(int[] prompt, float[]? adapterScales)
    {
        int best = -1, bestCommon = -1;
        for (int s = 0; s < _slotOwners.Length; s++)
        {
            if (_slotOwners[s] is not null)
            {
                continue;
            }

            List<int> held = _slotTokens[s];
            int common = 0;
            // Keys and values computed with other adapter scales are other numbers: nothing of them is reused.
            int limit = TokenBatch.SameAdapterScales(_slotAdapterScales[s], adapterScales) ? Math.Min(held.Count, prompt.Length) : 0;
            while (common < limit && held[common] == prompt[common])
            {
                common++;
            }

            // Among equals, the slot holding least: what the others hold may serve a later prompt.
            if (common > bestCommon || (common == bestCommon && held.Count < _slotTokens[best].Count))
            {
                best = s;
                bestCommon = common;
            }
        }

        return (best, bestCommon);
    }

    private int WorstFreeSlot()
    {
        int worst = -1;
        for (int s = 0; s < _slotOwners.Length; s++)
        {
            if (_slotOwners[s] is null && (worst < 0 || _slotTokens[s].Count < _slotTokens[worst].Count))
            {
                worst = s;
            }
        }

        return worst;
    }

    /// <summary>
    /// One forward step over the decode rows (with prompt lookup, each sequence's guesses after its newest token) and a
    /// chunk of prompts, then a token for every logit row (and for each guess its sequence's choices confirm).
    /// </summary>
    private void Step()
    {
        _batch.Clear();
        int spareRows = SpareRowsForGuesses();
        foreach (ScheduledSequence sequence in _running)
        {
            if (sequence.Decoding)
            {
                int position = sequence.NextPosition;
                // Guesses past the token limit or the slot's end would never be chosen (the last new token is not fed).
                int room = Math.Min(Math.Min(sequence.Job.MaxTokens - sequence.Generated.Count - 1, _options.Context - 1 - position), spareRows);
                sequence.DraftLength = sequence.Pace?.Draft(sequence.LookupText, sequence.Generated, room, sequence.Draft) ?? 0;
                spareRows -= sequence.DraftLength;
                sequence.FirstRow = _batch.LogitCount;
                _logitOwners[_batch.LogitCount] = sequence;
                Feed(sequence, sequence.Generated[^1], position, wantLogits: true);
                for (int i = 0; i < sequence.DraftLength; i++)
                {
                    _logitOwners[_batch.LogitCount] = null;
                    Feed(sequence, sequence.Draft[i], position + 1 + i, wantLogits: true);
                }
            }
        }

        int budget = _options.PrefillChunk;
        foreach (ScheduledSequence sequence in _running)
        {
            if (budget == 0)
            {
                break;
            }

            if (sequence.Decoding || sequence.WaitsForPrompt)
            {
                continue;
            }

            int take = Math.Min(budget, sequence.Prompt.Length - sequence.Fed);
            for (int i = 0; i < take; i++)
            {
                int position = sequence.Fed + i;
                bool last = position == sequence.Prompt.Length - 1;
                if (last)
                {
                    _logitOwners[_batch.LogitCount] = sequence;
                }

                Feed(sequence, sequence.Prompt[position], position, wantLogits: last);
            }

            sequence.Fed += take;
            budget -= take;
        }

        try
        {
            _model.Forward(_batch, _cache, _state);
        }
        catch (Exception e)
        {
            // Nothing in this step can be trusted: fail the jobs it held, keep serving the rest.
            foreach (GenerationJob job in _running.Select(s => s.Job).Distinct().ToList())
            {
                foreach (ScheduledSequence sequence in _running.Where(s => s.Job == job))
                {
                    _cache.Reset(sequence.Slot);
                    _slotTokens[sequence.Slot].Clear();
                }

                Release(job);
                Metrics.JobFailed(job);
                job.Writer.TryComplete(e);
            }

            return;
        }

        // Who chooses what, in the step's order: a prompt's samples (their slots given a copy of its prompt first), then each
        // sequence; those without guesses choose all at once, on the backend's host threads, then each choice goes out in
        // that order. A sequence with guesses chooses row after row in Verify (each row's token decides whether the next counts).
        _choices.Clear();
        _chosenTogether.Clear();
        for (int r = 0; r < _batch.LogitCount; r++)
        {
            if (_logitOwners[r] is not ScheduledSequence sequence || sequence.Finished)
            {
                continue;
            }

            try
            {
                if (!sequence.Decoding)
                {
                    sequence.Decoding = true;
                    foreach (ScheduledSequence sibling in sequence.Siblings)
                    {
                        _cache.CopySlot(sequence.Slot, sibling.Slot, sequence.Prompt.Length);
                        _slotTokens[sibling.Slot].Clear();
                        _slotTokens[sibling.Slot].AddRange(sequence.Prompt.Select(t => Held(sequence, t)));
                        sibling.WaitsForPrompt = false;
                        sibling.Decoding = true;
                        _choices.Add((sibling, r));
                        _chosenTogether.Add((sibling, r));
                    }
                }

                _choices.Add((sequence, r));
                if (sequence.DraftLength == 0)
                {
                    _chosenTogether.Add((sequence, r));
                }
            }
            catch (Exception e)
            {
                Fail(sequence.Job, e);
            }
        }

        if (_chosenTogether.Count > 1)
        {
            _model.Backend.ForEachOnHost(_chosenTogether.Count, _chooseAhead);
        }

        int newTokens = 0;
        foreach ((ScheduledSequence sequence, int row) in _choices)
        {
            if (sequence.Finished)
            {
                continue;
            }

            try
            {
                if (sequence.DraftLength > 0)
                {
                    newTokens += Verify(sequence);
                }
                else
                {
                    newTokens++;
                    Choose(sequence, _state.LogitsOf(row));
                }
            }
            catch (Exception e)
            {
                Fail(sequence.Job, e);
            }
        }

        Metrics.Step(newTokens, _running.Count);
        _running.RemoveAll(s => s.Finished);
    }

    /// <summary>A failure in one job's sampling or text fails that job only.</summary>
    private void Fail(GenerationJob job, Exception e)
    {
        Release(job);
        Metrics.JobFailed(job);
        job.Writer.TryComplete(e);
    }

    /// <summary>
    /// Chooses entry <paramref name="i"/> of <see cref="_chosenTogether"/>'s token from its row (one of the step's choices made
    /// at once, <see cref="IBackend.ForEachOnHost"/>): its sampler's scan of the vocabulary, kept for <see cref="Choose"/>.
    /// </summary>
    private void ChooseAhead(int i)
    {
        (ScheduledSequence sequence, int row) = _chosenTogether[i];
        try
        {
            (int token, TokenLogprobs? logprobs) = Pick(sequence, _state.LogitsOf(row));
            sequence.ChosenAhead = (token, logprobs, null);
        }
        catch (Exception e)
        {
            sequence.ChosenAhead = (0, null, ExceptionDispatchInfo.Capture(e));
        }
    }

    /// <summary>
    /// Rows a step may give guesses: with prompt lookup, while one sequence decodes and no prompt is read, what
    /// <see cref="PromptLookup.MaxStepRows"/> leaves beside its row. Several decoding sequences already share each read
    /// of the weights. Through the rows' kernels a guessed row cost 0.5-0.8 of a step on the CPU: the random Q8_0 0.5B on
    /// 2 Zen 5 threads served 4 streams at 146-147 tokens/s without guesses and 121-122 with them beside the streams, 2
    /// streams at 131-135 and 112-126 (bench/results/amd-epyc-zen5-2core-avx512/serve-prompt-lookup-and-pace-2026-12-04.md).
    /// Through the repacked panels (Q8_0Panels), a group of four rows costs about what one does, and guesses beside the
    /// streams (up to 7 rows) still paid only at 2 streams: 134-138 → 142-151 tokens/s, while 4 streams fell from 215-219 to
    /// 200-204 (q8_0-repacked-panels-2026-12-04.md). A step reading a prompt should not wait for guesses.
    /// </summary>
    private int SpareRowsForGuesses()
    {
        int decoding = 0;
        foreach (ScheduledSequence sequence in _running)
        {
            if (!sequence.Decoding && !sequence.WaitsForPrompt)
            {
                return 0;
            }

            decoding += sequence.Decoding ? 1 : 0;
        }

        return decoding == 1 ? PromptLookup.MaxStepRows - 1 : 0;
    }

    /// <summary>
    /// Chooses a sequence's tokens from its rows of the step in order, as separate steps would: the row after the newest
    /// token's was fed guess 0, so its logits count only while the token chosen before is that guess, and so on. The
    /// slot then keeps only the positions fed with chosen tokens. Returns the tokens chosen.
    /// </summary>
    private int Verify(ScheduledSequence sequence)
    {
        // Every guess counts as dropped until Choose finds it taken: a choice that stops here sends the job's usage from there.
        sequence.Job.GuessesDropped += sequence.DraftLength;
        int chosen = 0, accepted = 0;
        while (true)
        {
            Choose(sequence, _state.LogitsOf(sequence.FirstRow + chosen), chosen < sequence.DraftLength ? sequence.Draft[chosen] : null);
            chosen++;
            if (chosen > sequence.DraftLength)
            {
                break;
            }

            bool guessed = sequence.Generated[^1] == sequence.Draft[chosen - 1];
            accepted += guessed ? 1 : 0;
            if (!guessed || sequence.Finished)
            {
                break;
            }
        }

        Metrics.Guessed(sequence.DraftLength, accepted);
        sequence.Pace!.Taken(sequence.DraftLength, accepted);
        if (chosen <= sequence.DraftLength)
        {
            // Positions fed a guess that was not chosen hold keys and values of no token of the text.
            int kept = sequence.NextPosition;
            _cache.Truncate(sequence.Slot, kept);
            _slotTokens[sequence.Slot].RemoveRange(kept, _slotTokens[sequence.Slot].Count - kept);
        }

        return chosen;
    }

    /// <summary>
    /// Adds a sequence's token at <paramref name="position"/> to the step: a prompt token with its picture features
    /// and 3-D rotary position when the prompt has pictures, a generated one at its rotary offset.
    /// </summary>
    private void Feed(ScheduledSequence sequence, int token, int position, bool wantLogits)
    {
        List<int> held = _slotTokens[sequence.Slot];
        held.RemoveRange(position, held.Count - position);
        held.Add(Held(sequence, token));
        if (sequence.Vision is not Qwen2VL.VisionPrompt vision)
        {
            _batch.Add(token, position, sequence.Slot, wantLogits);
        }
        else if (position < sequence.Prompt.Length)
        {
            vision.AddToBatch(_batch, position, sequence.Slot, wantLogits);
        }
        else
        {
            Qwen2VL.VisionPrompt.AddGenerated(_batch, token, position, sequence.Slot, wantLogits, vision.RopeDelta);
        }

        if (sequence.Job.AdapterScales is float[] scales)
        {
            _batch.SetAdapterScales(_batch.Count - 1, scales);
        }
    }

    /// <summary>
    /// What a slot records as holding, for later prompts to reuse: a picture's pads as -1, which no prompt token
    /// equals, since two pictures' pads are the same id (and what follows a picture sits at shifted rotary positions).
    /// </summary>
    private int Held(ScheduledSequence sequence, int token) =>
        sequence.Vision is not null && token == _model.Config.ImageTokenId ? -1 : token;

    /// <summary>
    /// Chooses the sequence's next token from <paramref name="logits"/>, streams it, and ends the choice (and the job) when
    /// it stops. <paramref name="guess"/>: what the next row of the step was fed, counted as taken (before the job's usage
    /// goes out) when the token equals it.
    /// </summary>
    private void Choose(ScheduledSequence sequence, ReadOnlySpan<float> logits, int? guess = null)
    {
        GenerationJob job = sequence.Job;
        int token;
        TokenLogprobs? logprobs;
        if (sequence.ChosenAhead is var (aheadToken, aheadLogprobs, failure))
        {
            // Chosen from these logits with the step's others (ChooseAhead).
            sequence.ChosenAhead = null;
            failure?.Throw();
            (token, logprobs) = (aheadToken, aheadLogprobs);
        }
        else
        {
            (token, logprobs) = Pick(sequence, logits);
        }

        if (token == guess)
        {
            job.GuessesTaken++;
            job.GuessesDropped--;
        }

        sequence.Generated.Add(token);
        long now = Stopwatch.GetTimestamp();
        if (sequence.FirstTokenAt == 0)
        {
            sequence.FirstTokenAt = now;
            Metrics.PromptDone(Stopwatch.GetElapsedTime(sequence.Started, now));
        }
        else
        {
            Metrics.InterTokenLatency.Observe(Stopwatch.GetElapsedTime(sequence.LastTokenAt, now).TotalSeconds);
        }

        sequence.LastTokenAt = now;

        job.CompletionTokens++;
        if (!job.FirstTokenSeen)
        {
            job.FirstTokenSeen = true;
            job.FirstTokenTimestamp = now;
            Metrics.FirstToken(Stopwatch.GetElapsedTime(job.EnqueuedTimestamp));
        }

        StopReason? stop = job.EosTokenIds.Contains(token) ? StopReason.Eos
            : sequence.Text.ShouldStop(0, sequence.Generated) ? StopReason.Stop
            : sequence.Generated.Count >= job.MaxTokens || sequence.NextPosition >= _options.Context ? StopReason.Length
            : null;
        job.Writer.TryWrite(new TokenEvent(sequence.Choice, token, sequence.Text.Release(0, finished: false), logprobs));
        if (stop is StopReason reason)
        {
            sequence.Finished = true;
            Metrics.GenerationDone(Stopwatch.GetElapsedTime(sequence.FirstTokenAt));
            lock (_lock)
            {
                _slotOwners[sequence.Slot] = null;
            }

            job.Writer.TryWrite(new ChoiceFinishedEvent(sequence.Choice, sequence.Text.Release(0, finished: true), reason, sequence.Text.Found(0)));
            job.FinishedReason = reason == StopReason.Length ? "length" : "stop";
            if (--job.ChoicesLeft == 0)
            {
                Metrics.JobFinished(job);
                job.Writer.TryWrite(new JobFinishedEvent(job.Prompts.Sum(p => p.Length), job.CachedPromptTokens, job.CompletionTokens,
                    job.Prediction is null ? null : (job.GuessesTaken, job.GuessesDropped)));
                job.Writer.TryComplete();
            }
        }
    }

    /// <summary>The sequence's next token from <paramref name="logits"/> by its sampler, and its log-probs where the job asks for them.</summary>
    private static (int Token, TokenLogprobs? Logprobs) Pick(ScheduledSequence sequence, ReadOnlySpan<float> logits)
    {
        GenerationJob job = sequence.Job;
        int token = sequence.Sampler.Next(logits, sequence.Prompt, sequence.Generated);
        TokenLogprobs? logprobs = null;
        if (job.Logprobs is int top && job.LogprobsAfterSampling)
        {
            logprobs = sequence.Sampler.LastDraw(token, top);
        }
        else if (job.Logprobs is int modelTop)
        {
            logprobs = LogProbs.OfToken(logits, token, modelTop);
        }

        return (token, logprobs);
    }

    /// <summary>Frees every slot of a job and takes its sequences out of the running set.</summary>
    private void Release(GenerationJob job)
    {
        foreach (ScheduledSequence sequence in _running)
        {
            if (sequence.Job == job)
            {
                if (!sequence.Finished && sequence.FirstTokenAt != 0)
                {
                    Metrics.GenerationDone(Stopwatch.GetElapsedTime(sequence.FirstTokenAt));
                }

                sequence.Finished = true;
                lock (_lock)
                {
                    _slotOwners[sequence.Slot] = null;
                }
            }
        }

        _running.RemoveAll(s => s.Job == job);
    }
}
