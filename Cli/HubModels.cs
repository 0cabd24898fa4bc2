using System.Globalization;
using QwenSharp.Hub;

namespace QwenSharp.Cli;

/// <summary>--model names from the Hugging Face Hub: found in its cache, or downloaded with a progress line per file.</summary>
internal static class HubModels
{
    public static string Resolve(string model, TextWriter stderr, bool update = false)
    {
        var progress = new HubProgressWriter(stderr);
        try
        {
            return HuggingFaceHub.ResolveAsync(model, new HubOptions { Update = update, Progress = progress }).GetAwaiter().GetResult();
        }
        finally
        {
            progress.Done();
        }
    }

    /// <summary>A bar per file on a terminal, a line per finished file otherwise (reported synchronously, in order).</summary>
    private sealed class HubProgressWriter(TextWriter stderr) : IProgress<HubProgress>
    {
        private ProgressBar? _bar;
        private string? _file;

        public void Report(HubProgress value)
        {
            if (value.File != _file)
            {
                Done();
                _file = value.File;
                _bar = value.Total is long total ? ProgressBar.For(stderr, $"downloading {value.File}", total >> 20) : null;
            }

            if (!value.Done)
            {
                _bar?.Report(value.Bytes >> 20, "MiB");
                return;
            }

            Done();
            stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"downloaded {value.File} ({Commands.InfoCommand.FormatBytes(value.Bytes)})"));
            _file = null;
        }

        public void Done()
        {
            _bar?.Done();
            _bar = null;
        }
    }
}
