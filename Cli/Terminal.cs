using System.Globalization;

namespace QwenSharp.Cli;

/// <summary>
/// What the CLI may draw: progress bars only when stderr is a terminal, colour only then and without
/// NO_COLOR (https://no-color.org); redirected output stays plain text for scripts.
/// </summary>
internal static class Terminal
{
    public static bool IsInteractiveError => !Console.IsErrorRedirected;

    public static bool UseColor => IsInteractiveError && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));

    /// <summary>Text in a dim colour when colour is on.</summary>
    public static string Dim(string text) => UseColor ? $"\u001b[2m{text}\u001b[0m" : text;

    /// <summary>Text in a bold colour when colour is on.</summary>
    public static string Bold(string text) => UseColor ? $"\u001b[1;36m{text}\u001b[0m" : text;
}

/// <summary>A one-line progress bar on stderr, redrawn in place; silent when stderr is not a terminal.</summary>
internal sealed class ProgressBar(TextWriter stderr, string label, long total, bool enabled)
{
    private const int Width = 30;
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    private long _lastDrawMs = -1000;

    public static ProgressBar For(TextWriter stderr, string label, long total) =>
        new(stderr, label, total, Terminal.IsInteractiveError && ReferenceEquals(stderr, Console.Error));

    /// <summary>Shows <paramref name="done"/> of the total and the rate in <paramref name="unit"/> per second.</summary>
    public void Report(long done, string unit)
    {
        if (!enabled || (_clock.ElapsedMilliseconds - _lastDrawMs < 100 && done < total))
        {
            return;
        }

        _lastDrawMs = _clock.ElapsedMilliseconds;
        double fraction = total == 0 ? 1 : Math.Clamp((double)done / total, 0, 1);
        int filled = (int)(fraction * Width);
        string bar = new string('=', filled) + (filled < Width ? ">" : "") + new string(' ', Math.Max(0, Width - filled - 1));
        double rate = done / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        stderr.Write(string.Create(CultureInfo.InvariantCulture, $"\r{label} [{bar}] {fraction * 100,5:F1}%  {rate:F1} {unit}/s "));
    }

    /// <summary>Clears the bar's line.</summary>
    public void Done()
    {
        if (enabled)
        {
            stderr.Write("\r" + new string(' ', label.Length + Width + 40) + "\r");
        }
    }
}
