using System.Text;
using System.Text.Json;
using QwenSharp.Sampling;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// <see cref="JsonSchemaPrefix"/> over <see cref="JsonSchema.AnyObject"/> (OpenAI's json_object) against
/// System.Text.Json as the oracle: random objects (escapes, every UTF-8 length, every number form, nesting, whitespace)
/// are accepted byte by byte and complete at their last byte; after a random one-byte mutation the automaton completes
/// exactly when System.Text.Json parses the bytes as an object (within the automaton's stated limits); and named edge
/// cases fail at the byte that breaks them.
/// </summary>
public class JsonObjectPrefixTests
{
    private static JsonSchemaPrefix AnyObject => JsonSchemaPrefix.Start(JsonSchema.AnyObject);

    /// <summary>Feeds the bytes; the index of the first refused byte, or -1 when all were taken.</summary>
    private static int Refused(ReadOnlySpan<byte> text, out bool complete)
    {
        JsonSchemaPrefix state = AnyObject;
        for (int i = 0; i < text.Length; i++)
        {
            if (state.Feed(text[i]))
            {
                continue;
            }

            complete = false;
            return i;
        }

        complete = state.Complete;
        return -1;
    }

    [Fact]
    public void RandomObjectsAreTakenWholeAndCompleteAtTheirLastByte()
    {
        var random = new Random(11);
        for (int n = 0; n < 500; n++)
        {
            byte[] text = Encoding.UTF8.GetBytes(RandomObject(random));
            Assert.True(ParsesAsObject(text), Encoding.UTF8.GetString(text));

            JsonSchemaPrefix state = AnyObject;
            for (int i = 0; i < text.Length; i++)
            {
                Assert.False(state.Complete, $"complete before byte {i} of {Encoding.UTF8.GetString(text)}");
                Assert.True(state.Feed(text[i]), $"byte {i} (0x{text[i]:X2}) refused in {Encoding.UTF8.GetString(text)}");
            }

            Assert.True(state.Complete);
        }
    }

    [Fact]
    public void AfterAOneByteMutationItCompletesExactlyWhenSystemTextJsonParsesAnObject()
    {
        var random = new Random(12);
        byte[] alphabet = [.. "{}[]\":,\\ \t\n-+.eE0123456789truefalsnu/bx\u0001"u8, 0x80, 0xBF, 0xC3, 0xE0, 0xED, 0xF0, 0xF4, 0xFF];
        int parsed = 0, refused = 0;
        for (int n = 0; n < 4000; n++)
        {
            var text = new List<byte>(Encoding.UTF8.GetBytes(RandomObject(random)));
            int at = random.Next(text.Count);
            switch (random.Next(3))
            {
                case 0:
                    text[at] = alphabet[random.Next(alphabet.Length)];
                    break;
                case 1:
                    text.RemoveAt(at);
                    break;
                default:
                    text.Insert(at, alphabet[random.Next(alphabet.Length)]);
                    break;
            }

            byte[] bytes = [.. text];
            bool ours = Refused(bytes, out bool complete) < 0 && complete;
            bool oracle = ParsesAsObject(bytes) && WithinLimits(bytes);
            Assert.True(ours == oracle, $"ours {ours}, System.Text.Json {oracle}: {Convert.ToHexString(bytes)} ({Encoding.UTF8.GetString(bytes)})");
            parsed += oracle ? 1 : 0;
            refused += oracle ? 0 : 1;
        }

        // Both outcomes occur often, so the comparison tells them apart.
        Assert.True(parsed > 500 && refused > 500, $"{parsed} parsed, {refused} refused");
    }

