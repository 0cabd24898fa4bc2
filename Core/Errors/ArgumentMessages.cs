namespace QwenSharp.Errors;

/// <summary>What an <see cref="ArgumentException"/> says, for a user who never saw the parameter it names.</summary>
public static class ArgumentMessages
{
    /// <summary>
    /// The message without the " (Parameter 'x')" that .NET appends when a parameter name is set: the server and the
    /// command line name the field or option themselves.
    /// </summary>
    public static string BareMessage(this ArgumentException error)
    {
        ArgumentNullException.ThrowIfNull(error);
        string message = error.Message;
        int parameter = error.ParamName is null ? -1 : message.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        return parameter < 0 ? message : message[..parameter];
    }
}
