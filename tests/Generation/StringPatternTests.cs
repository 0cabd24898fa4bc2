using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using QwenSharp.Sampling;
using Validator = Json.Schema.JsonSchema;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// <c>pattern</c> and <c>format</c> in <see cref="JsonSchemaPrefix"/>: random walks over every byte the automaton allows
/// end in strings that .NET's own regular expressions match (through JsonSchema.Net) and that .NET's parsers read as
/// dates, times and GUIDs; hand-written strings are refused at the byte that breaks the pattern; what the pattern reader
/// does not take is refused by name.
/// </summary>
public class StringPatternTests
{
    [Fact]
    public void PatternedStringsMatchTheirPatterns()
    {
        const string schemaText = """
            {"type": "object", "required": ["span", "word", "anywhere", "either", "escaped", "count"], "properties": {
              "span": {"type": "string", "pattern": "^-?(\\d+\\.)?\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,7})?$"},
              "word": {"type": "string", "pattern": "^[a-z]+$"},
              "anywhere": {"type": "string", "pattern": "0|é{2}"},
              "either": {"type": "string", "pattern": "^(?:ab|[^\\x00-\\x7F]\\u00e9|\\n|[\\w.-]{3,}@[A-Z]?)$"},
              "escaped": {"type": "string", "pattern": "^\\\\\\[[\\]]\\.\\*\\{1\\}$"},
              "count": {"type": ["string", "null"], "pattern": "^(0|[1-9][0-9]{0,2})( items?)?$"}}}
            """;
        Validator validator = Validator.FromText(schemaText);

        List<string> answers = SchemaWalks.Finished(schemaText, 300, 3);

        Assert.True(answers.Count > 200, $"only {answers.Count} of 300 walks finished");
        foreach (string answer in answers)
        {
            using JsonDocument parsed = JsonDocument.Parse(answer);
            Assert.True(validator.Evaluate(parsed.RootElement).IsValid, $"the validator refuses {answer}");
        }
    }

    [Fact]
    public void FormattedStringsAreWhatDotNetReads()
    {
        const string schemaText = """
            {"type": "object", "required": ["day", "clock", "when", "id"], "properties": {
              "day": {"type": "string", "format": "date"}, "clock": {"type": "string", "format": "time"},
              "when": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"}, "mail": {"type": "string", "format": "email"}}}
            """;

        List<string> answers = SchemaWalks.Finished(schemaText, 400, 7);

        Assert.True(answers.Count > 300, $"only {answers.Count} of 400 walks finished");
        foreach (string answer in answers)
        {
            using JsonDocument parsed = JsonDocument.Parse(answer);
            JsonElement root = parsed.RootElement;
            string day = root.GetProperty("day").GetString()!;
            Assert.True(DateOnly.TryParseExact(day, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out _), day);
            Assert.True(TimeOnly.TryParseExact(root.GetProperty("clock").GetString(), ["HH:mm:ss", "HH:mm:ss.FFFFFFF"], CultureInfo.InvariantCulture, DateTimeStyles.None, out _),
                root.GetProperty("clock").GetString());
            Assert.True(DateTime.TryParse(root.GetProperty("when").GetString(), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out _), root.GetProperty("when").GetString());
            Assert.True(Guid.TryParseExact(root.GetProperty("id").GetString(), "D", out _), root.GetProperty("id").GetString());
        }

    }

    [Theory]
    [InlineData("2024-02-29", true)]     // a leap year
    [InlineData("2000-02-29", true)]     // so is a 400th
    [InlineData("1900-02-29", false)]    // not a 100th
    [InlineData("2023-02-29", false)]
    [InlineData("2023-04-31", false)]
    [InlineData("2023-12-31", true)]
    [InlineData("0000-01-01", false)]    // years begin at 1
    [InlineData("2023-1-01", false)]
    public void DatesAreTheCalendarsDates(string date, bool taken)
    {
        int refused = SchemaWalks.RefusedAt("""{"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}""", $"{{\"d\":\"{date}\"}}", out bool complete);

        Assert.Equal(taken, refused < 0 && complete);
        Assert.Equal(taken, DateOnly.TryParseExact(date, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out _));
    }

