using System.Globalization;
using QwenSharp.Hub;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp models</c>: the models in the Hugging Face cache that --model takes by name (ours and those transformers,
/// vLLM or huggingface-cli downloaded), with their size, path, and why one cannot run where its config says so.
/// </summary>
internal sealed class ModelsCommand : ICommand
{
    public string Name => "models";

    public string Summary => "the models in the Hugging Face cache (HF_HUB_CACHE, else ~/.cache/huggingface/hub) that a command can be given by name";

    public string Usage => "qwensharp models [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
        [new("json", null, "print JSON: {\"cache\",\"models\":[{\"name\",\"commit\",\"path\",\"bytes\",\"unsupported\"}]}")];

    public IReadOnlyList<string> Examples { get; } = ["qwensharp models", "qwensharp models --json"];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        IReadOnlyList<CachedModel> models = HuggingFaceHub.ListCached();
        string cache = HubCache.DefaultRoot();
        if (args.Flag("json"))
        {
            JsonOutput.Write(stdout, w =>
            {
                w.WriteStartObject();
                w.WriteString("cache", cache);
                w.WriteStartArray("models");
                foreach (CachedModel m in models)
                {
                    w.WriteStartObject();
                    w.WriteString("name", m.Name);
                    w.WriteString("commit", m.Commit);
                    w.WriteString("path", m.Path);
                    w.WriteNumber("bytes", m.Bytes);
                    w.WriteString("unsupported", m.Unsupported);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            });
            return 0;
        }

        if (models.Count == 0)
        {
            stdout.WriteLine($"no models in the Hugging Face cache {cache}; qwensharp pull OWNER/NAME downloads one");
            return 0;
        }

        int width = models.Max(m => m.Name.Length);
        foreach (CachedModel m in models)
        {
            string note = m.Unsupported is null ? "" : $"  (cannot run: {m.Unsupported})";
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{m.Name.PadRight(width)}  {InfoCommand.FormatBytes(m.Bytes),10}  {m.Path}{note}"));
        }

        return 0;
    }
}
