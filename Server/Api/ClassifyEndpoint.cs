using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Qwen2;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /classify</c> (and <c>/v1/classify</c>): vLLM's classification API, for a sequence classifier (a
/// <c>*ForSequenceClassification</c> model: a reward model, a classifier). The input is a text, token ids, or a list of
/// either (texts encoded with the tokenizer's special tokens), or <c>messages</c>, one conversation through the chat template
/// as it stands (<c>add_generation_prompt</c> false unless asked), as a reward model rates it. Each gives its best label,
/// <c>probs</c> (the scores of transformers' text-classification pipeline, see <see cref="ClassifierHead.Scores"/>) and, as
/// an extension, the raw <c>logits</c> (a reward model's reward). Inputs run as embedding requests do, a forward step at a
/// time between generation steps.
/// </summary>
internal static class ClassifyEndpoint
{
    private static readonly HashSet<string> s_fields = ["model", "input", "messages", "add_generation_prompt", "user", "lora"];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_fields);
        ClassifierHead head;
        try
        {
            head = server.Model.RequireClassifier("/classify");
        }
        catch (NotSupportedException e)
        {
            throw new ApiException(400, e.Message, null, "model_does_not_classify");
        }

        string model = request.String("model", 256) ?? server.ModelName;
        float[]? adapterScales = server.Adapters.ForRequest(request, model);
        request.String("user");
        List<int[]> inputs = Inputs(request, server);

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        var job = new EmbeddingJob { Inputs = inputs, Classify = true, AdapterScales = adapterScales, Cancellation = deadline.Token };
        float[][] logits = await Jobs.RunAsync(server, job, deadline).ConfigureAwait(false);

        long tokens = inputs.Sum(i => (long)i.Length);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", $"classify-{Guid.NewGuid():N}");
            w.WriteString("object", "list");
            w.WriteNumber("created", DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            w.WriteString("model", model);
            w.WriteStartArray("data");
            for (int i = 0; i < logits.Length; i++)
            {
                float[] scores = head.Scores(logits[i]);
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WriteString("label", head.Labels[ClassifierHead.Best(scores)]);
                Numbers(w, "probs", scores);
                w.WriteNumber("num_classes", scores.Length);
                Numbers(w, "logits", logits[i]);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", tokens);
            w.WriteNumber("total_tokens", tokens);
            w.WriteNumber("completion_tokens", 0);
            w.WriteEndObject();
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private static void Numbers(Utf8JsonWriter w, string name, float[] values)
    {
        w.WritePropertyName(name);
        ResponseJson.WriteNumbers(w, values);
    }

    /// <summary>The inputs as ids: <c>input</c>'s, or the one conversation of <c>messages</c>, each with tokens and inside the server's context.</summary>
    private static List<int[]> Inputs(RequestFields request, ServerState server)
    {
        bool addGenerationPrompt = request.Bool("add_generation_prompt") ?? false;
        if (request.Get("messages") is not null)
        {
            if (request.Get("input") is not null)
            {
                throw ApiException.BadField("messages", "give 'input' or 'messages', not both");
            }

            RenderedChat chat = ChatPrompt.Render(request, server.Tokenizer, processor: null, addGenerationPrompt);
            int[] ids = server.Tokenizer.Encode(chat.Prompt);
            Jobs.CheckContext(server, ids.Length, "'messages'", "messages");
            return [ids];
        }

        (List<int[]> inputs, List<string> texts) = PromptInput.Read(request, server, "input");
        EmbeddingsEndpoint.CheckInputs(request, server, inputs, texts);
        return inputs;
    }
}
