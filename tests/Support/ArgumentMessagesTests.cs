using QwenSharp.Errors;

namespace QwenSharp.Tests.Support;

public class ArgumentMessagesTests
{
    [Fact]
    public void TheParameterDotNetAppendsIsLeftOff()
    {
        var error = new ArgumentOutOfRangeException("temperature", "temperature must be at least 0");

        Assert.Contains("(Parameter 'temperature')", error.Message, StringComparison.Ordinal);
        Assert.Equal("temperature must be at least 0", error.BareMessage());
    }

    [Fact]
    public void AMessageWithoutAParameterIsKeptWhole()
    {
        var error = new ArgumentException("a text that says (Parameter 'x') itself");

        Assert.Equal("a text that says (Parameter 'x') itself", error.BareMessage());
    }
}
