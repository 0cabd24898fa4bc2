namespace QwenSharp.Server.Scheduling;

/// <summary>A slot file that cannot be saved or restored as asked, for a reason the request can mend (a 400 naming it).</summary>
internal sealed class SlotFileException(string message) : Exception(message);