    // The string up to the byte refused, then that byte and the rest; a whole string has no "|".
    [Theory]
    [InlineData("^[a-z]+$", "abc")]
    [InlineData("^[a-z]+$", "ab|C")]
    [InlineData("^[a-z]+$", "|\"")]                        // + wants one at least
    [InlineData("^a\\d{2}$", "a1|\"")]
    [InlineData("^a\\d{2}$", "a12|3")]
    [InlineData("^[^a]$", "é")]
    [InlineData("^[^a]$", "\\u00e9")]                      // an escape is the character it writes
    [InlineData("^[^a]$", "\\u006|1")]                     // \u0061 is 'a': refused at the digit that makes it
    [InlineData("^é$", "\\|n")]                            // (\u00e9 could follow the backslash)
    [InlineData("^\\n$", "\\n")]
    [InlineData("^[a-z]$", "|\u00e9")]                    // a lead byte no character of the class begins
    [InlineData("^[^\\u0000-\\u007f]$", "\\ud|83d\\ude00")]   // a held string's escapes write no surrogates (write the character)
    [InlineData("^[^\\u0000-\\u007f]{2}$", "😀")]         // a character past U+FFFF is two code units, as ECMAScript sees it
    [InlineData("^(b|a[^\\s\\S])$", "|a")]                 // an empty class: nothing after the a could match
    [InlineData("b", "aab")]                               // found anywhere
    [InlineData("^b", "|ab")]
    public void PatternsAreKeptByteByByte(string pattern, string marked)
    {
        int mark = marked.IndexOf('|', StringComparison.Ordinal);
        string inner = marked.Replace("|", "", StringComparison.Ordinal);
        string schemaText = JsonSerializer.Serialize(new { type = "object", properties = new { s = new { type = "string", pattern } } });
        string answer = $"{{\"s\":\"{inner}\"}}";

        int refused = SchemaWalks.RefusedAt(schemaText, answer, out bool complete);

        Assert.Equal(mark < 0 ? -1 : 6 + Encoding.UTF8.GetByteCount(inner[..mark]), refused);
        if (mark < 0)
        {
            Assert.True(complete);
            string text = JsonDocument.Parse(answer).RootElement.GetProperty("s").GetString()!;
            Assert.Matches(new Regex(pattern, RegexOptions.ECMAScript), text);
        }
    }

