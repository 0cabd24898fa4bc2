using System.Text.Json;
using System.Text.RegularExpressions;
using QwenSharp.Errors;
using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// <see cref="GbnfGrammar"/> and <see cref="GrammarPrefix"/> (llama.cpp's GBNF): random walks over every byte a grammar
/// allows end in text that .NET's regular expressions for the same language match whole; JSON that System.Text.Json
/// writes passes a JSON grammar, malformed JSON is refused at the byte that leaves it; grammars that cannot be read are
/// refused saying what and where. (llama.cpp itself, on token ids, is in the Engine's GrammarOracleTests.)
/// </summary>
public class GbnfGrammarTests
{
    /// <summary>A JSON grammar written from RFC 8259 (whitespace after every value and punctuation, where JSON allows it).</summary>
    private const string Json = """
        # JSON, RFC 8259
        root   ::= ws value
        value  ::= ( object | array | string | number | "true" | "false" | "null" ) ws
        object ::= "{" ws ( member ( "," ws member )* )? "}"
        member ::= string ws ":" ws value
        array  ::= "[" ws ( value ( "," ws value )* )? "]"
        string ::= "\"" ( [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
        number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
        ws     ::= [ \t\n\r]*
        """;

    [Theory]
    [InlineData("root ::= (\"yes\" | \"no\") \".\"", @"(yes|no)\.")]
    [InlineData("root ::= [0-9]{3} \"-\" [A-Z]{2,4}", @"[0-9]{3}-[A-Z]{2,4}")]
    [InlineData("root ::= word (\" \" word)*\nword ::= [a-z]+", @"[a-z]+( [a-z]+)*")]
    [InlineData("root ::= (\"é\" | \"😀\" | \"\\n\"){1,3} \"x\"?", "(é|😀|\n){1,3}x?")]
    [InlineData("root ::= \"ab\"+ [^\\x00-\\x7F]?  # a comment\n\n", @"(ab)+(?:[\u0080-\uD7FF\uE000-\uFFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])?")]
    [InlineData("root ::= (\n  \"[\" item{0,2} \"]\"\n) | \"-\"\nitem ::= [\\x41-\\x43\\-] |\n  \"\\u00e9\"", @"\[([A-C\-]|é){0,2}\]|-")]
    public void EveryWalkEndsInTextTheSameRegexMatchesWhole(string gbnf, string regex)
    {
        List<string> answers = AutomatonWalks.Walks(GrammarPrefix.Start(GbnfGrammar.Parse(gbnf)), 200, gbnf.Length);

        Assert.Equal(200, answers.Count);
        Assert.All(answers, a => Assert.Matches(new Regex($"^(?:{regex})\\z"), a));
    }

    [Theory]
    [InlineData("root ::= [0-9]{3} \"-\" [A-Z]{2,4}", "123-AB", -1)]
    [InlineData("root ::= [0-9]{3} \"-\" [A-Z]{2,4}", "123-ABCDE", 8)]
    [InlineData("root ::= [0-9]{3} \"-\" [A-Z]{2,4}", "12-", 2)]
    [InlineData("root ::= \"é\"+", "ééé", -1)]
    [InlineData("root ::= \"é\"+", "éa", 2)]
    [InlineData("root ::= \"é\"+", "è", 1)]           // C3 A8: the lead byte is é's, the second is not
    [InlineData("root ::= [^a]", "😀", -1)]
    [InlineData("root ::= \"a\"", "😀", 0)]
    [InlineData("root ::= \"(\" root \")\" root |", "(()(()))()", -1)]
    [InlineData("root ::= \"(\" root \")\" root |", "(()))", 4)]
    public void TextIsRefusedWhereItLeavesTheGrammar(string gbnf, string text, int refusedAt)
    {
        (int at, bool canEnd) = AutomatonWalks.Feed(GrammarPrefix.Start(GbnfGrammar.Parse(gbnf)), text);

        Assert.Equal(refusedAt, at);
        Assert.Equal(refusedAt < 0, canEnd);
    }

