using System.Runtime.InteropServices;
using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// The Responses API's stored responses (<c>store</c>, on unless a request turns it off), kept in memory so that a
/// request may go on from one by <c>previous_response_id</c>, and <c>GET</c>/<c>DELETE /v1/responses/{id}</c> and
/// <c>/input_items</c> find it. At most <paramref name="capacity"/> responses (<see cref="ServerOptions.StoredResponses"/>) and
/// <paramref name="maxBytes"/> (<see cref="MaxBytes"/>) of their JSON are kept; past either the oldest go first (OpenAI keeps them 30 days; a server
/// on one machine keeps what its memory allows, and a client that goes on from an evicted one is told it is gone).
/// </summary>
internal sealed class ResponseStore(int capacity, long maxBytes = ResponseStore.MaxBytes)
{
    /// <summary>The most JSON the stored responses take together (their own items and response objects).</summary>
    public const long MaxBytes = 256L << 20;

    private readonly Dictionary<string, StoredResponse> _responses = new(StringComparer.Ordinal);
    private readonly LinkedList<string> _order = new();
    private readonly Lock _lock = new();
    private long _bytes;

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _responses.Count;
            }
        }
    }

    public void Add(StoredResponse response)
    {
        lock (_lock)
        {
            if (_responses.Remove(response.Id, out StoredResponse? replaced))
            {
                _order.Remove(response.Id);
                _bytes -= replaced.Bytes;
            }

            _responses[response.Id] = response;
            _order.AddLast(response.Id);
            _bytes += response.Bytes;
            while (_order.Count > 1 && (_order.Count > capacity || _bytes > maxBytes))
            {
                Remove(_order.First!.Value);
            }
        }
    }

    public StoredResponse? Find(string id)
    {
        lock (_lock)
        {
            return _responses.GetValueOrDefault(id);
        }
    }

    /// <summary>
    /// The item of that id among the stored responses' conversations (their input and output items), the newest
    /// response's first; null when none holds it.
    /// </summary>
    public JsonElement? FindItem(string id)
    {
        lock (_lock)
        {
            for (LinkedListNode<string>? node = _order.Last; node is not null; node = node.Previous)
            {
                foreach (JsonElement item in _responses[node.Value].Conversation)
                {
                    if (item.TryGetProperty("id", out JsonElement itemId) && itemId.ValueKind == JsonValueKind.String && itemId.ValueEquals(id))
                    {
                        return item;
                    }
                }
            }

            return null;
        }
    }

    public bool Remove(string id)
    {
        lock (_lock)
        {
            if (!_responses.Remove(id, out StoredResponse? removed))
            {
                return false;
            }

            _order.Remove(id);
            _bytes -= removed.Bytes;
            return true;
        }
    }
}

/// <summary>
/// A stored response: its object as it was answered, the items of its request's <c>input</c> (each with an id), and
/// the conversation it ends (the items of every response it went on from, its input and its output), which a request
/// that goes on from it reads before its own input.
/// </summary>
internal sealed record StoredResponse(string Id, byte[] Json, IReadOnlyList<JsonElement> InputItems, IReadOnlyList<JsonElement> Conversation)
{
    /// <summary>
    /// What it holds: its object and its whole conversation. The conversation's earlier items are shared with the
    /// responses it went on from, and counted again here: a chain's last response keeps them all alive after the
    /// earlier ones go, so the store's bound holds for what memory holds.
    /// </summary>
    public long Bytes { get; } = Json.Length + Conversation.Sum(i => (long)JsonMarshal.GetRawUtf8Value(i).Length);
}
