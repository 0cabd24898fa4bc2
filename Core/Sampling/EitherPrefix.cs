using System.Globalization;

namespace QwenSharp.Sampling;

/// <summary>
/// Text that one of two automata allows (a tool call or an answer in the response format: <see cref="ToolCallPrefix"/>
/// or <see cref="JsonSchemaPrefix"/>): both are fed every byte, and each drops out at the first byte it refuses. Meant
/// for automata whose texts begin differently, as those two do ("&lt;" and "{"), so that after the first byte one is left
/// and this costs nothing more.
/// </summary>
public struct EitherPrefix<TFirst, TSecond>(TFirst first, TSecond second) : ITextAutomaton
    where TFirst : struct, ITextAutomaton
    where TSecond : struct, ITextAutomaton
{
#pragma warning disable IDE0044 // Feed changes the states in place: readonly fields would feed copies.
    private TFirst _first = first;
    private TSecond _second = second;
#pragma warning restore IDE0044
    private bool _firstOut;
    private bool _secondOut;

    public readonly bool CanEnd => (!_firstOut && _first.CanEnd) || (!_secondOut && _second.CanEnd);

    public readonly bool Complete => (_firstOut || _first.Complete) && (_secondOut || _second.Complete);

    public bool Feed(byte b)
    {
        _firstOut = _firstOut || !_first.Feed(b);
        _secondOut = _secondOut || !_second.Feed(b);
        return !_firstOut || !_secondOut;
    }

    public readonly string KeyFor(int tokenBytes) => string.Create(CultureInfo.InvariantCulture,
        $"{(_firstOut ? "-" : _first.KeyFor(tokenBytes))}|{(_secondOut ? "-" : _second.KeyFor(tokenBytes))}");
}
