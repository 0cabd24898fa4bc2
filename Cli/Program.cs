namespace QwenSharp.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        AvxDispatch.HandOverIfBetter(args);
        var stdout = new StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false)) { AutoFlush = false };
        try
        {
            return CliApp.Run(args, Console.In, stdout, Console.Error);
        }
        finally
        {
            stdout.Flush();
        }
    }
}