    [Theory]
    [InlineData("{}", -1)]
    [InlineData(" {}", 0)]
    [InlineData("[1]", 0)]
    [InlineData("{} ", 2)]
    [InlineData("{\"a\":01}", 6)]
    [InlineData("{\"a\":-}", 6)]
    [InlineData("{\"a\":1.}", 7)]
    [InlineData("{\"a\":1e}", 7)]
    [InlineData("{\"a\":1e+}", 8)]
    [InlineData("{\"a\":.5}", 5)]
    [InlineData("{\"a\":\"\\x\"}", 7)]
    [InlineData("{\"a\":\"\\u12G4\"}", 10)]
    [InlineData("{\"a\":\"\t\"}", 6)]
    [InlineData("{\"a\":tru}", 8)]
    [InlineData("{\"a\":[1,]}", 8)]
    [InlineData("{,}", 1)]
    [InlineData("{\"a\" 1}", 5)]
    [InlineData("{\"a\":1]", 6)]
    [InlineData("{\"a\":[1}", 7)]
    [InlineData("{a:1}", 1)]
    public void EdgeCasesFailAtTheByteThatBreaksThem(string text, int expected)
    {
        Assert.Equal(expected, Refused(Encoding.UTF8.GetBytes(text), out bool complete));
        Assert.Equal(expected < 0, complete);
    }

