using QwenSharp.Tokenization;


namespace QwenSharp.Tests.Support;

/// <summary>The tokenizers the fixtures use, loaded once per test run.</summary>
internal static class TestTokenizers
{
    private static readonly Lazy<Tokenizer> s_qwen = new(() => Tokenizer.FromDirectory(QwenDirectory));
    private static readonly Lazy<Tokenizer> s_stories = new(() => Tokenizer.FromDirectory(Fixtures.DemoModel));

    /// <summary>The real Qwen2.5 tokenizer files (one copy in the repository, used by every Qwen2 fixture).</summary>
    public static string QwenDirectory => Fixtures.Directory("qwen2.5-0.5b-instruct");

    public static Tokenizer Qwen => s_qwen.Value;

    public static Tokenizer Stories => s_stories.Value;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<string>> s_withTokenizer = new();

    /// <summary>A model folder with tiny-qwen2's weights and the real Qwen2.5 tokenizer and chat template.</summary>
    public static string TinyQwenWithTokenizer => WithTokenizer(Fixtures.Directory("tiny-qwen2"), QwenDirectory);

    /// <summary>
    /// A fixture's weights beside another folder's tokenizer.json and tokenizer_config.json, as a Hugging Face folder
    /// would hold them (links, made once per run).
    /// </summary>
    public static string WithTokenizer(string modelDirectory, string tokenizerDirectory) =>
        s_withTokenizer.GetOrAdd($"{modelDirectory}|{tokenizerDirectory}", _ => new Lazy<string>(() =>
        {
            string directory = Fixtures.TempDirectory();
            foreach (string file in System.IO.Directory.GetFiles(modelDirectory))
            {
                File.CreateSymbolicLink(Path.Combine(directory, Path.GetFileName(file)), file);
            }

            foreach (string file in (string[])["tokenizer.json", "tokenizer_config.json"])
            {
                if (!File.Exists(Path.Combine(directory, file)))
                {
                    File.CreateSymbolicLink(Path.Combine(directory, file), Path.Combine(tokenizerDirectory, file));
                }
            }

            return directory;
        })).Value;
}
