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
}
