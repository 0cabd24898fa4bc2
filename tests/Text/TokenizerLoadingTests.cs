using System.Text.Json.Nodes;
using QwenSharp.Tests.Cli;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;

namespace QwenSharp.Tests.Text;

/// <summary>A tokenizer.json we cannot run exactly is refused with an error naming the file, the field and the type.</summary>
public class TokenizerLoadingTests
{
    private static string WithTokenizerJson(Action<JsonNode> edit)
    {
        JsonNode json = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.DemoModel, "tokenizer.json")))!;
        edit(json);
        string directory = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), json.ToJsonString());
        return directory;
    }

    public static TheoryData<string, string> UnsupportedComponents() => new()
    {
        { """{"type": "Lowercase"}""", "normalizer type 'Lowercase' is not supported" },
        { """{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "NFKD"}]}""", "normalizer.normalizers[1]: normalizer type 'NFKD'" },
    };

    [Theory]
    [MemberData(nameof(UnsupportedComponents))]
    public void UnsupportedNormalizerNamesItsType(string normalizer, string message)
    {
        string directory = WithTokenizerJson(json => json["normalizer"] = JsonNode.Parse(normalizer));
        var error = Assert.Throws<NotSupportedException>(() => Tokenizer.FromDirectory(directory));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.Contains("tokenizer.json", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnsupportedPreTokenizerDecoderAndModelNameTheirTypes()
    {
        string preTokenizer = WithTokenizerJson(json => json["pre_tokenizer"] = JsonNode.Parse("""{"type": "Whitespace"}"""));
        string decoder = WithTokenizerJson(json => json["decoder"] = JsonNode.Parse("""{"type": "WordPiece", "prefix": "##"}"""));
        string model = WithTokenizerJson(json => json["model"]!["type"] = "Unigram");

        Assert.Contains("pre-tokenizer type 'Whitespace' is not supported",
            Assert.Throws<NotSupportedException>(() => Tokenizer.FromDirectory(preTokenizer)).Message, StringComparison.Ordinal);
        Assert.Contains("decoder type 'WordPiece' is not supported",
            Assert.Throws<NotSupportedException>(() => Tokenizer.FromDirectory(decoder)).Message, StringComparison.Ordinal);
        Assert.Contains("model type 'Unigram' is not supported",
            Assert.Throws<NotSupportedException>(() => Tokenizer.FromDirectory(model)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BrokenFilesNameTheFieldThatIsWrong()
    {
        string badMerge = WithTokenizerJson(json => json["model"]!["merges"]!.AsArray()[3] = "▁ zzzz");
        string badId = WithTokenizerJson(json => json["added_tokens"]!.AsArray()[0]!["id"] = "zero");
        string notJson = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(notJson, "tokenizer.json"), "{\"model\": ");

        Assert.Contains("model.merges[3] names \"zzzz\", which is not in model.vocab",
            Assert.Throws<InvalidDataException>(() => Tokenizer.FromDirectory(badMerge)).Message, StringComparison.Ordinal);
        Assert.Contains("added_tokens[0]: field 'id' must be an integer",
            Assert.Throws<InvalidDataException>(() => Tokenizer.FromDirectory(badId)).Message, StringComparison.Ordinal);
        Assert.Contains("tokenizer.json: not valid JSON",
            Assert.Throws<InvalidDataException>(() => Tokenizer.FromDirectory(notJson)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheCliReportsABadTokenizerInOneLineWithExitCode2()
    {
        string directory = WithTokenizerJson(json => json["pre_tokenizer"] = JsonNode.Parse("""{"type": "Whitespace"}"""));

        CliRunner.Result result = CliRunner.Run("tokenize", "--model", directory, "hello");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("pre-tokenizer type 'Whitespace' is not supported", Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public void ChatTemplateFromItsOwnFileTakesPrecedence()
    {
        string directory = WithTokenizerJson(_ => { });
        File.WriteAllText(Path.Combine(directory, "chat_template.jinja"), "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}");

        Assert.Equal("[user]hi", Tokenizer.FromDirectory(directory).ApplyChatTemplate([("user", "hi")]));
    }
}
