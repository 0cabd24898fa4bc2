using System.Text;
using System.Text.RegularExpressions;
using QwenSharp.Sampling;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// <see cref="TextPatternPrefix"/> (vLLM's guided_regex): random walks over every byte the automaton allows end in text
/// that .NET's own regular expressions match whole; a text is refused at the byte that leaves the pattern.
/// </summary>
public class TextPatternPrefixTests
{
    [Theory]
    [InlineData(@"(yes|no)")]
    [InlineData(@"^\d{3}-\d{4}$")]
    [InlineData(@"[A-Z][a-z]+( [A-Z][a-z]+)*")]
    [InlineData(@"(é|😀|\n){1,3}x?")]
    [InlineData(@"\w+@\w+\.(com|org)")]
    public void EveryWalkEndsInTextThePatternMatchesWhole(string regex)
    {
        List<string> answers = Walks(regex, 200, regex.Length);

        Assert.Equal(200, answers.Count);
        string whole = $"^(?:{regex.TrimStart('^').TrimEnd('$')})\\z";
        Assert.All(answers, a => Assert.Matches(new Regex(whole), a));
    }

    /// <summary>
    /// Walks that take a byte the automaton allows at each step (a printable one half the time), and stop, where the text
    /// may end, more often the longer they get (an open-ended pattern is never <see cref="TextPatternPrefix.Complete"/>).
    /// A state with no byte allowed that may not end fails the test where it happens.
    /// </summary>
    private static List<string> Walks(string regex, int walks, int seed)
    {
        var random = new Random(seed);
        var answers = new List<string>();
        for (int walk = 0; walk < walks; walk++)
        {
            TextPatternPrefix state = TextPatternPrefix.Start(regex);
            var text = new List<byte>();
            for (int step = 0; !state.Complete && !(state.CanEnd && random.Next(40) < step); step++)
            {
                TextPatternPrefix current = state;
                byte[] allowed = [.. Enumerable.Range(0, 256).Select(b => (byte)b).Where(b => { TextPatternPrefix next = current; return next.Feed(b); })];
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

    [Theory]
    [InlineData(@"\d{3}-\d{4}", "555-1234", -1)]
    [InlineData(@"\d{3}-\d{4}", "555-12a", 6)]
    [InlineData(@"\d{3}-\d{4}", "5555", 3)]
    [InlineData(@"(yes|no)", "nope", 2)]
    [InlineData(@"(é|😀)+", "é😀é", -1)]
    [InlineData(@"(é|😀)+", "éa", 2)]
    public void TextIsRefusedWhereItLeavesThePattern(string regex, string text, int refusedAt)
    {
        TextPatternPrefix state = TextPatternPrefix.Start(regex);
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        int at = -1;
        for (int i = 0; i < bytes.Length; i++)
        {
            if (!state.Feed(bytes[i]))
            {
                at = i;
                break;
            }
        }

        Assert.Equal(refusedAt, at);
        Assert.Equal(refusedAt < 0, refusedAt < 0 && state.CanEnd);
    }

    [Fact]
    public void APatternWithNothingMoreToComeIsComplete()
    {
        TextPatternPrefix state = TextPatternPrefix.Start("(yes|yesss)");

        Assert.All("yes"u8.ToArray(), b => Assert.True(state.Feed(b)));
        Assert.True(state.CanEnd);
        Assert.False(state.Complete);
        Assert.All("ss"u8.ToArray(), b => Assert.True(state.Feed(b)));
        Assert.True(state.Complete);
    }
}
