using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Tests.Support;
using QwenSharp.Tokenization;

namespace QwenSharp.Tests.Engine;

/// <summary>The library API an embedding app sees: streaming, batches, cancellation, and the IChatClient.</summary>
public sealed class QwenModelTests
{
    private static string Llama2cText => File.ReadAllText(Fixtures.File("stories260K", "llama2c_expected_greedy.txt"));

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public async Task GenerateAsync_StreamsTheTextLlama2cPrints(string device)
    {
        TestBackends.RequireDevice(device);
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Device = device });
        var pieces = new List<string>();
        GenerationUpdate? final = null;
        await foreach (GenerationUpdate update in model.GenerateAsync("Once upon a time", new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 60 }))
        {
            pieces.Add(update.Text);
            final = update;
        }

        Assert.True(final!.IsFinal);
        Assert.Equal(StopReason.Length, final.StopReason);
        Assert.Equal(60, final.GeneratedTokens);
        Assert.Equal(5, final.PromptTokens);
        Assert.Equal(61, pieces.Count);
        Assert.StartsWith("Once upon a time" + string.Concat(pieces), Llama2cText, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public async Task PromptLookup_ModelWideOrPerCall_StreamsTheTextLlama2cPrints(string device)
    {
        TestBackends.RequireDevice(device);
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Device = device, PromptLookup = 6 });
        var guessed = new List<int>();
        async Task<string> Text(int? lookup)
        {
            var text = new System.Text.StringBuilder("Once upon a time");
            await foreach (GenerationUpdate update in model.GenerateAsync("Once upon a time", new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 100, PromptLookup = lookup }))
            {
                text.Append(update.Text);
                if (update.IsFinal)
                {
                    guessed.Add(update.LookupTokens.Accepted);
                }
            }

            return text.ToString();
        }

        Assert.StartsWith(await Text(null), Llama2cText, StringComparison.Ordinal);
        Assert.StartsWith(await Text(3), Llama2cText, StringComparison.Ordinal);
        Assert.StartsWith(await Text(0), Llama2cText, StringComparison.Ordinal);
        Assert.True(guessed[0] > 0 && guessed[1] > 0 && guessed[2] == 0, $"guesses taken: {string.Join(", ", guessed)} (model-wide, per call, off)");
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>("PromptLookup", () => Text(7));
        Assert.Throws<ArgumentOutOfRangeException>("PromptLookup", () => QwenModel.Load(Fixtures.DemoModel, new QwenModelOptions { PromptLookup = 0 }));
    }

    [Fact]
    public async Task KvCacheType_ReachesTheModel_AndIsRefusedWhereItCannotHold()
    {
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { KvCacheType = DType.BF16 });
        Assert.Equal(DType.BF16, model.Model.KvCacheType);
        var text = new StringBuilder();
        await foreach (GenerationUpdate update in model.GenerateAsync("Once upon a time", new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 20 }))
        {
            text.Append(update.Text);
        }

        // The story of llama2.c's greedy run, through a cache of bf16.
        Assert.StartsWith("Once upon a time" + text, Llama2cText, StringComparison.Ordinal);

        var error = Assert.Throws<ArgumentException>("options", () => QwenModel.Load(Fixtures.DemoModel, new QwenModelOptions { KvCacheType = DType.Q4_K }));
        Assert.Contains("QwenModelOptions.KvCacheType Q4_K: a KV cache holds F32, F16, BF16, Q8_0, Q4_0", error.Message, StringComparison.Ordinal);

        // q8_0 stores heads of whole blocks of 32; the demo model's are 8.
        error = Assert.Throws<ArgumentException>("options", () => QwenModel.Load(Fixtures.DemoModel, new QwenModelOptions { KvCacheType = DType.Q8_0 }));
        Assert.Contains("QwenModelOptions.KvCacheType Q8_0: a q8_0 KV cache stores each head in blocks of 32 values, and this model's heads have 8", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancellation_StopsWithinOneToken()
    {
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel);
        using var cancel = new CancellationTokenSource();
        int tokens = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (GenerationUpdate update in model.GenerateAsync("Once upon a time", new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 400, IgnoreEos = true }, cancel.Token))
            {
                if (++tokens == 5)
                {
                    await cancel.CancelAsync();
                }
            }
        });

        // The worker checks before every forward step: at most one more token was already on its way.
        Assert.InRange(tokens, 5, 6);

        // The model is free again afterwards.
        int after = 0;
        await foreach (GenerationUpdate update in model.GenerateAsync([1], new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 3 }))
        {
            after++;
        }

        Assert.Equal(4, after);
    }

    [Fact(Timeout = 30_000)]
    public async Task LeavingTheStreamEarly_FreesTheModel()
    {
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel);
        var options = new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 300, IgnoreEos = true };
        await foreach (GenerationUpdate update in model.GenerateAsync("Once", options))
        {
            break;
        }

        int count = 0;
        await foreach (GenerationUpdate update in model.GenerateAsync("Once", options with { MaxNewTokens = 2 }))
        {
            count++;
        }

        Assert.Equal(3, count);
    }

    [Fact]
    public async Task GenerateBatchAsync_EachEqualsItsPromptAlone()
    {
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel);
        var options = new TextGenerationOptions { Sampling = new() { Temperature = 1.1, Seed = 21 }, MaxNewTokens = 25, Logprobs = 2 };
        IReadOnlyList<GeneratedText> batch = await model.GenerateBatchAsync(["Lily", "Tom and Sue"], options);
        IReadOnlyList<GeneratedText> lily = await model.GenerateBatchAsync(["Lily"], options);
        IReadOnlyList<GeneratedText> tom = await model.GenerateBatchAsync(["Tom and Sue"], options);

        Assert.Equal(lily[0].Ids, batch[0].Ids);
        Assert.Equal(tom[0].Ids, batch[1].Ids);
        Assert.Equal(tom[0].Text, batch[1].Text);
        Assert.Equal(batch[0].Ids.Count, batch[0].Logprobs!.Count);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(null)]
    public async Task GenerateBatchAsync_ChosenTogetherOnTheKernelsThreads_EachEqualsItsPromptAlone(int? promptLookup)
    {
        // A step's sequences choose their tokens at once on the CPU backend's two threads (IBackend.ForEachOnHost), each with
        // its own sampler: penalties over its own tokens, a regular expression's masks shared by all, DRY, log-probs. Each
        // must get exactly what it gets alone (and a sequence with prompt lookup's guesses, null here, chooses row by row).
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Threads = 2, BatchInvariant = true });
        var options = new TextGenerationOptions
        {
            Sampling = new() { Temperature = 1.3, TopK = 40, RepetitionPenalty = 1.2, DryMultiplier = 0.8, Seed = 77 },
            MaxNewTokens = 30,
            Logprobs = 3,
            Regex = "[a-z ]+[.!]",
            PromptLookup = promptLookup,
        };
        string[] prompts = ["Lily", "Tom and Sue", "Once upon a time", "The dog", "A big red ball"];
        IReadOnlyList<GeneratedText> batch = await model.GenerateBatchAsync(prompts, options);

        for (int p = 0; p < prompts.Length; p++)
        {
            GeneratedText alone = (await model.GenerateBatchAsync([prompts[p]], options))[0];
            Assert.Equal(alone.Ids, batch[p].Ids);
            Assert.Equal(alone.Text, batch[p].Text);
            // The logits of a batched prefill differ from one prompt's in their last bits (other tiles of the same sums).
            Assert.Equal(alone.Logprobs!.Select(l => (l.Id, l.Top.Count)), batch[p].Logprobs!.Select(l => (l.Id, l.Top.Count)));
            Assert.All(alone.Logprobs!.Zip(batch[p].Logprobs!), pair => Assert.Equal(pair.First.Logprob, pair.Second.Logprob, 1e-5));
        }

        Assert.True(batch.Select(b => string.Join(",", b.Ids)).Distinct().Count() == prompts.Length, "the prompts' answers should differ");
    }

    [Fact]
    public async Task ChatClient_RendersTheTemplateAndReportsUsage()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient client = model.AsChatClient();
        // The chat case "user only, default system" holds transformers' ids for this conversation.
        using System.Text.Json.JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        System.Text.Json.JsonElement userOnly = cases.RootElement.EnumerateArray().First(c => c.GetProperty("name").GetString() == "user only, default system");
        string question = userOnly.GetProperty("messages")[0].GetProperty("content").GetString()!;
        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, question)],
            new ChatOptions { Temperature = 0, MaxOutputTokens = 8 });

        Assert.Equal(userOnly.GetProperty("ids").GetArrayLength(), response.Usage!.InputTokenCount);
        Assert.Equal(8, response.Usage.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(ChatRole.Assistant, response.Messages[^1].Role);
        Assert.Same(model, client.GetService<QwenModel>());
        Assert.Same(model.Tokenizer, client.GetService<Tokenizer>());
        Assert.NotNull(client.GetService<ChatClientMetadata>());
    }

    [Fact]
    public async Task ChatClient_ContinuesAFinalAssistantMessage_AsTransformersContinuesIt()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient client = model.AsChatClient();
        // transformers' ids of [user "Hi", assistant "Hello!"] with no generation prompt end with the turn's <|im_end|> and
        // newline; continue_final_message=True cuts exactly those two.
        using System.Text.Json.JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        System.Text.Json.JsonElement reference = cases.RootElement.EnumerateArray().First(c => c.GetProperty("name").GetString() == "no generation prompt");
        int[] ids = [.. reference.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32())];
        Assert.Equal([151645, .. TestTokenizers.Qwen.Encode("\n")], ids[^2..]);
        ChatMessage[] conversation = [new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "Hello!")];

        ChatResponse continued = await client.GetResponseAsync(conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 4 });

        Assert.Equal(ids.Length - 2, continued.Usage!.InputTokenCount);
        var greedy = new TextGenerationOptions { MaxNewTokens = 4, Sampling = new Sampling.SamplingOverrides { Temperature = 0 } };
        string expected = string.Concat((await model.GenerateAsync(ids[..^2], greedy).ToListAsync()).Select(u => u.Text));
        Assert.Equal(expected, continued.Text);
        Assert.Equal(expected, string.Concat((await model.GenerateAsync([("user", "Hi"), ("assistant", "Hello!")], greedy).ToListAsync()).Select(u => u.Text)));

        ChatResponse newTurn = await client.GetResponseAsync(conversation,
            new ChatOptions { Temperature = 0, MaxOutputTokens = 4, AdditionalProperties = new() { ["continue_final_message"] = false } });
        Assert.Equal(ids.Length + TestTokenizers.Qwen.Encode("<|im_start|>assistant\n").Length, newTurn.Usage!.InputTokenCount);

        var format = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(conversation, new ChatOptions { ResponseFormat = ChatResponseFormat.Json }));
        Assert.Contains("ChatOptions.ResponseFormat holds the answer from its first token, and the answer continues the conversation's final assistant message", format.Message, StringComparison.Ordinal);
        var userLast = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")],
            new ChatOptions { AdditionalProperties = new() { ["continue_final_message"] = true } }));
        Assert.Contains("needs the conversation's last message to be the assistant's", userLast.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChatClient_JsonResponseFormatAnswersWithAnObject()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient client = model.AsChatClient();
        ChatMessage[] question = [new(ChatRole.User, "Answer in JSON.")];
        // The random model wanders; sampled answers that stop are whole objects, the rest begin one.
        for (int seed = 0; seed < 6; seed++)
        {
            ChatResponse answer = await client.GetResponseAsync(question, new ChatOptions { Temperature = 1.5f, Seed = seed, MaxOutputTokens = 24, ResponseFormat = ChatResponseFormat.Json });
            Assert.StartsWith("{", answer.Text, StringComparison.Ordinal);
            if (answer.FinishReason == ChatFinishReason.Stop)
            {
                using System.Text.Json.JsonDocument json = System.Text.Json.JsonDocument.Parse(answer.Text);
                Assert.Equal(System.Text.Json.JsonValueKind.Object, json.RootElement.ValueKind);
            }
        }

        ChatResponse free = await client.GetResponseAsync(question, new ChatOptions { Temperature = 0, MaxOutputTokens = 8 });
        Assert.False(free.Text.StartsWith('{'));
    }

    /// <summary>
    /// The samplers' settings in AdditionalProperties, by the server's field names: top-n-sigma at a tiny n and mirostat
    /// at a target surprise of 0 leave one token, so a sampled answer is the greedy one; a sampled answer without them is
    /// not; a setting that is not a number is refused naming it.
    /// </summary>
    [Fact]
    public async Task ChatClient_AdditionalPropertiesCarryTheSamplersSettings()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient client = model.AsChatClient();
        ChatMessage[] question = [new(ChatRole.User, "Tell me a story.")];
        string greedy = (await client.GetResponseAsync(question, new ChatOptions { Temperature = 0, MaxOutputTokens = 12 })).Text;
        ChatOptions Sampled(params (string Key, object Value)[] extra)
        {
            var options = new ChatOptions { Temperature = 1, TopK = 0, Seed = 3, MaxOutputTokens = 12, AdditionalProperties = [] };
            foreach ((string key, object value) in extra)
            {
                options.AdditionalProperties[key] = value;
            }

            return options;
        }

        Assert.Equal(greedy, (await client.GetResponseAsync(question, Sampled(("top_n_sigma", 0.0001)))).Text);
        Assert.Equal(greedy, (await client.GetResponseAsync(question, Sampled(("mirostat", 2), ("mirostat_tau", 0f)))).Text);
        Assert.Equal(greedy, (await client.GetResponseAsync(question, Sampled(("top_n_sigma", System.Text.Json.JsonDocument.Parse("0.0001").RootElement)))).Text);
        Assert.NotEqual(greedy, (await client.GetResponseAsync(question, Sampled())).Text);

        var text = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(question, Sampled(("typical_p", "high"))));
        Assert.Contains("ChatOptions.AdditionalProperties[\"typical_p\"] must be a number, not String", text.Message, StringComparison.Ordinal);
        var fraction = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(question, Sampled(("mirostat", 1.5))));
        Assert.Contains("ChatOptions.AdditionalProperties[\"mirostat\"] must be a whole number", fraction.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChatClient_AdditionalPropertiesHoldTheAnswerToAGrammarPatternOrChoice()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient client = model.AsChatClient();
        ChatMessage[] question = [new(ChatRole.User, "Well?")];
        ChatOptions Held(string key, object value) => new() { Temperature = 1.5f, Seed = 3, MaxOutputTokens = 24, AdditionalProperties = new() { [key] = value } };

        ChatResponse grammar = await client.GetResponseAsync(question, Held("grammar", "root ::= (\"yes\" | \"no\") \", \" [a-z]{2,5}"));
        ChatResponse regex = await client.GetResponseAsync(question, Held("regex", @"\d{2}-[A-Z]"));
        ChatResponse choice = await client.GetResponseAsync(question, Held("choices", new[] { "red", "green", "blue" }));

        Assert.Matches(@"^(yes|no), [a-z]{2,5}\z", grammar.Text);
        Assert.Matches(@"^\d{2}-[A-Z]\z", regex.Text);
        Assert.Contains(choice.Text, new[] { "red", "green", "blue" });
        ArgumentException wrongType = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(question, Held("grammar", 5)));
        Assert.Contains("AdditionalProperties[\"grammar\"] must be a string", wrongType.Message, StringComparison.Ordinal);
        ChatOptions withTools = Held("regex", "a");
        withTools.Tools = [AIFunctionFactory.Create(() => "sunny", "weather")];
        ArgumentException beside = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(question, withTools));
        Assert.Contains("calls or plain text", beside.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GenerateAsync_ChoicesAndRegexHoldThePlainText()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        string[] labels = ["spam", "not spam", "unsure"];
        for (int seed = 0; seed < 4; seed++)
        {
            var sampling = new QwenSharp.Sampling.SamplingOverrides { Temperature = 1.5, Seed = (ulong)seed };
            string label = await Text(model.GenerateAsync("Is it spam?", new TextGenerationOptions { Sampling = sampling, MaxNewTokens = 16, Choices = labels }));
            string code = await Text(model.GenerateAsync("Code:", new TextGenerationOptions { Sampling = sampling, MaxNewTokens = 16, Regex = "[A-Z]{2}-[0-9]{2,3}" }));
            Assert.Contains(label, labels);
            Assert.Matches("^[A-Z]{2}-[0-9]{2,3}\\z", code);
        }

        await Assert.ThrowsAsync<ArgumentException>(async () => await Text(model.GenerateAsync("x", new TextGenerationOptions { Regex = "a", JsonObject = true })));
        await Assert.ThrowsAsync<ArgumentException>(async () => await Text(model.GenerateAsync("x", new TextGenerationOptions { Regex = "a(?=b)" })));
    }

    private static async Task<string> Text(IAsyncEnumerable<GenerationUpdate> updates)
    {
        var text = new System.Text.StringBuilder();
        await foreach (GenerationUpdate update in updates)
        {
            text.Append(update.Text);
        }

        return text.ToString();
    }

    /// <summary>No number or string: the random model's digits could outgrow an int, and its strings run on; a bool and an enum always end.</summary>
    public sealed record Reading(bool Ok, Level Level, bool? Checked);

    public enum Level
    {
        Low,
        High,
    }

    [Fact]
    public async Task ChatClient_GetResponseOfT_FillsTheTypeFromItsSchema()
    {
        // Microsoft.Extensions.AI asks for the type's JSON schema (ChatResponseFormat.ForJsonSchema); the answer follows it.
        foreach (Reading reading in await AnswersAs<Reading>("Read the gauge.", 120))
        {
            Assert.NotNull(reading);
        }
    }

    /// <summary>Three sampled answers to <paramref name="prompt"/> as <typeparamref name="T"/>, each ended by the model and read whole.</summary>
    private static async Task<List<T>> AnswersAs<T>(string prompt, int maxTokens)
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient client = model.AsChatClient();
        var results = new List<T>();
        for (int seed = 0; seed < 3; seed++)
        {
            ChatResponse<T> answer = await client.GetResponseAsync<T>([new ChatMessage(ChatRole.User, prompt)],
                new ChatOptions { Temperature = 1f, Seed = seed, MaxOutputTokens = maxTokens });

            Assert.Equal(ChatFinishReason.Stop, answer.FinishReason);
            Assert.True(answer.TryGetResult(out T? result), answer.Text);
            results.Add(result!);
        }

        return results;
    }

    /// <summary>
    /// What .NET's schema exporter writes for dates, times, GUIDs and annotated numbers and strings: <c>format</c>,
    /// <c>minimum</c>/<c>maximum</c>, <c>minLength</c>/<c>maxLength</c> and <c>pattern</c> (beside a length too), all bounded, so the random model's answer
    /// always ends and System.Text.Json always reads it. (Not TimeSpan: the pattern exported for it lets "24:12:88" by,
    /// which its reader refuses.)
    /// </summary>
    public sealed record Appointment(DateTime When, DateTimeOffset At, DateOnly Day, TimeOnly Clock, Guid Id,
        [property: System.ComponentModel.DataAnnotations.Range(1, 5)] int Priority,
        [property: System.ComponentModel.DataAnnotations.StringLength(6, MinimumLength = 1)] string Room,
        [property: System.ComponentModel.DataAnnotations.RegularExpression("^[A-Z]{2}[0-9]+$"), System.ComponentModel.DataAnnotations.StringLength(5, MinimumLength = 4)] string Code,
        [property: System.ComponentModel.DataAnnotations.Base64String, System.ComponentModel.DataAnnotations.StringLength(12)] string Blob,
        [property: System.ComponentModel.DataAnnotations.EmailAddress, System.ComponentModel.DataAnnotations.StringLength(24)] string Mail);

    [Fact]
    public async Task ChatClient_GetResponseOfT_ReadsDatesTimesGuidsAndBoundedValues()
    {
        foreach (Appointment appointment in await AnswersAs<Appointment>("Book it.", 400))
        {
            Assert.InRange(appointment.Priority, 1, 5);
            Assert.InRange(appointment.Room.Length, 1, 6);
            Assert.Matches("^[A-Z]{2}[0-9]{2,3}$", appointment.Code);
            Assert.True(appointment.Blob.Length % 4 == 0 && Convert.TryFromBase64String(appointment.Blob, new byte[appointment.Blob.Length], out _), appointment.Blob);
            Assert.True(new System.ComponentModel.DataAnnotations.EmailAddressAttribute().IsValid(appointment.Mail) && System.Net.Mail.MailAddress.TryCreate(appointment.Mail, out _), appointment.Mail);
        }
    }

    [Fact]
    public async Task ChatClient_GetResponseOfT_BesideToolsIsACallOrTheType()
    {
        // GetResponseAsync<T> with tools offered (as FunctionInvokingChatClient runs it): each answer calls the tool, with
        // arguments its schema allows, or is the type; before, the two together were refused.
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient client = model.AsChatClient();
        const string Parameters = """{"type": "object", "properties": {"fast": {"type": "boolean"}}, "required": ["fast"], "additionalProperties": false}""";
        int calls = 0, readings = 0;
        for (int seed = 0; seed < 8; seed++)
        {
            var options = new ChatOptions
            {
                Temperature = 1f,
                Seed = seed,
                MaxOutputTokens = 200,
                AllowMultipleToolCalls = false,
                Tools = [AIFunctionFactory.CreateDeclaration("check", "Checks the gauge", JsonDocument.Parse(Parameters).RootElement.Clone())],
            };
            ChatResponse<Reading> answer = await client.GetResponseAsync<Reading>([new ChatMessage(ChatRole.User, "Read the gauge.")], options);

            Assert.NotEqual(ChatFinishReason.Length, answer.FinishReason);
            if (answer.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().SingleOrDefault() is { } call)
            {
                Assert.Equal("check", call.Name);
                Assert.True(call.Arguments!["fast"] is JsonElement { ValueKind: JsonValueKind.True or JsonValueKind.False });
                calls++;
            }
            else
            {
                Assert.True(answer.TryGetResult(out _), answer.Text);
                readings++;
            }
        }

        Assert.True(calls > 0 && readings > 0, $"{calls} calls, {readings} readings");
    }

    /// <summary>A polymorphic type: .NET's exporter writes its "$type" beside the alternatives, and its reader wants it first.</summary>
    [System.Text.Json.Serialization.JsonPolymorphic]
    [System.Text.Json.Serialization.JsonDerivedType(typeof(Cat), "cat")]
    [System.Text.Json.Serialization.JsonDerivedType(typeof(Dog), "dog")]
    public abstract class Pet
    {
        [System.ComponentModel.DataAnnotations.StringLength(4)]
        public string Name { get; set; } = "";
    }

    public sealed class Cat : Pet
    {
        [System.ComponentModel.DataAnnotations.Range(0, 9)]
        public int Lives { get; set; }
    }

    public sealed class Dog : Pet
    {
        public bool Barks { get; set; }
    }

    public sealed record Household(Pet First, Pet? Second);

    [Fact]
    public async Task ChatClient_GetResponseOfT_ReadsPolymorphicTypes()
    {
        foreach (Household household in await AnswersAs<Household>("Who lives here?", 200))
        {
            Assert.True(household.First is Cat or Dog);
            Assert.True(household.Second is null or Cat or Dog);
            Assert.True(household.First.Name.Length <= 4);
        }
    }

    [Fact]
    public async Task ChatClient_StreamingEqualsWholeResponseAndAFreshClient()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        var options = new ChatOptions { Temperature = 0.9f, TopP = 0.95f, Seed = 4, MaxOutputTokens = 10, FrequencyPenalty = 0.3f };
        ChatMessage[] messages = [new(ChatRole.System, "Be brief."), new(ChatRole.User, "Hello")];
        using IChatClient first = model.AsChatClient();
        using IChatClient second = model.AsChatClient();

        string streamed = string.Concat(await first.GetStreamingResponseAsync(messages, options).Select(u => u.Text).ToListAsync());
        ChatResponse whole = await second.GetResponseAsync(messages, options);

        Assert.Equal(whole.Text, streamed);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public async Task ChatClient_SecondTurnReusesTheFirstTurnsCache(string device)
    {
        TestBackends.RequireDevice(device);
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer, new QwenModelOptions { Device = device });
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
        using IChatClient chat = model.AsChatClient();
        List<ChatMessage> conversation = [new(ChatRole.User, "Hi")];
        ChatResponse turn1 = await chat.GetResponseAsync(conversation, options);
        conversation.AddRange(turn1.Messages);
        conversation.Add(new ChatMessage(ChatRole.User, "And then?"));

        ChatResponse turn2 = await chat.GetResponseAsync(conversation, options);
        using IChatClient fresh = model.AsChatClient();
        ChatResponse alone = await fresh.GetResponseAsync(conversation, options);

        // Turn 1's prompt (and its answer, as far as re-encoding its text gives the same tokens) is not read again.
        Assert.True(turn2.Usage!.CachedInputTokenCount >= turn1.Usage!.InputTokenCount - 3, $"cached {turn2.Usage.CachedInputTokenCount} of turn 1's {turn1.Usage.InputTokenCount}");
        Assert.Equal(0, alone.Usage!.CachedInputTokenCount);
        Assert.Equal(alone.Text, turn2.Text);
    }

    [Fact]
    public async Task ChatClient_StopSequenceCutsTheAnswer()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        using IChatClient chat = model.AsChatClient();
        ChatMessage[] messages = [new(ChatRole.User, "Count to ten.")];
        ChatResponse free = await chat.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 12 });
        Assert.True(free.Text.Length > 8, free.Text);
        string stop = free.Text.Substring(4, 4);

        ChatResponse stopped = await chat.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 12, StopSequences = [stop] });

        Assert.Equal(free.Text[..free.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task ChatClient_CancelledStreamStopsAndTheNextTurnIsRight()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 40 };
        ChatMessage[] messages = [new(ChatRole.User, "Tell me a story.")];
        using IChatClient chat = model.AsChatClient();
        using var cancel = new CancellationTokenSource();
        int updates = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ChatResponseUpdate update in chat.GetStreamingResponseAsync(messages, options, cancel.Token))
            {
                if (++updates == 3)
                {
                    await cancel.CancelAsync();
                }
            }
        });

        Assert.InRange(updates, 3, 4);
        // The same client answers the next request as a fresh one does, whatever the cancelled turn left in its cache.
        ChatResponse after = await chat.GetResponseAsync(messages, options);
        using IChatClient fresh = model.AsChatClient();
        Assert.Equal((await fresh.GetResponseAsync(messages, options)).Text, after.Text);
    }

    [SkippableTheory]
    [InlineData(2)]
    [InlineData(6)]
    public async Task GpuLayers_SplitModel_StreamsTheTextLlama2cPrints(int gpuLayers)
    {
        // stories260K has 5 layers: the last two on the GPU; all and the LM head.
        TestBackends.RequireGpu();
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Device = "gpu", GpuLayers = gpuLayers });
        Assert.Equal(gpuLayers, model.Model.OffloadedLayers);
        var text = new System.Text.StringBuilder("Once upon a time");
        await foreach (GenerationUpdate update in model.GenerateAsync("Once upon a time", new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 60 }))
        {
            text.Append(update.Text);
        }

        Assert.StartsWith(text.ToString(), Llama2cText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GpuLayers_WithoutAGpuDeviceOrNegative_ThrowsSayingWhy()
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { GpuLayers = 2 }));
        Assert.Contains("QwenModelOptions.GpuLayers 2 places layers on a GPU: it goes with Device gpu or gpu:N, not cpu", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Device = "gpu", GpuLayers = -2 }));
        Assert.Contains("QwenModelOptions.GpuLayers -2: a count of layers, 0 or more, or AutoGpuLayers", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { GpuLayers = QwenModelOptions.AutoGpuLayers }));
        Assert.Contains("QwenModelOptions.GpuLayers -1 places layers on a GPU: it goes with Device gpu or gpu:N, not cpu", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Device = "gpu", GpuLayers = 2, GpuFitPositions = 1024 }));
        Assert.Contains("QwenModelOptions.GpuFitPositions goes with GpuLayers = AutoGpuLayers, which it leaves room for", e.Message);
        e = await Assert.ThrowsAsync<ArgumentException>(() => QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Device = "gpu", GpuLayers = QwenModelOptions.AutoGpuLayers, GpuFitPositions = 0 }));
        Assert.Contains("QwenModelOptions.GpuFitPositions 0: a count of positions, 1 or more", e.Message);
    }

    [SkippableFact]
    public async Task AutoGpuLayers_PlacesWhatFits_AndStreamsTheTextLlama2cPrints()
    {
        // The demo model is far smaller than any device: all five layers and the LM head go there.
        TestBackends.RequireGpu();
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel,
            new QwenModelOptions { Device = "gpu", GpuLayers = QwenModelOptions.AutoGpuLayers, GpuFitPositions = 2048 });
        Assert.Equal(6, model.Model.OffloadedLayers);
        Assert.Contains("every layer and the LM head, beside a KV cache of 2048 positions", model.Model.LoadNote);
        var text = new System.Text.StringBuilder("Once upon a time");
        await foreach (GenerationUpdate update in model.GenerateAsync("Once upon a time", new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 60 }))
        {
            text.Append(update.Text);
        }

        Assert.StartsWith(text.ToString(), Llama2cText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Load_UnknownDevice_ThrowsNamingIt()
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions { Device = "tpu" }));
        Assert.Contains("device 'tpu' is not one of cpu, gpu, gpu:N", e.Message);
    }

    [Fact]
    public async Task ChatClient_ModelWithoutATemplateSaysSo()
    {
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel);
        using IChatClient chat = model.AsChatClient();
        var error = await Assert.ThrowsAsync<QwenSharp.Tokenization.Chat.TemplateException>(() => chat.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")]));
        Assert.Contains("no chat template", error.Message, StringComparison.Ordinal);
    }
}
