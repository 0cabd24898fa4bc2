namespace QwenSharp.Cli;

/// <summary>One subcommand of the qwensharp binary.</summary>
internal interface ICommand
{
    string Name { get; }

    /// <summary>One line for the command list.</summary>
    string Summary { get; }

    /// <summary>The synopsis, e.g. "qwensharp score [--model DIR] --prompt-ids 1,2,3 [--top K] [--json]".</summary>
    string Usage { get; }

    IReadOnlyList<OptionSpec> Options { get; }

    /// <summary>Example command lines for --help.</summary>
    IReadOnlyList<string> Examples { get; }

    /// <summary>How many arguments that are not options the command takes (TEXT for tokenize); more is a usage error.</summary>
    int MaxPositionals => 0;

    int Run(Arguments args, TextWriter stdout, TextWriter stderr);

    /// <summary>Runs a command that reads standard input (chat); the others ignore it.</summary>
    int Run(Arguments args, TextReader stdin, TextWriter stdout, TextWriter stderr) => Run(args, stdout, stderr);
}
