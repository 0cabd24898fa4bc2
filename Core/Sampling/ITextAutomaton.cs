namespace QwenSharp.Sampling;

/// <summary>
/// A byte automaton that a held answer follows (<see cref="JsonSchemaPrefix"/>: a JSON value; <see cref="ToolCallPrefix"/>:
/// Qwen's tool-call blocks). A value type, so that trying a token is a copy of the state fed its bytes;
/// <see cref="TokenMasks"/> works out per state which tokens continue it, and <see cref="AutomatonConstraint{TState}"/>
/// holds one sequence to it.
/// </summary>
public interface ITextAutomaton
{
    /// <summary>Takes one byte; false (the state then undefined) when no text the automaton allows begins with the bytes so far.</summary>
    bool Feed(byte b);

    /// <summary>
    /// The state as a string: states with equal keys allow the same next tokens, of at most <paramref name="tokenBytes"/>
    /// bytes each (<see cref="TokenMasks"/> keeps a mask per key).
    /// </summary>
    string KeyFor(int tokenBytes);

    /// <summary>The text so far is a whole answer: end-of-sequence tokens may come now (other tokens too, unless <see cref="Complete"/>).</summary>
    bool CanEnd { get; }

    /// <summary>The text so far is a whole answer and nothing may follow it.</summary>
    bool Complete { get; }
}
