using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>A file given as context to a fill-in-the-middle prompt: its name and text (llama-server's <c>input_extra</c>).</summary>
public sealed record InfillFile(string Filename, string Text);

/// <summary>
/// Fill-in-the-middle prompts (Qwen2.5-Coder's, as llama-server's <c>/infill</c> writes them): with the vocabulary's
/// <c>&lt;|repo_name|&gt;</c> and <c>&lt;|file_sep|&gt;</c>, the repository-level form
/// <code>
/// &lt;|repo_name|&gt;myproject\n&lt;|file_sep|&gt;NAME\nTEXT...&lt;|file_sep|&gt;filename\n&lt;|fim_prefix|&gt;PREFIX PROMPT&lt;|fim_suffix|&gt;SUFFIX&lt;|fim_middle|&gt;
/// </code>
/// else the files' texts after a separator line, then the same file-level part; with no files at all (not even an empty
/// list), the file-level part alone. The code is tokenized with special tokens left unparsed, as llama-server does (Qwen's
/// FIM tokens are not special ones: written in code they are still read as the tokens, there and by transformers). A
/// vocabulary without the three FIM tokens has no form.
/// </summary>
internal sealed class FillInTheMiddle
{
    /// <summary>llama-server's default batch, by which it cuts a long prefix and suffix (3/4 of it for the prefix).</summary>
    public const int LlamaServerBatch = 2048;

    private readonly Tokenizer _tokenizer;

    private FillInTheMiddle(Tokenizer tokenizer, int prefix, int suffix, int middle)
    {
        _tokenizer = tokenizer;
        (Prefix, Suffix, Middle) = (prefix, suffix, middle);
        Repository = tokenizer.TokenToId("<|repo_name|>");
        FileSeparator = tokenizer.TokenToId("<|file_sep|>");
        EndTokens = [.. new[] { "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>" }
            .Select(tokenizer.TokenToId).OfType<int>()];
    }

    public int Prefix { get; }

    public int Suffix { get; }

    public int Middle { get; }

    public int? Repository { get; }

    public int? FileSeparator { get; }

    /// <summary>The FIM tokens an answer ends at besides the model's end-of-sequence ids (llama.cpp counts them as end of generation).</summary>
    public IReadOnlyList<int> EndTokens { get; }

    /// <summary>The vocabulary's fill-in-the-middle form, or null when it lacks the prefix, suffix or middle token.</summary>
    public static FillInTheMiddle? Of(Tokenizer tokenizer) =>
        tokenizer.TokenToId("<|fim_prefix|>") is int prefix && tokenizer.TokenToId("<|fim_suffix|>") is int suffix && tokenizer.TokenToId("<|fim_middle|>") is int middle
            ? new FillInTheMiddle(tokenizer, prefix, suffix, middle) : null;

    /// <summary>
    /// The prompt's ids. With <paramref name="cut"/> (llama-server's: its batch, the context and the tokens to come), the
    /// prefix keeps its last 3/4 of a batch, the suffix its first quarter less the prompt, the files the end of what the
    /// context has left; without, all of each.
    /// </summary>
    public int[] Encode(string prefix, string suffix, string prompt, IReadOnlyList<InfillFile>? files, (int Batch, int Context, int Predict)? cut = null)
    {
        var extra = new List<int>();
        // Without files (null), the file level alone: the gap in one file, nothing before it.
        if (files is not null && Repository is int repository)
        {
            extra.Add(repository);
            extra.AddRange(Text("myproject\n"));
        }

        foreach (InfillFile file in files ?? [])
        {
            if (FileSeparator is int separator)
            {
                extra.Add(separator);
                extra.AddRange(Text(file.Filename + "\n"));
            }
            else
            {
                extra.AddRange(Text("\n\n--- snippet ---\n\n"));
            }

            extra.AddRange(Text(file.Text));
        }

        if (files is not null && FileSeparator is int last)
        {
            extra.Add(last);
            extra.AddRange(Text("filename\n"));
        }

        int[] before = Text(prefix), after = Text(suffix), middle = Text(prompt);
        if (cut is (int batch, int context, int predict))
        {
            before = before[Math.Max(0, before.Length - (3 * (batch / 4)))..];
            after = after[..Math.Min(after.Length, Math.Max(0, (batch / 4) - (2 + middle.Length)))];
            int extraTaken = Math.Min(Math.Max(0, context - batch - (2 * Math.Max(0, predict))), extra.Count);
            extra = extra[(extra.Count - extraTaken)..];
        }

        return [.. extra, Prefix, .. before, .. middle, Suffix, .. after, Middle];
    }

    private int[] Text(string text) => _tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
}