    [Fact]
    public void JsonThatSystemTextJsonWritesPassesAJsonGrammar()
    {
        var value = new
        {
            name = "Zoë \"quoted\" \\ / \n\t\u0001 😀",
            count = -12,
            ratio = 1.5e-7,
            big = 12345678901234567890.0,
            ok = true,
            none = (string?)null,
            items = new object[] { 1, "two", new { three = 3 }, Array.Empty<int>(), new { } },
        };
        GrammarPrefix start = GrammarPrefix.Start(GbnfGrammar.Parse(Json));

        foreach (string text in (string[])[JsonSerializer.Serialize(value), JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true }), "  [ ]\n", "0", "\"\""])
        {
            Assert.Equal((-1, true), AutomatonWalks.Feed(start, text));
        }
    }

    [Theory]
    [InlineData("{\"a\":}", 5)]
    [InlineData("[1,]", 3)]
    [InlineData("01", 1)]
    [InlineData("{\"a\" 1}", 5)]
    [InlineData("\"tab\there\"", 4)]
    [InlineData("\"\\x\"", 2)]
    [InlineData("[1] 2", 4)]
    [InlineData("tru", -1)]
    public void MalformedJsonIsRefusedWhereItGoesWrong(string text, int refusedAt)
    {
        (int at, bool canEnd) = AutomatonWalks.Feed(GrammarPrefix.Start(GbnfGrammar.Parse(Json)), text);

        Assert.Equal(refusedAt, at);
        Assert.False(canEnd);
    }

    [Fact]
    public void AGrammarWithNothingMoreToComeIsComplete()
    {
        var state = GrammarPrefix.Start(GbnfGrammar.Parse("root ::= \"yes\" \"sss\"?"));

        Assert.All("yes"u8.ToArray(), b => Assert.True(state.Feed(b)));
        Assert.True(state.CanEnd);
        Assert.False(state.Complete);
        Assert.All("sss"u8.ToArray(), b => Assert.True(state.Feed(b)));
        Assert.True(state.Complete);
    }

    [Fact]
    public void AnotherRootRuleCanBeNamed()
    {
        var grammar = GbnfGrammar.Parse("root ::= \"a\"\nanswer ::= \"b\" root", root: "answer");

        Assert.Equal((-1, true), AutomatonWalks.Feed(GrammarPrefix.Start(grammar), "ba"));
        Assert.Equal((0, false), AutomatonWalks.Feed(GrammarPrefix.Start(grammar), "a"));
    }

    [Theory]
    [InlineData("", "the grammar has no rules")]
    [InlineData("  # only a comment\n", "the grammar has no rules")]
    [InlineData("root ::= foo", "line 1, column 10: rule 'foo' is used but never defined")]
    [InlineData("root = \"a\"", "line 1, column 6: expected '::=' after the rule name 'root'")]
    [InlineData("start ::= \"a\"", "the grammar has no rule 'root', where the answer starts")]
    [InlineData("root ::= \"abc", "line 1, column 10: this string is never closed")]
    [InlineData("root ::= \"\\q\"", "line 1, column 11: unknown escape '\\q'")]
    [InlineData("root ::= \"\\x4\"", "'\\x' takes 2 hex digits")]
    [InlineData("root ::= \"\\UFFFFFFFF\"", "is not a Unicode character")]
    [InlineData("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]", "rule 'expr' is left-recursive")]
    [InlineData("root ::= x\nx ::= y? (\"a\" | x) \"b\"\ny ::= \"c\"", "rule 'x' is left-recursive")]
    [InlineData("root ::= [z-a]", "line 1, column 11: the range z-a runs backwards")]
    [InlineData("root ::= []", "line 1, column 10: an empty character class matches nothing")]
    [InlineData("root ::= [^\\x00-\\U0010FFFF]", "leaves no character")]
    [InlineData("root ::= [abc", "this character class is never closed")]
    [InlineData("root ::= \"a\"{3,1}", "asks for at most fewer than at least")]
    [InlineData("root ::= \"a\"{2", "expected '}'")]
    [InlineData("root ::= \"a\"{20000}", "line 1, column 14: a repetition count of 20000 is more than the 10000 taken")]
    [InlineData("root ::= <think> \"a\"", "line 1, column 10: the token reference <think> needs the model's vocabulary")]
    [InlineData("root ::= !<[12]>", "line 1, column 10: the token reference <[12]> needs the model's vocabulary")]
    [InlineData("root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice (first at line 1, column 1)")]
    [InlineData("root ::= * \"a\"", "line 1, column 10: '*' repeats nothing")]
    [InlineData("root ::= (\"a\" | \"b\"", "expected ')' to close the group opened at line 1, column 10")]
    [InlineData("root ::= \"a\" )", "line 1, column 14: unexpected ')' in rule 'root'")]
    [InlineData("root ::= \"a\"\n  \"b\"", "line 2, column 3: expected a rule name, found '\"'")]
    public void BadGrammarsAreRefusedSayingWhatAndWhere(string gbnf, string message)
    {
        var error = Assert.ThrowsAny<ArgumentException>(() => GbnfGrammar.Parse(gbnf));

        Assert.Contains(message, error.BareMessage(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("root ::= <think> \"a\"", "line 1, column 10: <think> is not one token of this model's vocabulary: write its text as a string, \"<think>\"")]
    [InlineData("root ::= \"a\" <[1000]>", "line 1, column 14: token 1000 is past this model's vocabulary of 1000 tokens")]
    [InlineData("root ::= <[12a]>", "line 1, column 10: <[12a]> is not a token id")]
    [InlineData("root ::= <[-1]>", "<[-1]> is not a token id")]
    [InlineData("root ::= <[12]", "line 1, column 10: this token reference is never closed")]
    [InlineData("root ::= <[12\n]>", "this token reference is never closed")]
    [InlineData("root ::= \"a\" <>", "line 1, column 14: <> names no token")]
    public void BadTokenReferencesAreRefusedSayingWhatAndWhere(string gbnf, string message)
    {
        // A vocabulary of 1000 ids, where only "<|end|>" is one token of its own.
        var error = Assert.ThrowsAny<ArgumentException>(() => GbnfGrammar.Parse(gbnf, tokenOf: text => text == "<|end|>" ? 7 : null, vocabularySize: 1000));

        Assert.Contains(message, error.BareMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void TokenReferencesStepTheGrammarByWholeTokens()
    {
        // "a", then token 7 by its text, then any tokens but 9 (at least one), then token 9 by id: only whole tokens step
        // a reference, and characters do not.
        GbnfGrammar grammar = GbnfGrammar.Parse("root ::= \"a\" <|end|> (!<[9]>)+ <[9]>", tokenOf: text => text == "<|end|>" ? 7 : null, vocabularySize: 1000);
        GrammarPrefix start = GrammarPrefix.Start(grammar);

        Assert.True(grammar.HasTokens);
        Assert.False(start.TakesTokens);
        Assert.True(start.Feed((byte)'a'));
        GrammarStacks afterA = start.Stacks!;
        Assert.True(start.TakesTokens);
        Assert.Equal([7], grammar.TokenTops(afterA).Only);
        Assert.Empty(grammar.TokenTops(afterA).AllBut);
        Assert.False(start.Feed((byte)'<'));
        Assert.Null(grammar.StepToken(afterA, 8));

        GrammarStacks afterEnd = grammar.StepToken(afterA, 7)!;
        Assert.Empty(grammar.TokenTops(afterEnd).Only);
        Assert.Equal([9], grammar.TokenTops(afterEnd).AllBut);
        Assert.Null(grammar.StepToken(afterEnd, 9));
        GrammarStacks once = grammar.StepToken(afterEnd, 500)!;
        Assert.False(once.CanEnd);
        Assert.Equal([9], grammar.TokenTops(once).Only);
        Assert.Equal([9], grammar.TokenTops(once).AllBut);
        GrammarStacks whole = grammar.StepToken(once, 9)!;
        Assert.True(whole.Complete);
        Assert.False(GrammarPrefix.Start(GbnfGrammar.Parse("root ::= \"a\"")).TakesTokens);
        Assert.False(GbnfGrammar.Parse("root ::= \"a\"").HasTokens);
    }

    /// <summary>Grammars as a server may be sent them: groups nested past the parser's depth are refused; long chains of rules read in linear time, off the thread's stack.</summary>
    [Fact]
    public void DeepOrLongGrammarsAreRefusedOrReadWithoutTheThreadsStack()
    {
        string deep = "root ::= " + new string('(', 100_000) + "\"a\"" + new string(')', 100_000);
        const int Rules = 50_000;
        // Defined last to first, with an empty alternative each ("": a '|' at the end of a line would go on to the next).
        string chain = "root ::= r0 \"!\"\n" + string.Join("\n", Enumerable.Range(0, Rules).Reverse().Select(i => i == Rules - 1 ? $"r{i} ::= \"x\" | \"\"" : $"r{i} ::= r{i + 1} | \"\""));
        string loop = chain.Replace($"r{Rules - 1} ::= \"x\" | \"\"", $"r{Rules - 1} ::= r0 \"x\"", StringComparison.Ordinal);

        var error = Assert.Throws<ArgumentException>(() => GbnfGrammar.Parse(deep));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var grammar = GbnfGrammar.Parse(chain);
        var looped = Assert.Throws<ArgumentException>(() => GbnfGrammar.Parse(loop));

        Assert.Contains($"line 1, column {10 + GbnfParser.MaxNesting}: groups nest deeper than {GbnfParser.MaxNesting}", error.BareMessage(), StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"{watch.Elapsed}");
        Assert.Equal((-1, true), AutomatonWalks.Feed(GrammarPrefix.Start(grammar), "x!"));
        Assert.Equal((-1, true), AutomatonWalks.Feed(GrammarPrefix.Start(grammar), "!"));
        Assert.Contains("left-recursive", looped.BareMessage(), StringComparison.Ordinal);
    }

    [Fact]
    public void ARootOfAnotherNameThatIsMissingIsNamed()
    {
        var error = Assert.Throws<ArgumentException>(() => GbnfGrammar.Parse("root ::= \"a\"", root: "answer"));

        Assert.Contains("no rule 'answer'", error.BareMessage(), StringComparison.Ordinal);
    }
}
