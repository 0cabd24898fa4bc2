namespace QwenSharp.Sampling;

/// <summary>
/// A rule over which tokens a sequence may take next (constrained output, such as <see cref="AutomatonConstraint{TState}"/>):
/// <see cref="TokenSampler"/> lets it forbid tokens before anything else touches the logits, then tells it the token
/// chosen. One instance follows one sequence.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>Sets the logit of every token the rule forbids now to −∞; at least one token stays allowed.</summary>
    void Mask(Span<float> logits);

    /// <summary>Takes the token the sequence continues with.</summary>
    void Accept(int token);
}
