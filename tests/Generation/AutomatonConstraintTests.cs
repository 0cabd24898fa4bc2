using System.Text;
using System.Text.Json;
using QwenSharp.Sampling;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// <see cref="AutomatonConstraint{TState}"/> over <see cref="JsonSchema.AnyObject"/> through <see cref="TokenSampler"/> on a made-up vocabulary whose random logits
/// favour no structure: every text ended by an end token is an object System.Text.Json parses, no end token comes
/// before the object closes, and then only end tokens come.
/// </summary>
public class AutomatonConstraintTests
{
    private static JsonSchemaPrefix AnyObject => JsonSchemaPrefix.Start(JsonSchema.AnyObject);

    private static readonly string?[] s_pieces =
    [
        null, "{", "}", "[", "]", "\"", "a", "\":", ",", " ", "\n\n", "1", "0", "-", ".", "e", "true", "nul", "l", "\\", "n", "u00e9",
        "é", "\u00c3", null, "{\"k\": ", "\"}", "x}", "]}", ":", "😀", "u", null, "bcd\"", "false",
    ];

    /// <summary>
    /// Tokens 0 and 32 are end tokens (no bytes); 23 and 24 are one UTF-8 character's two halves. Every state of an
    /// unfinished object has a token that continues it (as a byte-level vocabulary's single bytes do), so nothing ends early.
    /// </summary>
    private static TokenBytes Vocabulary()
    {
        byte[]?[] pieces = [.. s_pieces.Select(p => p is null ? null : Encoding.UTF8.GetBytes(p))];
        pieces[23] = [0xC3];
        pieces[24] = [0xA9];
        return new TokenBytes(pieces);
    }

    private static readonly int[] s_ends = [0, 32];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EverySampledTextIsAnObjectAndEndsWhenItCloses(bool greedy)
    {
        TokenBytes vocabulary = Vocabulary();
        var random = new Random(5);
        int finished = 0;
        // One set of masks for every run, as a server shares it: runs find the states others worked out.
        var masks = new TokenMasks(vocabulary);
        for (int run = 0; run < 300; run++)
        {
            var options = greedy ? SamplingOptions.Greedy : new SamplingOptions { DoSample = true, Temperature = 1.5, TopK = 0 };
            var sampler = new TokenSampler(options, vocabulary.Count, (ulong)run, new AutomatonConstraint<JsonSchemaPrefix>(masks, AnyObject, s_ends));
            var text = new List<byte>();
            var generated = new List<int>();
            for (int step = 0; step < 200; step++)
            {
                float[] logits = [.. Enumerable.Range(0, vocabulary.Count).Select(_ => (float)(random.NextDouble() * 8))];
                int token = sampler.Next(logits, [], generated);
                generated.Add(token);
                if (s_ends.Contains(token))
                {
                    break;
                }

                text.AddRange(vocabulary.Of(token).ToArray());
            }

            string shown = Encoding.UTF8.GetString([.. text]);
            if (s_ends.Contains(generated[^1]))
            {
                using JsonDocument document = JsonDocument.Parse(text.ToArray());
                Assert.Equal(JsonValueKind.Object, document.RootElement.ValueKind);
                finished++;
            }
            else
            {
                Assert.True(text.Count == 0 || text[0] == '{', shown);
            }

            // The only tokens without bytes are the end tokens (and they come last); ids 24 and 31 carry none.
            Assert.All(generated.Where(t => !s_ends.Contains(t)), t => Assert.False(vocabulary.Of(t).IsEmpty));
        }

        Assert.True(finished > 100, $"only {finished} of 300 texts closed their object");
    }

