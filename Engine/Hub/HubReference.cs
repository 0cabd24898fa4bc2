using System.Text.RegularExpressions;

namespace QwenSharp.Hub;

/// <summary>
/// A model on the Hugging Face Hub, as the CLI and the library take it: <c>owner/name</c>, with an optional
/// <c>@revision</c> (branch, tag or commit; <c>main</c> by default) and an optional <c>:tag</c> choosing one GGUF file of
/// a GGUF repository by its quantization (llama.cpp's <c>-hf owner/name:Q4_K_M</c>). Ollama's <c>hf.co/</c> prefix and a
/// <c>https://huggingface.co/</c> address are taken too.
/// </summary>
public sealed partial record HubReference(string Repo, string Revision, string? Tag)
{
    /// <summary>Reads <paramref name="text"/> as a Hub reference; false for anything else (such as a path).</summary>
    public static bool TryParse(string? text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out HubReference? reference)
    {
        reference = null;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        foreach (string prefix in (string[])["https://huggingface.co/", "huggingface.co/", "hf.co/"])
        {
            if (text.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            {
                text = text[prefix.Length..];
                break;
            }
        }

        Match match = Pattern().Match(text);
        if (!match.Success || match.Groups["repo"].Value.Contains("--", StringComparison.Ordinal) || match.Groups["repo"].Value.Contains("..", StringComparison.Ordinal))
        {
            return false;
        }

        reference = new HubReference(match.Groups["repo"].Value,
            match.Groups["revision"].Success ? match.Groups["revision"].Value : "main",
            match.Groups["tag"].Success ? match.Groups["tag"].Value : null);
        return true;
    }

    public override string ToString() => Repo + (Revision == "main" ? "" : "@" + Revision) + (Tag is null ? "" : ":" + Tag);

    /// <summary>The Hub's names: letters, digits, '-', '_' and '.', at most 96 characters each side of the slash.</summary>
    [GeneratedRegex(@"^(?<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})(@(?<revision>[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*))?(:(?<tag>[A-Za-z0-9._-]+))?$")]
    private static partial Regex Pattern();
}
