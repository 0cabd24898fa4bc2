namespace QwenSharp.Sampling;

/// <summary>
/// A recogniser of the texts a constrained answer may be, fed one byte at a time (<see cref="JsonSchemaPrefix"/>). A
/// value type, so that trying a token is a copy and a few steps.
/// </summary>
public interface IByteAutomaton
{
    /// <summary>Takes one byte; false (the state then undefined) when no text the automaton accepts begins with the bytes so far.</summary>
    bool Feed(byte b);

    /// <summary>The text so far is a whole answer, and nothing may follow it.</summary>
    bool Complete { get; }

    /// <summary>The whole state as a string: equal keys take the same bytes from here on (<see cref="TokenMasks{TAutomaton}"/> keeps a mask per key).</summary>
    string Key { get; }
}
