namespace QwenSharp.Tokenization;

/// <summary>
/// A token of tokenizer.json's <c>added_tokens</c>: matched in the text before BPE runs.
/// </summary>
/// <param name="Id">Its id.</param>
/// <param name="Content">The text that is this token.</param>
/// <param name="Special">A control token (skipped by <c>skip_special_tokens</c>, and left as text when special tokens are not parsed).</param>
/// <param name="SingleWord">Matched only where it is not part of a larger word.</param>
/// <param name="LStrip">The whitespace before it belongs to it.</param>
/// <param name="RStrip">The whitespace after it belongs to it.</param>
/// <param name="Normalized">Matched in the normalized text rather than the raw text.</param>
public sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);
