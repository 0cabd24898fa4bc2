using System.Text;
using System.Text.Json;
using QwenSharp.Sampling;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// Texts fed through a schema's <see cref="JsonSchemaPrefix"/>: a given answer byte by byte, or random walks. A walk's
/// each step takes a byte the automaton allows, often a printable one (an unanchored pattern's letters are found sooner)
/// and, later in a walk, one that closes something when one may, so walks finish. A state with no byte allowed fails the
/// test where it happens.
/// </summary>
internal static class SchemaWalks
{
    /// <summary>The index of the byte of <paramref name="answer"/> the schema's automaton refuses, or -1; whether it then holds a whole answer.</summary>
    public static int RefusedAt(string schemaText, string answer, out bool complete)
    {
        using JsonDocument schemaDocument = JsonDocument.Parse(schemaText);
        JsonSchemaPrefix state = JsonSchemaPrefix.Start(Sampling.JsonSchema.Compile(schemaDocument.RootElement));
        byte[] bytes = Encoding.UTF8.GetBytes(answer);
        for (int i = 0; i < bytes.Length; i++)
        {
            if (!state.Feed(bytes[i]))
            {
                complete = false;
                return i;
            }
        }

        complete = state.Complete;
        return -1;
    }

    private static readonly byte[] s_closers = [.. "\"}]0,:nt@"u8];

    /// <summary>The answers of the walks that finished within 3000 bytes.</summary>
    public static List<string> Finished(string schemaText, int walks, int seed)
    {
        using JsonDocument schemaDocument = JsonDocument.Parse(schemaText);
        var schema = Sampling.JsonSchema.Compile(schemaDocument.RootElement);
        return Finished(() => JsonSchemaPrefix.Start(schema), walks, seed);
    }

    /// <summary>The texts of the walks from <paramref name="start"/> that became complete within 3000 bytes.</summary>
    public static List<string> Finished<TState>(Func<TState> start, int walks, int seed)
        where TState : struct, ITextAutomaton
    {
        var random = new Random(seed);
        var answers = new List<string>();
        for (int walk = 0; walk < walks; walk++)
        {
            TState state = start();
            var text = new List<byte>();
            for (int step = 0; step < 3000 && !state.Complete; step++)
            {
                TState current = state;
                byte[] allowed = [.. Enumerable.Range(0, 256).Select(b => (byte)b).Where(b => { TState next = current; return next.Feed(b); })];
                Assert.True(allowed.Length > 0, $"no byte can follow {Encoding.UTF8.GetString([.. text])}");
                byte[] closing = [.. allowed.Where(b => s_closers.Contains(b))];
                byte[] printable = [.. allowed.Where(b => b is >= 0x20 and < 0x7F)];
                byte[] pool = printable.Length > 0 && random.Next(2) == 0 ? printable : allowed;
                byte chosen = closing.Length > 0 && random.Next(200) < step ? closing[random.Next(closing.Length)] : pool[random.Next(pool.Length)];
                Assert.True(state.Feed(chosen));
                text.Add(chosen);
            }

            if (state.Complete)
            {
                answers.Add(Encoding.UTF8.GetString([.. text]));
            }
        }

        return answers;
    }
}