    [Theory]
    [InlineData(new byte[] { 0xC0, 0x80 }, 0)]          // overlong
    [InlineData(new byte[] { 0xE0, 0x80, 0x80 }, 1)]    // overlong
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 }, 1)]    // a UTF-16 surrogate
    [InlineData(new byte[] { 0xF4, 0x90, 0x80, 0x80 }, 1)]  // past U+10FFFF
    [InlineData(new byte[] { 0xC3, 0x28 }, 1)]          // a lead byte without its continuation
    [InlineData(new byte[] { 0xE2, 0x82, 0xAC }, -1)]   // €
    public void StringsHoldOnlyWellFormedUtf8(byte[] inside, int expected)
    {
        byte[] text = [.. "{\"a\":\""u8, .. inside, .. "\"}"u8];
        Assert.Equal(expected < 0 ? -1 : 6 + expected, Refused(text, out _));
    }

    [Fact]
    public void LimitsStopWhitespaceNumbersAndNestingFromRunningOn()
    {
        Assert.Equal(-1, Refused(Encoding.UTF8.GetBytes("{\n" + new string(' ', JsonWhitespace.MaxIndent) + "}"), out _));
        Assert.Equal(2 + JsonWhitespace.MaxIndent, Refused(Encoding.UTF8.GetBytes("{\n" + new string('\t', JsonWhitespace.MaxIndent + 1) + "}"), out _));
        // One space, or a line break and an indent: no more, and no other whitespace.
        Assert.Equal(2, Refused("{  }"u8, out _));
        Assert.Equal(2, Refused("{ \n}"u8, out _));
        Assert.Equal(2, Refused("{\n\n}"u8, out _));
        Assert.Equal(1, Refused("{\r\n}"u8, out _));
        Assert.Equal(1, Refused("{\t}"u8, out _));
        Assert.Equal(5 + JsonScalar.MaxNumberBytes, Refused(Encoding.UTF8.GetBytes("{\"a\":" + new string('1', JsonScalar.MaxNumberBytes + 1) + "}"), out _));
        string deep = "{\"a\":" + new string('[', JsonSchemaPrefix.MaxDepth - 1);
        Assert.Equal(-1, Refused(Encoding.UTF8.GetBytes(deep), out _));
        Assert.Equal(deep.Length, Refused(Encoding.UTF8.GetBytes(deep + "["), out _));
    }

    private static bool ParsesAsObject(byte[] text)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(text);
            // Reading every string and name makes System.Text.Json check their UTF-8 as well.
            Walk(document.RootElement);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException)
        {
            return false;
        }
    }

    private static void Walk(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (JsonProperty property in element.EnumerateObject())
                {
                    _ = property.Name;
                    Walk(property.Value);
                }

                break;
            case JsonValueKind.Array:
                foreach (JsonElement item in element.EnumerateArray())
                {
                    Walk(item);
                }

                break;
            case JsonValueKind.String:
                _ = element.GetString();
                break;
        }
    }

    /// <summary>
    /// The automaton's limits on text System.Text.Json would take: no whitespace first or last, and every run of it between
    /// tokens one space or a line break with at most <see cref="JsonWhitespace.MaxIndent"/> spaces or tabs after it.
    /// </summary>
    private static bool WithinLimits(byte[] text)
    {
        static bool Space(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r';
        if (text.Length == 0 || Space(text[0]) || Space(text[^1]))
        {
            return false;
        }

        var run = new List<byte>();
        bool inString = false, escaped = false;
        foreach (byte b in text.Append((byte)'x'))
        {
            if (inString)
            {
                (inString, escaped) = (escaped || b != '"', !escaped && b == '\\');
                continue;
            }

            if (Space(b))
            {
                run.Add(b);
                continue;
            }

            bool allowed = run.Count == 0 || (run.Count == 1 && run[0] == ' ')
                || (run[0] == '\n' && run.Count - 1 <= JsonWhitespace.MaxIndent && run.Skip(1).All(c => c is (byte)' ' or (byte)'\t'));
            if (!allowed)
            {
                return false;
            }

            run.Clear();
            inString = b == '"';
        }

        return true;
    }

    private static readonly string[] s_words = ["a", "key", "naïve", "€", "𝄞 clef", "日本", "", "quote\"d", "back\\slash", "tab\t", "\u0001", "line\nbreak", "/"];

    private static string RandomObject(Random random) => Value(random, 0, topLevel: true);

    private static string Value(Random random, int depth, bool topLevel = false)
    {
        int kind = topLevel ? 0 : random.Next(depth > 4 ? 2 : 7) + (depth > 4 ? 2 : 0);
        string Space() => random.Next(4) switch
        {
            0 => " ",
            1 => "\n" + new string(" \t"[random.Next(2)], random.Next(0, 5)),
            _ => "",
        };
        switch (kind)
        {
            case 0:
            {
                string[] members = [.. Enumerable.Range(0, random.Next(4)).Select(_ => $"{Space()}{Text(random)}{Space()}:{Space()}{Value(random, depth + 1)}{Space()}")];
                return "{" + string.Join(",", members) + (members.Length == 0 ? Space() : "") + "}";
            }

            case 1:
                return "[" + string.Join(",", Enumerable.Range(0, random.Next(4)).Select(_ => Space() + Value(random, depth + 1) + Space())) + "]";
            case 2:
                return Text(random);
            case 3:
                return random.Next(3) switch { 0 => "true", 1 => "false", _ => "null" };
            default:
                string number = (random.Next(2) == 0 ? "-" : "") + (random.Next(3) == 0 ? "0" : random.Next(1, 100000).ToString(System.Globalization.CultureInfo.InvariantCulture));
                number += random.Next(2) == 0 ? "." + random.Next(0, 1000).ToString(System.Globalization.CultureInfo.InvariantCulture) : "";
                number += random.Next(3) == 0 ? "eE"[random.Next(2)] + (random.Next(3) switch { 0 => "+", 1 => "-", _ => "" }) + random.Next(0, 40).ToString(System.Globalization.CultureInfo.InvariantCulture) : "";
                return number;
        }
    }

    /// <summary>A JSON string of random words: quotes, backslashes and control characters escaped, other characters raw or (BMP) as \u escapes at random.</summary>
    private static string Text(Random random)
    {
        string raw = string.Concat(Enumerable.Range(0, random.Next(3)).Select(_ => s_words[random.Next(s_words.Length)]));
        var text = new StringBuilder("\"");
        foreach (char c in raw)
        {
            text.Append(c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                < ' ' => $"\\u{(int)c:X4}",
                _ when !char.IsSurrogate(c) && random.Next(4) == 0 => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        return text.Append('"').ToString();
    }
}