    [Theory]
    [InlineData("(?=a)", "lookarounds are not supported (at character 1")]
    [InlineData("a\\1", "'\\1' is not supported (at character 2")]
    [InlineData("\\bword", "'\\b' is not supported")]
    [InlineData("a^b", "'^' is supported only at the pattern's start")]
    [InlineData("^a|b$", "put the alternatives in a group")]
    [InlineData("(ab", "a '(' without its ')'")]
    [InlineData("[ab", "a '[' without its ']'")]
    [InlineData("ab)", "a ')' without its '('")]
    [InlineData("a{3,2}", "the least is more than the most")]
    [InlineData("a{2000}", "a repeat of more than 1000")]
    [InlineData("(a{1000}){1000}", "the pattern is too large")]
    [InlineData("[z-a]", "a range whose end comes before its start")]
    [InlineData("*a", "'*' repeats nothing")]
    [InlineData("^[^\\s\\S]", "the pattern matches no string")]
    public void UnsupportedPatternsAreRefusedByPath(string pattern, string message)
    {
        string schemaText = JsonSerializer.Serialize(new { type = "object", properties = new { s = new { type = "string", pattern } } });
        using JsonDocument schema = JsonDocument.Parse(schemaText);

        ArgumentException error = Assert.Throws<ArgumentException>(() => Sampling.JsonSchema.Compile(schema.RootElement));

        Assert.StartsWith("schema.properties.s.pattern: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The formats OpenAI's structured outputs hold beyond dates, times and uuids: every walk's answer passes JsonSchema.Net
    /// with its format checks on, and .NET's own readers (IPAddress, Uri.CheckHostName, MailAddress) where they apply. (A
    /// length beside the names keeps the walks short: a random host name of 253 characters, escapes and all, is long.)
    /// </summary>
    [Fact]
    public void NetworkFormatsAndDurationsAreWhatValidatorsRead()
    {
        const string schemaText = """
            {"type": "object", "required": ["v4", "v6", "host", "mail", "span"], "properties": {
              "v4": {"type": "string", "format": "ipv4"}, "v6": {"type": "string", "format": "ipv6"}, "host": {"type": "string", "format": "hostname", "maxLength": 30},
              "mail": {"type": "string", "format": "email", "maxLength": 30}, "span": {"type": "string", "format": "duration"}}}
            """;
        Validator validator = Validator.FromText(schemaText);
        var checkFormats = new Json.Schema.EvaluationOptions { RequireFormatValidation = true };

        List<string> answers = SchemaWalks.Finished(schemaText, 150, 11);

        Assert.True(answers.Count > 90, $"only {answers.Count} of 150 walks finished");
        foreach (string answer in answers)
        {
            using JsonDocument parsed = JsonDocument.Parse(answer);
            JsonElement root = parsed.RootElement;
            Assert.True(validator.Evaluate(root, checkFormats).IsValid, $"the validator refuses {answer}");
            string v4 = root.GetProperty("v4").GetString()!, v6 = root.GetProperty("v6").GetString()!;
            Assert.True(System.Net.IPAddress.TryParse(v4, out System.Net.IPAddress? address4) && address4.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
                && address4.ToString() == v4, v4);
            Assert.True(System.Net.IPAddress.TryParse(v6, out System.Net.IPAddress? address6) && address6.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6, v6);
            string host = root.GetProperty("host").GetString()!;
            Assert.True(Uri.CheckHostName(host) is UriHostNameType.Dns or UriHostNameType.IPv4 && host.Length <= 253, host);
            string mail = root.GetProperty("mail").GetString()!;
            Assert.True(System.Net.Mail.MailAddress.TryCreate(mail, out System.Net.Mail.MailAddress? parsedMail) && parsedMail.Address == mail, mail);
        }
    }

    // A string of the format, whole; or refused at the "|".
    [Theory]
    [InlineData("ipv4", "192.168.0.1")]
    [InlineData("ipv4", "192.168.0|1.1")]
    [InlineData("ipv4", "25|6")]
    [InlineData("ipv6", "::1")]
    [InlineData("ipv6", "fe80::1:2:3:4:5")]
    [InlineData("ipv6", "::ffff:10.0.0.1")]
    [InlineData("ipv6", "1:2:3:4:5:6:7:8")]
    [InlineData("ipv6", "1:2:3:4:5:6:7:8|:")]
    [InlineData("ipv6", "1::2:|:3")]
    [InlineData("hostname", "a-b.example.com")]
    [InlineData("hostname", "a-|.b")]
    [InlineData("email", "jo.o+x@mail.example")]
    [InlineData("email", "jo.|.o@x")]
    [InlineData("email", "|@x")]
    [InlineData("duration", "P1Y2M3DT4H5M6S")]
    [InlineData("duration", "P3W")]
    [InlineData("duration", "PT|\"")]
    [InlineData("duration", "P1D|2Y")]
    public void NetworkFormatsAndDurationsAreHeldByteByByte(string format, string marked)
    {
        string schemaText = $$$"""{"type": "object", "properties": {"s": {"type": "string", "format": "{{{format}}}"}}, "required": ["s"]}""";
        int mark = marked.IndexOf('|', StringComparison.Ordinal);
        string answer = "{\"s\": \"" + marked.Replace("|", "", StringComparison.Ordinal) + (mark < 0 ? "\"}" : "");

        int refused = SchemaWalks.RefusedAt(schemaText, answer, out bool complete);

        Assert.Equal(mark < 0 ? -1 : "{\"s\": \"".Length + mark, refused);
        Assert.Equal(mark < 0, complete);
    }

    [Fact]
    public void AHostnameIsHeldToItsLength()
    {
        // 253 characters at most: labels of 63 and one of 61, then not one more.
        string label = new('a', 63);
        string longest = string.Join('.', label, label, label, new string('a', 61));
        const string SchemaText = """{"type": "object", "properties": {"s": {"type": "string", "format": "hostname"}}, "required": ["s"]}""";

        Assert.Equal(-1, SchemaWalks.RefusedAt(SchemaText, "{\"s\": \"" + longest + "\"}", out bool complete));
        Assert.True(complete);
        Assert.Equal(7 + longest.Length, SchemaWalks.RefusedAt(SchemaText, "{\"s\": \"" + longest + "a", out _));
    }

    [Fact]
    public void Base64StringsAreWhatDotNetDecodes()
    {
        // .NET's [Base64String] writes contentEncoding; contentMediaType and OpenAPI's x- extensions only annotate.
        const string schemaText = """
            {"type": "object", "required": ["data", "note"], "x-generator": "test", "properties": {
              "data": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png", "maxLength": 24},
              "note": {"type": "string", "x-order": 2, "maxLength": 3}}}
            """;

        List<string> answers = SchemaWalks.Finished(schemaText, 200, 13);

        Assert.True(answers.Count > 150, $"only {answers.Count} of 200 walks finished");
        foreach (string answer in answers)
        {
            string data = JsonDocument.Parse(answer).RootElement.GetProperty("data").GetString()!;
            Assert.True(data.Length % 4 == 0 && Convert.TryFromBase64String(data, new byte[data.Length], out _), data);
        }

        Assert.Equal("{\"data\":\"QQ=".Length, SchemaWalks.RefusedAt(schemaText, "{\"data\":\"QQ=A", out _));   // after one '=' only another
    }

    [Fact]
    public void PatternsAndLengthsHoldTogether()
    {
        // .NET's [RegularExpression] beside [StringLength] writes both. Some of these can lead a string where the length
        // then cannot follow: "trap" may not start with an a (five at most, eight wanted), "tail" must end after two a's.
        const string schemaText = """
            {"type": "object", "required": ["code", "trap", "pairs", "tail", "loose", "day"], "properties": {
              "code": {"type": "string", "pattern": "^[A-Z]+$", "minLength": 3, "maxLength": 5},
              "trap": {"type": "string", "pattern": "^(a{0,5}|b+)$", "minLength": 8, "maxLength": 12},
              "pairs": {"type": "string", "pattern": "^(ab)+$", "maxLength": 5},
              "tail": {"type": "string", "pattern": "^a+b$", "maxLength": 3},
              "loose": {"type": "string", "pattern": "x", "minLength": 4, "maxLength": 6},
              "day": {"type": "string", "format": "date", "maxLength": 10}}}
            """;
        Validator validator = Validator.FromText(schemaText);

        List<string> answers = SchemaWalks.Finished(schemaText, 300, 5);

        Assert.True(answers.Count > 200, $"only {answers.Count} of 300 walks finished");
        foreach (string answer in answers)
        {
            using JsonDocument parsed = JsonDocument.Parse(answer);
            Assert.True(validator.Evaluate(parsed.RootElement).IsValid, $"the validator refuses {answer}");
        }
    }

    /// <summary>
    /// Every string of a, b and x up to one past the most, fed to the automaton: it takes a whole string exactly when .NET's
    /// regular expression matches it and its length is inside the limits, and each prefix it takes is the start of some
    /// string it would take whole (a, b and x stand for every character here: x for all the patterns do not name).
    /// </summary>
    [Theory]
    [InlineData("^(a{0,3}|b+)$", 4, 6)]
    [InlineData("^(ab)+$", 0, 5)]
    [InlineData("^a+b$", 0, 3)]
    [InlineData("b", 5, 6)]
    [InlineData("^[ab]*x$", 2, 4)]
    [InlineData("^(a|bb)+$", 3, 3)]
    [InlineData("^(a|bb)+$", 0, 4)]
    [InlineData("(aa|b)x?$", 1, int.MaxValue)]
    public void ExactlyTheStringsInsideTheLengthThatMatchAreTaken(string pattern, int least, int most)
    {
        using JsonDocument schema = JsonDocument.Parse(JsonSerializer.Serialize(new
        {
            type = "object", required = new[] { "s" },
            properties = new { s = new Dictionary<string, object> { ["type"] = "string", ["pattern"] = pattern, ["minLength"] = least, ["maxLength"] = Math.Min(most, 1000) } },
        }));
        var compiled = Sampling.JsonSchema.Compile(schema.RootElement);
        var regex = new Regex(pattern, RegexOptions.CultureInvariant);
        int longest = Math.Min(most, 6) + 1;
        var strings = new List<string> { "" };
        for (int i = 0; i < strings.Count; i++)
        {
            if (strings[i].Length < longest)
            {
                strings.AddRange(new[] { "a", "b", "x" }.Select(c => strings[i] + c));
            }
        }

        var valid = strings.Where(t => regex.IsMatch(t) && t.Length >= least && t.Length <= most).ToHashSet();
        foreach (string text in strings)
        {
            JsonSchemaPrefix state = JsonSchemaPrefix.Start(compiled);
            bool taken = "{\"s\":\"".All(c => state.Feed((byte)c)) && text.All(c => state.Feed((byte)c));
            bool whole = taken && state.Feed((byte)'"') && state.Feed((byte)'}') && state.Complete;
            Assert.True(whole == valid.Contains(text), $"'{text}' {(whole ? "taken" : "refused")} whole");
            if (taken && text.Length < longest - 1)
            {
                Assert.True(valid.Any(v => v.StartsWith(text, StringComparison.Ordinal)), $"'{text}' taken, but no string it begins is");
            }
        }
    }

    [Theory]
    [InlineData("""{"type": "string", "pattern": "^ab?$", "minLength": 3}""", "schema.properties.s.pattern: no string of 3 or more characters matches it")]
    [InlineData("""{"type": "string", "format": "uuid", "maxLength": 35}""", "schema.properties.s.format: no string of 0 to 35 characters matches it")]
    [InlineData("""{"type": "string", "pattern": "^\\ud83d\\ude00$", "maxLength": 1}""", "schema.properties.s.pattern: no string of 0 to 1 characters matches it")]
    public void APatternNoStringInsideTheLengthMatchesIsRefused(string property, string message)
    {
        using JsonDocument schema = JsonDocument.Parse($$$"""{"type": "object", "properties": {"s": {{{property}}}}}""");

        ArgumentException error = Assert.Throws<ArgumentException>(() => Sampling.JsonSchema.Compile(schema.RootElement));

        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// ECMAScript's class escapes, written here from its specification (Unicode's categories from .NET): \d is 0-9, \w is
    /// [A-Za-z0-9_], \s is WhiteSpace (TAB, VT, FF, U+FEFF and the space separators) and LineTerminator (LF, CR, U+2028,
    /// U+2029).
    /// </summary>
    private static bool EcmaScriptMatches(char escape, char c)
    {
        bool digit = char.IsAsciiDigit(c), word = char.IsAsciiLetterOrDigit(c) || c == '_';
        bool space = c is '\t' or '\v' or '\f' or '\uFEFF' or '\n' or '\r' or '\u2028' or '\u2029'
            || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.SpaceSeparator;
        return escape switch
        {
            'd' => digit,
            'D' => !digit,
            'w' => word,
            'W' => !word,
            's' => space,
            _ => !space,
        };
    }

    [Theory]
    [InlineData("^\\{0}$")]
    [InlineData("^[\\{0}]$")]
    [InlineData("^[^\\{0}]$")]
    [InlineData("^[x\\{0}]$")]
    public void ClassEscapesKeepToWhatBothEcmaScriptAndDotNetMatch(string shape)
    {
        int kept = 0;
        foreach (char escape in "dDwWsS")
        {
            string pattern = string.Format(CultureInfo.InvariantCulture, shape, escape);
            bool negated = shape.Contains("[^", StringComparison.Ordinal);
            StringPattern held = StringPattern.Parse(pattern);
            var dotNet = new Regex(pattern);
            for (int c = 0; c <= 0xFFFF; c++)
            {
                if (char.IsSurrogate((char)c))
                {
                    continue;
                }

                if (held.Step(held.Begin, c) is { Matches: true })
                {
                    // A character the held pattern takes: both engines match it.
                    string text = ((char)c).ToString();
                    Assert.True(dotNet.IsMatch(text), $"{pattern} takes U+{c:X4}, which .NET's Regex does not match");
                    bool ecma = EcmaScriptMatches(escape, (char)c) != negated || (shape.Contains('x', StringComparison.Ordinal) && c == 'x');
                    Assert.True(ecma, $"{pattern} takes U+{c:X4}, which ECMAScript does not match");
                    kept++;
                }
            }
        }

        // And not by taking nothing: ASCII letters, digits and spaces each fall in one escape or its negation.
        Assert.True(kept > 1000, $"{kept} kept");
    }

    [Theory]
    [InlineData("^\\D$", "\u0663")]    // ARABIC-INDIC DIGIT THREE: a digit to .NET
    [InlineData("^\\W$", "é")]          // a word character to .NET
    [InlineData("^\\S$", "\u0085")]     // NEXT LINE: a space to .NET
    [InlineData("^\\S$", "\uFEFF")]     // ZERO WIDTH NO-BREAK SPACE: a space to ECMAScript
    [InlineData("^[^\\s]$", "\u0085")]
    [InlineData("^\\d$", "\u0663")]     // not a digit to ECMAScript
    [InlineData("^\\s$", "\u0085")]
    public void ACharacterTheEnginesDisagreeOnIsRefused(string pattern, string character)
    {
        StringPattern held = StringPattern.Parse(pattern);

        Assert.Null(held.Step(held.Begin, character[0]));
    }

    [Fact]
    public void SpacesBothEnginesAgreeOnAreTaken()
    {
        StringPattern held = StringPattern.Parse("^\\s$");

        foreach (char space in " \t\u00A0\u2028\u3000")
        {
            Assert.True(held.Step(held.Begin, space) is { Matches: true }, $"U+{(int)space:X4}");
        }
    }
}

