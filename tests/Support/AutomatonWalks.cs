using System.Text;
using QwenSharp.Sampling;

namespace QwenSharp.Tests.Support;

/// <summary>Random texts an automaton allows, byte by byte, for checking them against an independent recognizer.</summary>
internal static class AutomatonWalks
{
    /// <summary>
    /// Walks that take a byte the automaton allows at each step (a printable one half the time), and stop, where the text
    /// may end, more often the longer they get (an open-ended automaton is never <see cref="ITextAutomaton.Complete"/>).
    /// A state with no byte allowed that may not end fails the test where it happens.
    /// </summary>
    public static List<string> Walks<TState>(TState start, int walks, int seed)
        where TState : struct, ITextAutomaton
    {
        var random = new Random(seed);
        var answers = new List<string>();
        for (int walk = 0; walk < walks; walk++)
        {
            TState state = start;
            var text = new List<byte>();
            for (int step = 0; !state.Complete && !(state.CanEnd && random.Next(40) < step); step++)
            {
                TState current = state;
                byte[] allowed = [.. Enumerable.Range(0, 256).Select(b => (byte)b).Where(b => { TState next = current; return next.Feed(b); })];
                Assert.True(allowed.Length > 0 || state.CanEnd, $"no byte can follow {Encoding.UTF8.GetString([.. text])}");
                if (allowed.Length == 0)
                {
                    break;
                }

                byte[] printable = [.. allowed.Where(b => b is >= 0x20 and < 0x7F)];
                byte[] pool = printable.Length > 0 && random.Next(2) == 0 ? printable : allowed;
                byte chosen = pool[random.Next(pool.Length)];
                Assert.True(state.Feed(chosen));
                text.Add(chosen);
            }

            answers.Add(Encoding.UTF8.GetString([.. text]));
        }

        return answers;
    }

    /// <summary>The index of the first byte of <paramref name="text"/> the automaton refuses, -1 for none; and whether it may end after them all.</summary>
    public static (int RefusedAt, bool CanEnd) Feed<TState>(TState state, string text)
        where TState : struct, ITextAutomaton
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        for (int i = 0; i < bytes.Length; i++)
        {
            if (!state.Feed(bytes[i]))
            {
                return (i, false);
            }
        }

        return (-1, state.CanEnd);
    }
}
