using System.Text;
using QwenSharp.Generation;

namespace QwenSharp.Server.Api;

/// <summary>One choice as its events arrive: its text, tokens, log-probs and why it ended.</summary>
internal sealed class ChoiceState
{
    public StringBuilder Text { get; } = new();

    public List<TokenLogprobs> Logprobs { get; } = [];

    public StopReason? Reason { get; set; }

    /// <summary>The stop string that ended it, if one did.</summary>
    public string? StopWord { get; set; }

    /// <summary>How much of the text a stream has sent.</summary>
    public int Sent { get; set; }

    /// <summary>Whether a stream has sent the opening chunk (the role).</summary>
    public bool Opened { get; set; }

    /// <summary>OpenAI's finish_reason: an end-of-sequence token or a stop string is "stop", the limit "length".</summary>
    public static string FinishReason(StopReason reason) => reason == StopReason.Length ? "length" : "stop";
}
