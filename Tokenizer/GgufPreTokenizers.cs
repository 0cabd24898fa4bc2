namespace QwenSharp.Tokenization;

/// <summary>The pre-tokenizer splits llama.cpp names in tokenizer.ggml.pre, and the Hugging Face regex each stands for.</summary>
public static class GgufPreTokenizers
{
    /// <summary>Qwen2's split ("qwen2"), as in its tokenizer.json.</summary>
    public const string Qwen2 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's split ("llama-bpe"): digits in runs of up to three.</summary>
    public const string Llama3 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The split regex of a tokenizer.ggml.pre name; null for "default" (GPT-2's byte-level regex).</summary>
    public static string? RegexOf(string? name, string where) => name switch
    {
        "qwen2" => Qwen2,
        "llama-bpe" or "llama3" => Llama3,
        null or "default" or "gpt2" => null,
        _ => throw new NotSupportedException($"{where}.pre '{name}' is not supported (qwen2, llama-bpe, default are)"),
    };

    /// <summary>The tokenizer.ggml.pre name of a Hugging Face split regex, or null when llama.cpp has none for it.</summary>
    public static string? NameOf(string regex) => regex switch
    {
        Qwen2 => "qwen2",
        Llama3 => "llama-bpe",
        _ => null,
    };
}