    // Any object; and one whose string's length limits are farther apart than the longest token (6 bytes), where states
    // that differ in their length share a mask, and whose number's range is checked digit by digit; and a string held to a
    // pattern and a length, where an "a" is taken 14 characters from the least (ten a's at most) but not 15, and one where a
    // "u" is taken 8 characters from the most (eight u's in a row) but not 7; and a set, whose items written are its state.
    [Theory]
    [InlineData("""{"type": "object"}""")]
    [InlineData("""{"type": "object", "properties": {"k": {"type": "string", "minLength": 9, "maxLength": 20}, "a": {"type": "number", "minimum": -1, "maximum": 10.5}}}""")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "^[nu]*a{0,10}$", "minLength": 15, "maxLength": 40}}, "required": ["a"]}""")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "^(n|u{8})*$", "minLength": 1, "maxLength": 9}}, "required": ["a"]}""")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "array", "items": {"type": ["boolean", "null"]}, "uniqueItems": true}}, "required": ["a"]}""")]
    public void AKeptMaskIsTheMaskWorkedOutAfresh(string schemaText)
    {
        using JsonDocument schema = JsonDocument.Parse(schemaText);
        JsonSchemaPrefix start = JsonSchemaPrefix.Start(JsonSchema.Compile(schema.RootElement));
        TokenBytes vocabulary = Vocabulary();
        var shared = new TokenMasks(vocabulary);
        var random = new Random(9);
        int states = 0;
        for (int walk = 0; walk < 200; walk++)
        {
            JsonSchemaPrefix state = start;
            for (int step = 0; step < 60 && !state.Complete; step++)
            {
                TokenMask kept = shared.For(state);
                TokenMask fresh = new TokenMasks(vocabulary).For(state);
                Assert.Equal(fresh.Bits, kept.Bits);
                // And both are every token checked from the start, byte by byte.
                JsonSchemaPrefix at = state;
                Assert.Equal(Enumerable.Range(0, vocabulary.Count).Where(t => Takes(at, vocabulary.Of(t).ToArray())), Enumerable.Range(0, vocabulary.Count).Where(fresh.Has));
                states++;
                int[] allowed = [.. Enumerable.Range(0, vocabulary.Count).Where(fresh.Has)];
                if (allowed.Length == 0)
                {
                    break;
                }

                foreach (byte b in vocabulary.Of(allowed[random.Next(allowed.Length)]))
                {
                    Assert.True(state.Feed(b));
                }
            }
        }

        Assert.True(states > 2000, $"{states} states");
    }

    private static bool Takes(JsonSchemaPrefix state, byte[] piece) => piece.Length > 0 && piece.All(state.Feed);

    [Fact]
    public void OnceTheObjectClosesOnlyEndTokensAreLeft()
    {
        TokenBytes vocabulary = Vocabulary();
        var constraint = new AutomatonConstraint<JsonSchemaPrefix>(new TokenMasks(vocabulary), AnyObject, s_ends);
        constraint.Accept(1);   // {
        constraint.Accept(2);   // }
        float[] logits = [.. Enumerable.Range(0, vocabulary.Count).Select(t => (float)t)];

        constraint.Mask(logits);

        Assert.Equal([0, 32], Enumerable.Range(0, logits.Length).Where(t => logits[t] != float.NegativeInfinity));
        Assert.Equal(32f, logits[32]);
    }

    [Fact]
    public void WhenNoTokenContinuesTheObjectTheEndTokensAreLeftWithTheirLogits()
    {
        // No token here begins with 'u', so after "n" nothing can spell "null".
        var vocabulary = new TokenBytes([.. new[] { "{", "\"a\":", "n", "x" }.Select(Encoding.UTF8.GetBytes), null]);
        var constraint = new AutomatonConstraint<JsonSchemaPrefix>(new TokenMasks(vocabulary), AnyObject, [4]);
        foreach (int token in (int[])[0, 1, 2])
        {
            constraint.Accept(token);
        }

        float[] logits = [1, 2, 3, 4, 5];
        constraint.Mask(logits);

        Assert.Equal([float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity, 5], logits);
    }

    [Fact]
    public void AtTheStartOnlyAnOpeningBraceIsAllowed()
    {
        TokenBytes vocabulary = Vocabulary();
        float[] logits = new float[vocabulary.Count];

        new AutomatonConstraint<JsonSchemaPrefix>(new TokenMasks(vocabulary), AnyObject, s_ends).Mask(logits);

        Assert.Equal([1, 25], Enumerable.Range(0, logits.Length).Where(t => logits[t] == 0));
    }
}
