using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// GBNF grammars against llama.cpp's own grammar sampler (LLamaSharp, in-process): on the same GGUF file (the random
/// tiny Qwen2 with Qwen2.5's tokenizer), greedy answers held to the same grammar are the same token ids, through whole
/// characters written over several tokens and the answer's end. The grammars keep clear of '&lt;' and '|': llama.cpp
/// matches special tokens by their text (&lt;|im_end|&gt;), which here are never text.
/// </summary>
public sealed class GrammarOracleTests
{
    private static readonly Lazy<string> s_gguf = new(() => GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer));

    [Theory]
    [InlineData("root ::= [a-z ]{1,24} \".\"")]
    [InlineData("root ::= \"{\" ws \"\\\"n\\\":\" ws [0-9]{1,4} ws \"}\"\nws ::= \" \"?")]
    [InlineData("root ::= (\"yes\" | \"no\" | \"maybe\") (\"!\" | \"?\") \"\\n\"")]
    [InlineData("root ::= [à-ÿ]{2,8} (\" \" [α-ω]+){1,3}")]
    [InlineData("root ::= item (\",\" item)*\nitem ::= \"(\" [0-9]+ \")\"")]
    public async Task GreedyAnswersAreLlamaCppsTokenIds(string grammar) => await SameAsLlamaCpp(grammar);

    /// <summary>
    /// Grammars naming tokens (llama.cpp's token references): by id, by a special token's text, and any token but one (here
    /// the one greedy takes first, so the ban shows), each beside characters.
    /// </summary>
    [Theory]
    [InlineData("root ::= [a-z]{1,3} <[{comma}]> [a-z ]{1,12} \".\"")]
    [InlineData("root ::= \"x\" <|fim_middle|> [a-z]{2,6} <|fim_suffix|> \"!\"")]
    [InlineData("root ::= (!<[{first}]>){2,5} \"\\n\"")]
    [InlineData("root ::= ([a-z] | <[{comma}]> | <|fim_pad|>){3,9} \".\"")]
    public async Task GreedyAnswersWithTokenReferencesAreLlamaCppsTokenIds(string grammar)
    {
        using QwenModel model = await QwenModel.LoadAsync(s_gguf.Value, new QwenModelOptions { Threads = 2 });
        int comma = model.Tokenizer!.Encode(",")[0];
        int first = (await Greedy(model, "root ::= <[0]> | !<[0]>")).First();
        await SameAsLlamaCpp(grammar.Replace("{comma}", $"{comma}", StringComparison.Ordinal).Replace("{first}", $"{first}", StringComparison.Ordinal));
    }

    private static async Task<List<int>> Greedy(QwenModel model, string grammar)
    {
        int[] prompt = [.. model.Tokenizer!.Encode("The answer is")];
        var ours = new List<int>();
        await foreach (GenerationUpdate update in model.GenerateAsync(prompt, new TextGenerationOptions { Grammar = grammar, Sampling = new() { Greedy = true }, MaxNewTokens = 1 }))
        {
            if (update.TokenId >= 0)
            {
                ours.Add(update.TokenId);
            }
        }

        return ours;
    }

    private static async Task SameAsLlamaCpp(string grammar)
    {
        const int MaxTokens = 24;
        using QwenModel model = await QwenModel.LoadAsync(s_gguf.Value, new QwenModelOptions { Threads = 2 });
        int[] prompt = [.. model.Tokenizer!.Encode("The answer is")];

        var ours = new List<int>();
        await foreach (GenerationUpdate update in model.GenerateAsync(prompt, new TextGenerationOptions { Grammar = grammar, Sampling = new() { Greedy = true }, MaxNewTokens = MaxTokens }))
        {
            if (update.TokenId >= 0)
            {
                ours.Add(update.TokenId);
            }
        }

        (int[] theirs, bool theyEnded) = LlamaCpp.GreedyWithGrammar(s_gguf.Value, prompt, grammar, MaxTokens);

        // Where the grammar is whole both end, ours with generation_config's end token, llama.cpp with the best of its
        // end-of-generation tokens (a few more: <|repo_name|>, <|file_sep|>, ...); the text before is the same ids.
        bool ended = model.EosTokenIds.Contains(ours[^1]);
        Assert.Equal(ended, theyEnded);
        Assert.Equal(ended ? ours[..^1] : ours, ended ? theirs[..^1] : theirs);
    }
}
