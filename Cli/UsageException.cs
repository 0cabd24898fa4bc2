namespace QwenSharp.Cli;

/// <summary>Bad command-line usage: reported as one line on stderr, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
