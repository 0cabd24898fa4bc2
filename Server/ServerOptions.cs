namespace QwenSharp.Server;

/// <summary>How <c>qwensharp serve</c> listens and how much it takes on.</summary>
public sealed record ServerOptions
{
    /// <summary>Address to bind; loopback unless told otherwise (the server has no TLS of its own).</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (see <see cref="QwenServer.Address"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>When set, every request but /health needs <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Sequences decoding at once (KV slots); a request with n choices takes n.</summary>
    public int MaxConcurrent { get; init; } = 8;

    /// <summary>Positions per sequence (prompt plus answer); null: the model's max_position_embeddings, at most 4096.</summary>
    public int? Context { get; init; }

    /// <summary>Requests waiting for a slot beyond which the server answers 429.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>Longest a request may take, queue included.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Largest request body accepted.</summary>
    public long MaxBodyBytes { get; init; } = 16 << 20;

    /// <summary>Prompt tokens read per step beside the decode rows.</summary>
    public int PrefillChunk { get; init; } = 256;

    /// <summary>
    /// Prompt lookup decoding: up to this many guessed next tokens a step (1 to <see cref="Generation.PromptLookup.MaxDraftTokens"/>),
    /// taken from where the text's last tokens stood before and checked in the same step, while one sequence decodes
    /// and no prompt is read (several streams already share each read of the weights, and beside them guesses cost
    /// more than they gave on the CPU). The same tokens as without (up to near-ties on the CPU's repacked panels, exactly
    /// with <c>QwenModelOptions.BatchInvariant</c>); more than one a step where answers repeat the
    /// prompt or themselves. 0: off. Null: the model's <c>QwenModelOptions.PromptLookup</c>.
    /// </summary>
    public int? PromptLookup { get; init; }

    /// <summary>How long Ctrl+C waits for running requests before cancelling them.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How <c>/rerank</c> writes a query and a document for a reranker trained on a prompt: a template with
    /// <c>{query}</c> and <c>{document}</c> (see <see cref="RerankPrompt"/>); null: the pair as the tokenizer encodes it.
    /// </summary>
    public string? RerankTemplate { get; init; }

    /// <summary>
    /// Responses the Responses API keeps (those whose request did not give <c>store: false</c>) for
    /// <c>previous_response_id</c> and <c>GET /v1/responses/{id}</c>: in memory, at most this many and 256 MiB of their
    /// JSON (with the conversations they end), the oldest going first. 0: none kept.
    /// </summary>
    public int StoredResponses { get; init; } = 1000;

    /// <summary>
    /// Whether a chat whose last message is the assistant's is answered by continuing that message's text (assistant
    /// prefill, llama-server's default) where the request does not say; false: a new assistant turn opens after it, as
    /// vLLM opens one (llama-server's <c>--no-prefill-assistant</c>). A request's <c>continue_final_message</c> or
    /// <c>add_generation_prompt</c> decides for itself; Anthropic's Messages API always continues.
    /// </summary>
    public bool PrefillAssistant { get; init; } = true;

    /// <summary>
    /// The folder <c>POST /slots/{id}?action=save</c> writes slot files to and <c>action=restore</c> reads them from
    /// (llama-server's <c>--slot-save-path</c>); null: save and restore are refused (501), erase still works.
    /// </summary>
    public string? SlotSavePath { get; init; }

    /// <summary>The id /v1/models lists; null: the model folder's or file's name.</summary>
    public string? ModelName { get; init; }
}
