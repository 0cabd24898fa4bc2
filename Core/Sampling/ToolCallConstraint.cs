namespace QwenSharp.Sampling;

/// <summary>
/// Tool calls held to their tools from the moment the model begins one (OpenAI's <c>tool_choice: auto</c>): the answer is
/// free until the model writes the <c>&lt;tool_call&gt;</c> token, and from there follows <see cref="ToolCallPrefix"/>, a
/// name of one of the tools and arguments its schema allows, to the end of the answer. This is llama.cpp's lazy grammar
/// triggered by a token; until then nothing is masked, so a free answer costs nothing more.
/// </summary>
public sealed class ToolCallConstraint(TokenMasks masks, ToolCallGrammar grammar, int openToken, IReadOnlyList<int> endTokens) : ITokenConstraint
{
    private AutomatonConstraint<ToolCallPrefix>? _call;

    public void Mask(Span<float> logits) => _call?.Mask(logits);

    public void Accept(int token)
    {
        if (_call is not null)
        {
            _call.Accept(token);
        }
        else if (token == openToken)
        {
            _call = new AutomatonConstraint<ToolCallPrefix>(masks, ToolCallPrefix.Start(grammar, masks.Tokens.Of(token)), endTokens);
        }
    }
}
