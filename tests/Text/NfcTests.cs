using System.Text.Json;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization.Unicode;

namespace QwenSharp.Tests.Text;

/// <summary>Our NFC against Python's unicodedata.normalize (tests/fixtures/tokenizer/nfc-cases.json).</summary>
public class NfcTests
{
    [Fact]
    public void MatchesPythonOnEveryCase()
    {
        using JsonDocument document = Fixtures.Json("tokenizer", "nfc-cases.json");
        int checkedCases = 0;
        foreach (JsonElement c in document.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            string nfc = c.GetProperty("nfc").GetString()!;
            Assert.Equal(nfc, Nfc.Normalize(text));
            Assert.Equal(nfc == text, Nfc.NormalizeOrNull(text) is null || Nfc.NormalizeOrNull(text) == text);
            checkedCases++;
        }

        Assert.True(checkedCases > 300);
    }

    [Fact]
    public void TextThatIsAlreadyNfcIsReturnedAsIs()
    {
        const string text = "Plain ASCII, café, 你好, 한국어, 🤗";
        Assert.Same(text, Nfc.Normalize(text));
        Assert.True(Nfc.IsQuickNormalized(text));
    }
}
