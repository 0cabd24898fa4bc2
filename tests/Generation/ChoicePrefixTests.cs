using System.Text;
using QwenSharp.Sampling;

namespace QwenSharp.Tests.Generation;

/// <summary><see cref="ChoicePrefix"/>: random walks end in one of the texts; a text that begins another may end or go on.</summary>
public class ChoicePrefixTests
{
    private static readonly string[] s_labels = ["yes", "no", "no way", "ça", "😀"];

    [Fact]
    public void EveryWalkEndsInOneOfTheTexts()
    {
        List<string> answers = SchemaWalks.Finished(() => ChoicePrefix.Start(s_labels), 200, 4);

        Assert.True(answers.Count > 150, $"only {answers.Count} of 200 walks finished");
        Assert.All(answers, a => Assert.Contains(a, s_labels));
        Assert.True(answers.Distinct().Count() >= 4, string.Join(", ", answers.Distinct()));
    }

    [Theory]
    [InlineData("no", true, false)]
    [InlineData("no way", true, true)]
    [InlineData("yes", true, true)]
    [InlineData("ye", false, false)]
    [InlineData("", false, false)]
    public void ATextThatBeginsAnotherMayEndOrGoOn(string text, bool canEnd, bool complete)
    {
        ChoicePrefix state = ChoicePrefix.Start(s_labels);

        Assert.All(Encoding.UTF8.GetBytes(text), b => Assert.True(state.Feed(b)));

        Assert.Equal(canEnd, state.CanEnd);
        Assert.Equal(complete, state.Complete);
    }

    [Fact]
    public void AnythingElseIsRefusedAtItsFirstByteOff()
    {
        ChoicePrefix state = ChoicePrefix.Start(s_labels);

        Assert.True(state.Feed((byte)'n'));
        Assert.False(state.Feed((byte)'e'));
    }
}
