using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// Where the answer to a chat begins: after a new assistant turn the template opens (the generation prompt), or inside
/// the conversation's final assistant message, continuing its text (assistant prefill). A final assistant message is
/// continued as llama-server continues it (unless the server runs with <c>--no-prefill-assistant</c>) and as Anthropic's
/// API does; vLLM's fields say it outright: <c>continue_final_message</c> and <c>add_generation_prompt</c>, which a
/// request sets no more than one of. The prompt is cut after the final message's text as transformers'
/// <c>apply_chat_template(continue_final_message=True)</c> cuts it, so the template's end-of-turn never follows it.
/// </summary>
internal readonly record struct ChatTurn(bool AddGenerationPrompt, bool ContinuesFinalMessage)
{
    /// <summary>
    /// The turn the request asks for: its <c>continue_final_message</c> and <c>add_generation_prompt</c>; where it gives
    /// neither, a final assistant message is continued when <paramref name="prefillAssistant"/>, else the answer opens a
    /// turn when <paramref name="generationPrompt"/>.
    /// </summary>
    public static ChatTurn Read(RequestFields request, JsonElement messages, bool generationPrompt, bool prefillAssistant)
    {
        bool lastIsAssistant = Tokenization.Chat.ChatTemplate.EndsWithAssistantMessage(messages);
        bool? add = request.Bool("add_generation_prompt");
        bool continues = request.Bool("continue_final_message") ?? (prefillAssistant && lastIsAssistant && add is null);
        if (continues && add == true)
        {
            throw ApiException.BadField("continue_final_message",
                "'continue_final_message' and 'add_generation_prompt' are both true: the answer either continues the final message or opens a new turn");
        }

        if (continues && !lastIsAssistant)
        {
            throw ApiException.BadField("continue_final_message", "'continue_final_message' needs the last message to be the assistant's: the text the answer goes on from");
        }

        return new ChatTurn(add ?? (!continues && generationPrompt), continues);
    }

    /// <summary>
    /// Throws, naming the field, unless the final message of <paramref name="rendered"/> (the messages as the template
    /// takes them) can be continued: text, and no calls.
    /// </summary>
    public static void CheckContinuable(JsonElement rendered, int messageCount)
    {
        string path = $"messages[{messageCount - 1}]";
        JsonElement final = rendered[messageCount - 1];
        if (final.TryGetProperty("tool_calls", out _))
        {
            throw ApiException.BadField($"{path}.tool_calls", $"'{path}' is continued as the answer's start (the final assistant message), and a call cannot be continued; give its calls' results as tool messages after it");
        }

        JsonElement content = final.GetProperty("content");
        if (content.ValueKind == JsonValueKind.String && content.GetString()!.Trim().Length == 0)
        {
            throw ApiException.BadField($"{path}.content", $"'{path}.content' has no text, and a final assistant message is continued as the answer's start; give its text, or 'continue_final_message': false for a new turn");
        }
    }
}
