using System.Text.RegularExpressions;
using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

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
        List<string> answers = AutomatonWalks.Walks(TextPatternPrefix.Start(regex), 200, regex.Length);

        Assert.Equal(200, answers.Count);
        string whole = $"^(?:{regex.TrimStart('^').TrimEnd('$')})\\z";
        Assert.All(answers, a => Assert.Matches(new Regex(whole), a));
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
        (int at, bool canEnd) = AutomatonWalks.Feed(TextPatternPrefix.Start(regex), text);

        Assert.Equal(refusedAt, at);
        Assert.Equal(refusedAt < 0, canEnd);
    }

    /// <summary>A pattern as a server may be sent it: groups nested past the parser's depth are refused, not a crash.</summary>
    [Fact]
    public void DeeplyNestedGroupsAreRefused()
    {
        var error = Assert.Throws<ArgumentException>(() => TextPatternPrefix.Start(new string('(', 100_000) + "a" + new string(')', 100_000)));

        Assert.Contains("groups nest deeper than 256 (at character ", error.Message, StringComparison.Ordinal);
        Assert.Equal((-1, true), AutomatonWalks.Feed(TextPatternPrefix.Start(new string('(', 200) + "a" + new string(')', 200)), "a"));
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
