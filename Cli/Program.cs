namespace QwenSharp.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        AvxDispatch.HandOverIfBetter(args);
        using var stdout = new StandardOutput();
        int code = CliApp.Run(args, Console.In, stdout, Console.Error);
        try
        {
            stdout.Flush();
        }
        catch (OutputClosedException)
        {
            // The reader is gone; what was left to write has nowhere to go.
        }

        return code;
    }
}
