using System.Reflection;
using QwenSharp.Cli.Commands;
using QwenSharp.Tokenization.Chat;

namespace QwenSharp.Cli;

/// <summary>
/// The qwensharp command line: dispatches to a command, prints --help and --version, and turns every
/// expected failure (bad usage, a bad file, unsupported input) into one line on stderr and exit code 2.
/// </summary>
internal static class CliApp
{
    public const int ExitOk = 0;
    public const int ExitInternalError = 1;
    public const int ExitBadInput = 2;

    public static IReadOnlyList<ICommand> Commands { get; } =
        [new GenerateCommand(), new ChatCommand(), new ScoreCommand(), new EmbedCommand(), new ClassifyCommand(), new RerankCommand(), new PerplexityCommand(), new TokenizeCommand(), new InfoCommand(), new BenchCommand(), new QuantizeCommand(), new ImatrixCommand(), new PullCommand(), new ModelsCommand(), new DevicesCommand(), new ServeCommand(), new BatchCommand()];

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) => Run(args, TextReader.Null, stdout, stderr);

    public static int Run(string[] args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            WriteOverview(stdout);
            return args.Length == 0 ? ExitBadInput : ExitOk;
        }

        if (args[0] is "--version" or "-V")
        {
            stdout.WriteLine($"qwensharp {Version}");
            return ExitOk;
        }

        ICommand? command = Commands.FirstOrDefault(c => c.Name == args[0]);
        if (command is null)
        {
            stderr.WriteLine($"qwensharp: unknown command '{args[0]}' (commands: {string.Join(", ", Commands.Select(c => c.Name))}; see qwensharp --help)");
            return ExitBadInput;
        }

        string[] rest = args[1..];
        if (rest.Any(a => a is "--help" or "-h"))
        {
            WriteHelp(command, stdout);
            return ExitOk;
        }

        try
        {
            Arguments arguments = Arguments.Parse(command.Name, rest, command.Options);
            if (arguments.Positionals.Count > command.MaxPositionals)
            {
                string unexpected = arguments.Positionals[command.MaxPositionals];
                string hint = unexpected is ['-', _, ..] ? LlamaCppOptions.Hint(unexpected.TrimStart('-'), command.Options) : "";
                throw new UsageException($"unexpected argument '{unexpected}' (options start with --; see qwensharp {command.Name} --help{hint})");
            }

            return command.Run(arguments, stdin, stdout, stderr);
        }
        catch (OutputClosedException)
        {
            // The reader closed the pipe (| head): stop generating and exit quietly, as Unix tools do.
            return 0;
        }
        catch (Exception e) when (IsBadInput(e))
        {
            stderr.WriteLine($"qwensharp {command.Name}: error: {OneLine(e)}");
            return ExitBadInput;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"qwensharp {command.Name}: internal error: {e.GetType().Name}: {OneLine(e)} (please report this)");
            return ExitInternalError;
        }
    }

    /// <summary>Failures that come from what the user gave, not from a bug.</summary>
    private static bool IsBadInput(Exception e) =>
        e is UsageException or Gpu.GpuException or TemplateException or InvalidDataException or NotSupportedException or FileNotFoundException
            or DirectoryNotFoundException or ArgumentException or UnauthorizedAccessException or IOException or OutOfMemoryException;

    /// <summary>The message without .NET's "(Parameter 'x')" and "Actual value was" additions.</summary>
    private static string OneLine(Exception e)
    {
        string message = e is ArgumentException { ParamName: not null } argument
            ? argument.Message.Replace($" (Parameter '{argument.ParamName}')", "", StringComparison.Ordinal)
            : e.Message;
        int newline = message.IndexOfAny(['\r', '\n']);
        return newline >= 0 ? message[..newline] : message;
    }

    private static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    private static void WriteOverview(TextWriter output)
    {
        output.WriteLine("qwensharp: run Qwen2 / Qwen2.5 (and Llama) models from a Hugging Face folder or a GGUF file, in pure C#");
        output.WriteLine();
        output.WriteLine("usage: qwensharp COMMAND [options]        (qwensharp COMMAND --help for its options)");
        output.WriteLine();
        foreach (ICommand command in Commands)
        {
            output.WriteLine($"  {command.Name,-11} {command.Summary}");
        }

        output.WriteLine();
        output.WriteLine("Without --model, the bundled demo model (llama2.c's stories260K) is used.");
        output.WriteLine("Exit codes: 0 success, 2 bad usage or bad input (one line on stderr), 1 internal error.");
    }

    private static void WriteHelp(ICommand command, TextWriter output)
    {
        output.WriteLine($"{command.Summary}");
        output.WriteLine();
        output.WriteLine($"usage: {command.Usage}");
        output.WriteLine();
        output.WriteLine("options:");
        foreach (OptionSpec option in command.Options)
        {
            string name = option.TakesValue ? $"--{option.Name} {option.ValueName}" : $"--{option.Name}";
            output.WriteLine($"  {name,-26} {option.Help}");
        }

        output.WriteLine();
        output.WriteLine("examples:");
        foreach (string example in command.Examples)
        {
            output.WriteLine($"  {example}");
        }
    }
}
