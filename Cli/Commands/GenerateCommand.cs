using System.Globalization;
using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp generate</c>: continues one or more prompts, greedily or by sampling.</summary>
internal sealed class GenerateCommand : ICommand
{
    /// <summary>The options that say what each answer must be (one at most).</summary>
    private static readonly string[] s_heldAnswers = ["json-object", "json-schema", "choice", "regex", "grammar", "grammar-file"];

    /// <summary>The held answers that are plain text rather than JSON.</summary>
    private static readonly string[] s_plainTextAnswers = ["choice", "regex", "grammar", "grammar-file"];

    private static readonly string[] s_samplingOptions = ["temperature", "top-k", "top-p", "min-p", "typical-p", "top-n-sigma", "xtc-probability", "mirostat", "dynatemp-range", "seed"];

    /// <summary>The options that choose tokens, shared with chat.</summary>
    internal static readonly OptionSpec[] SamplingSpecs =
    [
        new("greedy", null, "the argmax of the model's logits at every step (ignores generation_config.json's sampling defaults)"),
        new("temperature", "T", "sampling temperature (default: generation_config.json); 0 is greedy"),
        new("top-k", "K", "keep the K most likely tokens (default: generation_config.json, else 50); 0 switches it off"),
        new("top-p", "P", "keep the most likely tokens up to probability P (default: generation_config.json); 1 switches it off"),
        new("min-p", "M", "drop tokens less likely than M times the most likely one"),
        new("typical-p", "P", "locally typical sampling: keep the tokens whose surprise is closest to the entropy up to probability P (transformers' and llama.cpp's typical_p; default: generation_config.json); 1 switches it off"),
        new("top-n-sigma", "N", "drop tokens more than N standard deviations of the logits below the largest (llama.cpp's top-nsigma; before top-k)"),
        new("xtc-probability", "P", "llama.cpp's XTC: with chance P a step removes every token at least --xtc-threshold likely but the least likely of them"),
        new("xtc-threshold", "T", "XTC's threshold (default 0.1; above 0.5 it never acts)"),
        new("mirostat", "1|2", "llama.cpp's mirostat in place of top-k, top-p and the other filters: hold the answer's surprise near --mirostat-tau"),
        new("mirostat-tau", "T", "mirostat's target surprise in bits (default 5; llama.cpp's mirostat-ent)"),
        new("mirostat-eta", "E", "mirostat's learning rate (default 0.1; llama.cpp's mirostat-lr)"),
        new("dry-multiplier", "M", "llama.cpp's DRY: a token that would extend a repetition of more than --dry-allowed-length tokens loses M * --dry-base^(length - allowed) of its logit; 0 switches it off"),
        new("dry-base", "B", "DRY's base (default 1.75)"),
        new("dry-allowed-length", "N", "the longest repetition DRY lets pass (default 2)"),
        new("dry-penalty-last-n", "N", "how many of the last tokens DRY looks at (default -1: the whole text)"),
        new("dry-sequence-breaker", "S", "a text DRY does not count a repetition back past (repeat for several; default: newline, colon, double quote, asterisk; \\n is a newline)", Repeatable: true),
        new("dynatemp-range", "R", "llama.cpp's dynamic temperature: each step's between T-R and T+R by the entropy of the candidates left, applied after the filters"),
        new("dynatemp-exponent", "E", "the exponent of the entropy in --dynatemp-range's mapping (default 1; llama.cpp's dynatemp-exp)"),
        new("repetition-penalty", "R", "divide positive (multiply negative) logits of tokens already in the text by R (default: generation_config.json)"),
        new("presence-penalty", "A", "subtract A from the logit of every token already generated"),
        new("frequency-penalty", "F", "subtract F per occurrence of a token already generated"),
        new("seed", "S", "seed of the random draws (default: a random one; generate prints it)"),
        new("logit-bias", "ID+B", "add B (-100..100) to token ID's logit before the penalties, as llama.cpp's --logit-bias (15043+1, 13-100); repeat for more", Repeatable: true),
    ];

    /// <summary>--prompt-lookup, as generate, chat and serve take it.</summary>
    internal static readonly OptionSpec PromptLookupSpec = new("prompt-lookup", "N", $"guess up to N (1-{PromptLookup.MaxDraftTokens}) next tokens a step where the text's last 3 or 2 tokens stood before (in the prompt or the answer) and check them in the same step: the same tokens, more than one a step where the answer repeats (transformers' prompt_lookup_num_tokens)");

    public string Name => "generate";

    public string Summary => "continue one or more prompts (greedy or sampled, streamed as text)";

    public string Usage => "qwensharp generate [--model DIR] ((--prompt TEXT | --chat TEXT | --prompt-ids 1,2,3)... | --messages M.json | --image PATH... --chat TEXT) [--max-new-tokens N] [--greedy | sampling options] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("prompt", "TEXT", "a prompt as text, encoded as is (with the tokenizer's BOS where it adds one); repeat for a batch", Repeatable: true),
        new("chat", "TEXT", "a user message through the model's chat template, assistant turn opened; repeat for a batch", Repeatable: true),
        new("prompt-ids", "IDS", "a prompt as token ids, comma-separated; repeat for a batch", Repeatable: true),
        new("messages", "M.json", "a whole conversation through the chat template: a JSON list of messages (or {\"messages\", \"tools\"}); picture items {\"type\": \"image\", \"image\": PATH} relative to the file"),
        new("image", "PATH", "a picture (PNG or JPEG) for a Qwen2-VL model, before the --chat text in the user turn; repeatable", Repeatable: true),
        new("max-new-tokens", "N", "most new tokens per sequence (default: generation_config.json, else 256)"),
        .. SamplingSpecs,
        new("num-return-sequences", "N", "N samples of each prompt, sharing one prefill"),
        new("num-beams", "B", "beam search with B beams (deterministic; the best sequence first)"),
        new("length-penalty", "L", "with beams: finished sequences score sum_logprob / length^L (default 1; above 0 favours longer)"),
        new("early-stopping", null, "with beams: stop as soon as B sequences have finished"),
        new("logprobs", "K", "with --json: each new token's log-prob and the K most likely alternatives"),
        new("stop", "STR", "stop when the text contains STR (cut before it); \\n, \\t and \\\\ mean newline, tab, backslash; repeatable", Repeatable: true),
        new("json-object", null, "make each answer a JSON object (OpenAI's response_format json_object): every token is checked to continue one, and the answer ends when it closes"),
        new("json-schema", "S.json", "make each answer what the JSON schema in S.json (or given inline, '{...}', as llama.cpp's -j) describes (OpenAI's response_format json_schema; an object at its root, properties in its order)"),
        new("choice", "TEXT", "make each answer exactly one of the --choice texts, as plain text (vLLM's guided_choice); repeat for each", Repeatable: true),
        new("regex", "R", "make each answer plain text that the regular expression R matches whole (vLLM's guided_regex; the expressions a schema's pattern takes)"),
        new("grammar", "GBNF", "make each answer plain text that the GBNF grammar allows from its rule root (llama.cpp's --grammar; vLLM's guided_grammar)"),
        new("grammar-file", "F.gbnf", "as --grammar, the grammar read from F.gbnf (llama.cpp's --grammar-file)"),
        PromptLookupSpec,
        ModelLoading.DraftModel,
        ModelLoading.DraftTokens,
        new("ignore-eos", null, "keep going past end-of-sequence ids (for benchmarks)"),
        new("context", "N", "context per sequence, prompt included (default: max_position_embeddings)"),
        new("json", null, "print JSON: {\"sequences\":[{\"ids\",\"text\",\"stop_reason\",\"logprobs\"}],\"seed\",\"prefill_tokens_per_s\",\"decode_tokens_per_s\"} (and \"lookup_drafted\",\"lookup_accepted\" with --prompt-lookup or --draft-model)"),
        ModelLoading.Threads,
        ModelLoading.BatchInvariant,
        ModelLoading.Quantize,
        ModelLoading.Imatrix,
        ModelLoading.Lora,
        ModelLoading.LoraScale,
        ModelLoading.KvCacheType,
        ModelLoading.Device,
        ModelLoading.GpuLayers,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp generate --prompt \"Once upon a time\" --max-new-tokens 64 --greedy",
        "qwensharp generate --prompt \"Once upon a time\" --temperature 0.8 --top-p 0.9 --seed 42",
        "qwensharp generate --prompt \"Lily\" --prompt \"Tom\" --num-return-sequences 3 --seed 7 --json",
        "qwensharp generate --model ~/models/Qwen2.5-0.5B-Instruct --chat \"Name three primes.\" --stop \"\\n\\n\"",
        "qwensharp generate --prompt-ids 1,403,407 --greedy --logprobs 5 --json",
        "qwensharp generate --model ~/models/Qwen2-VL-2B-Instruct --image photo.jpg --chat \"What is in this picture?\"",
        "qwensharp generate --model ~/models/Qwen2-VL-2B-Instruct --messages conversation.json --greedy",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        List<(string Kind, string Value)> promptArgs = [.. args.InOrder.Where(a => a.Name is "prompt-ids" or "prompt" or "chat")];
        IReadOnlyList<string> images = args.Values("image");
        if (args.Has("messages") && promptArgs.Count > 0)
        {
            throw new UsageException("--messages is the whole prompt; it does not go with --prompt, --chat or --prompt-ids");
        }

        if (images.Count > 0 && (promptArgs.Count != 1 || promptArgs[0].Kind != "chat"))
        {
            throw new UsageException("--image goes with exactly one --chat TEXT (the pictures, then the text, in one user turn)");
        }

        if (promptArgs.Count == 0 && !args.Has("messages"))
        {
            throw new UsageException("generate needs a prompt: --prompt TEXT, --chat TEXT, --prompt-ids 1,2,3 or --messages M.json");
        }

        int beams = args.Int("num-beams", 1, 64) ?? 1;
        if (beams == 1 && (args.Has("length-penalty") || args.Flag("early-stopping")))
        {
            throw new UsageException("--length-penalty and --early-stopping go with --num-beams B (B >= 2)");
        }

        if (beams > 1 && args.Has("prompt-lookup"))
        {
            throw new UsageException("--prompt-lookup does not apply to beam search here; sample or decode greedily");
        }

        if (beams > 1 && (args.Has("stop") || args.Has("logprobs")))
        {
            throw new UsageException($"--{(args.Has("stop") ? "stop" : "logprobs")} does not apply to beam search here");
        }

        string[] held = [.. s_heldAnswers.Where(args.Has)];
        if (beams > 1 && held.Length > 0)
        {
            throw new UsageException($"--{held[0]} does not apply to beam search here; sample or decode greedily");
        }

        if (held.Length > 1)
        {
            throw new UsageException($"--{held[0]} and --{held[1]}: give one (each says what the answer must be)");
        }

        if (beams > 1 && s_samplingOptions.FirstOrDefault(args.Has) is string samplingOption)
        {
            throw new UsageException($"--num-beams: beam search is deterministic here; --{samplingOption} does not apply to it");
        }

        bool json = args.Flag("json");
        int? logprobs = args.Int("logprobs", 0, 1000);
        if (logprobs is not null && !json)
        {
            throw new UsageException("--logprobs goes with --json");
        }

        string directory = ModelLoading.ResolveDirectory(args, stderr);
        bool needsText = promptArgs.Any(p => p.Kind != "prompt-ids") || args.Has("stop") || args.Has("messages") || held.Length > 0;
        Tokenizer? tokenizer = needsText ? TextInput.LoadTokenizer(directory) : TextInput.TryLoadTokenizer(directory);
        if (promptArgs.Any(p => p.Kind == "chat") || args.Has("messages"))
        {
            ModelLoading.RequireChatTemplate(tokenizer!, directory, args.Has("messages") ? "generate --messages" : "generate --chat");
        }

        // A conversation (a file, or pictures with one --chat): its pictures decoded before any weight is read.
        using ConversationInput? conversation = args.Value("messages") is string messagesPath ? ConversationInput.FromFile(messagesPath)
            : images.Count > 0 ? ConversationInput.FromChat(promptArgs[0].Value, images) : null;
        conversation?.LoadPictures(ConversationInput.VisionOf(directory)?.Processor, directory);
        if (conversation is not null && beams > 1)
        {
            throw new UsageException("--num-beams does not take --messages or --image here; sample or decode greedily");
        }

        int[][] prompts = conversation is null ? [.. promptArgs.Select(p => Encode(p.Kind, p.Value, tokenizer))] : [];
        string? draftPath = ModelLoading.DraftPath(args, stderr);
        if (draftPath is not null && (beams > 1 || images.Count > 0 || conversation?.Pictures.Count > 0))
        {
            throw new UsageException("--draft-model guesses for sampled or greedy text: not with --num-beams or pictures");
        }

        if (draftPath is not null && tokenizer is not null && TextInput.TryLoadTokenizer(draftPath) is Tokenizer draftTokenizer)
        {
            QwenModel.CheckDraftTokenizer(tokenizer, draftTokenizer, draftPath);
        }

        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            // A classifier is refused before anything is printed (the prompt is echoed as generation starts).
            model.RequireGenerates();
            using Qwen2Model? draftWeights = draftPath is null ? null : Qwen2Model.Load(draftPath, backend);
            using DraftModel? drafter = draftWeights is null ? null : new DraftModel(draftWeights);
            Qwen2VL.VisionPrompt? vision = null;
            if (conversation is not null)
            {
                (int[] ids, vision) = Images.PicturePrompts.Encode(model, tokenizer!, conversation.Render(tokenizer!, addGenerationPrompt: true), conversation.Pictures);
                prompts = [ids];
            }

            // Every prompt is checked (ids, length against the context) before any text is streamed.
            int? context = ModelLoading.Context(args, model.Config);
            Generator.ValidatePrompts(model, prompts, context ?? model.Config.MaxPositionEmbeddings);

            SamplingOptions sampling = beams > 1 ? PenaltiesOnly(args) : SamplingFrom(args, model.GenerationConfig, tokenizer);
            int perPrompt = args.Int("num-return-sequences", 1, 1024) ?? 1;
            if (perPrompt > 1 && sampling.IsGreedy && beams == 1)
            {
                throw new UsageException("--num-return-sequences above 1 needs sampling or beams: greedy gives the same sequence every time");
            }

            if (perPrompt > beams && beams > 1)
            {
                throw new UsageException($"--num-return-sequences {perPrompt} is more than --num-beams {beams}");
            }

            int sequences = prompts.Length * perPrompt;
            StopStrings? text = tokenizer is null ? null : new StopStrings(tokenizer, [.. args.Values("stop").Select(TextInput.Unescape)], sequences);
            var options = new GenerationOptions
            {
                MaxNewTokens = args.Int("max-new-tokens", 0) ?? model.GenerationConfig.DefaultMaxNewTokens(prompts.Max(p => p.Length)),
                IgnoreEos = args.Flag("ignore-eos"),
                EosTokenIds = QwenModel.DefaultEosTokenIds(model, tokenizer),
                Context = context,
                Sampling = sampling,
                NumReturnSequences = perPrompt,
                Logprobs = logprobs,
                StopCondition = text,
                Constraint = AnswerRule(args, tokenizer, model, conversation),
                PromptLookup = ModelLoading.LookupFrom(args, drafter is not null),
                DraftModel = drafter,
            };

            // One sequence in text mode streams as it is generated; several (and beams) print each when done.
            bool stream = !json && sequences == 1 && beams == 1;
            TokenCallback? onToken = null;
            if (stream && text is null)
            {
                onToken = (_, token, _) => { stdout.Write(token.ToString(CultureInfo.InvariantCulture)); stdout.Write(' '); stdout.Flush(); };
            }
            else if (stream)
            {
                // The decoder reads the prompt first (and echoes it, unless it is a chat template), so the
                // continuation is spaced as in the whole text.
                string echo = text!.Prime(0, prompts[0]);
                stdout.Write(conversation is not null || promptArgs[0].Kind == "chat" ? "" : echo);
                stdout.Flush();
                onToken = (_, _, _) => { stdout.Write(text.Release(0, finished: false)); stdout.Flush(); };
            }

            GenerationResult result = beams > 1
                ? BeamSearch.Generate(model, prompts, options, new BeamOptions
                {
                    NumBeams = beams,
                    LengthPenalty = args.Double("length-penalty", -10, 10) ?? 1.0,
                    EarlyStopping = args.Flag("early-stopping") ? EarlyStopping.AsSoonAsFull : EarlyStopping.Heuristic,
                })
                : Generator.Generate(model, prompts, options, onToken, vision: vision is null ? null : [vision]);
            if (beams > 1 && text is not null)
            {
                // Beam search picks its sequences at the end (it reads no stop condition): their text is decoded then.
                for (int s = 0; s < result.Sequences.Count; s++)
                {
                    text.ReadAll(s, result.Sequences[s].Ids);
                }
            }

            if (stream && text is not null)
            {
                stdout.Write(text.Release(0, finished: true));
            }

            if (json)
            {
                JsonOutput.Write(stdout, writer => WriteJson(writer, result, text));
            }
            else
            {
                WriteText(stdout, stderr, result, stream, text, perPrompt);
            }
        }

        return 0;
    }

    /// <summary>
    /// --greedy: the argmax, with only the penalties given on the command line. Otherwise generation_config.json's
    /// sampling defaults with each given option overriding its field; a sampling option turns sampling on.
    /// </summary>
    private static SamplingOptions SamplingFrom(Arguments args, GenerationConfig config, Tokenizer? tokenizer)
    {
        SamplingOverrides overrides = OverridesFrom(args);
        return overrides.Resolve(config).WithDryBreakers(overrides, tokenizer);
    }

    /// <summary>--prompt-lookup N: the most guesses a step, or null.</summary>
    internal static int? PromptLookupFrom(Arguments args) => args.Int("prompt-lookup", 1, PromptLookup.MaxDraftTokens);

    /// <summary>The sampling options given on the command line, over generation_config.json's defaults.</summary>
    internal static SamplingOverrides OverridesFrom(Arguments args)
    {
        var overrides = new SamplingOverrides
        {
            Greedy = args.Flag("greedy"),
            Temperature = args.Double("temperature", 0, 100),
            TopK = args.Int("top-k", 0),
            TopP = args.Double("top-p", double.Epsilon, 1),
            MinP = args.Double("min-p", 0, 1),
            TypicalP = args.Double("typical-p", double.Epsilon, 1),
            TopNSigma = args.Double("top-n-sigma", 0, 1e6),
            XtcProbability = args.Double("xtc-probability", 0, 1),
            XtcThreshold = args.Double("xtc-threshold", 0, 1),
            Mirostat = args.Int("mirostat", 0, 2),
            MirostatTau = args.Double("mirostat-tau", 0, 100),
            MirostatEta = args.Double("mirostat-eta", 0, 100),
            DryMultiplier = args.Double("dry-multiplier", 0, 100),
            DryBase = args.Double("dry-base", 1, 100),
            DryAllowedLength = args.Int("dry-allowed-length", 0, 1 << 20),
            DryPenaltyLastN = args.Int("dry-penalty-last-n", -1, int.MaxValue),
            DrySequenceBreakers = args.Has("dry-sequence-breaker") ? [.. args.Values("dry-sequence-breaker").Select(TextInput.Unescape)] : null,
            DynamicTemperatureRange = args.Double("dynatemp-range", 0, 100),
            DynamicTemperatureExponent = args.Double("dynatemp-exponent", 0, 100),
            RepetitionPenalty = args.Double("repetition-penalty", double.Epsilon, double.PositiveInfinity),
            PresencePenalty = args.Double("presence-penalty", -100, 100),
            FrequencyPenalty = args.Double("frequency-penalty", -100, 100),
            Seed = ParseSeed(args.Value("seed")),
            LogitBias = ParseLogitBias(args.Values("logit-bias")),
        };
        if (overrides.Greedy && s_samplingOptions.FirstOrDefault(args.Has) is string given)
        {
            throw new UsageException($"--greedy takes the argmax of the logits; --{given} does not apply to it");
        }

        return overrides;
    }

    /// <summary>Beam search's scoring: the log-softmax with only the penalties given on the command line.</summary>
    private static SamplingOptions PenaltiesOnly(Arguments args) => SamplingOptions.Greedy with
    {
        RepetitionPenalty = args.Double("repetition-penalty", double.Epsilon, double.PositiveInfinity) ?? 1,
        PresencePenalty = args.Double("presence-penalty", -100, 100) ?? 0,
        FrequencyPenalty = args.Double("frequency-penalty", -100, 100) ?? 0,
        LogitBias = ParseLogitBias(args.Values("logit-bias")),
    };

    /// <summary>llama.cpp's --logit-bias values: a token id, then its bias with its sign (15043+1, 13-100, 13+-5 is refused).</summary>
    private static Dictionary<int, float>? ParseLogitBias(IReadOnlyList<string> values)
    {
        var biases = new Dictionary<int, float>();
        foreach (string text in values)
        {
            int sign = text.IndexOfAny(['+', '-'], 1);
            if (sign < 0
                || !int.TryParse(text.AsSpan(0, sign), NumberStyles.None, CultureInfo.InvariantCulture, out int token)
                || !float.TryParse(text.AsSpan(sign + 1), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out float size)
                || size > LogitBias.Limit)
            {
                throw new UsageException($"--logit-bias '{text}' is not a token id followed by + or - and a bias up to {LogitBias.Limit} (15043+1, 13-100)");
            }

            biases[token] = text[sign] == '-' ? -size : size;
        }

        return biases.Count == 0 ? null : biases;
    }

    /// <summary>
    /// --json-object, --json-schema FILE, --choice, --regex, --grammar or --grammar-file, and the tools of a --messages file: each sequence its own rule, over masks the
    /// sequences share. With tools, calls are held to them (from the moment the model opens one), or, beside a JSON
    /// format, the answer is calls or an answer in that format, as the server holds them.
    /// </summary>
    private static Func<ITokenConstraint>? AnswerRule(Arguments args, Tokenizer? tokenizer, Qwen2Model model, ConversationInput? conversation)
    {
        JsonElement? tools = conversation?.Tools?.RootElement;
        if (!s_heldAnswers.Any(args.Has) && tools is null)
        {
            return null;
        }

        var constrained = new ConstrainedOutput(tokenizer!, model.Config.VocabSize, QwenModel.DefaultEosTokenIds(model, tokenizer));
        if (s_plainTextAnswers.FirstOrDefault(args.Has) is string plain)
        {
            // Plain text, not JSON: no tool calls beside it.
            string option = "--" + plain;
            if (tools is not null)
            {
                throw new UsageException($"{option} with tools in {conversation!.Source}: the answer would be calls or plain text; give one");
            }

            string? grammarFile = args.Value("grammar-file");
            string? grammar = grammarFile is null ? args.Value("grammar") : TextInput.ReadUtf8File(grammarFile).TrimStart('\uFEFF');
            try
            {
                return plain switch
                {
                    "choice" => constrained.Choice(args.Values("choice")),
                    "regex" => constrained.Regex(args.Value("regex")!),
                    _ => constrained.Grammar(grammar!),
                };
            }
            catch (ArgumentException e)
            {
                throw new UsageException($"{grammarFile ?? option}: {e.BareMessage()}");
            }
        }

        using JsonDocument? schema = args.Value("json-schema") is string given ? SchemaOf(given) : null;
        JsonElement? format = schema?.RootElement ?? (args.Flag("json-object") ? ConstrainedOutput.AnyObjectSchema : null);
        try
        {
            return tools is JsonElement list ? constrained.ToolCalls(Signatures(list, conversation!.Source), parallel: true, forced: null, format)
                : constrained.JsonSchema(format!.Value);
        }
        catch (ArgumentException e)
        {
            string source = args.Value("json-schema") is string named && !IsInline(named) ? named : args.Has("json-schema") ? "--json-schema" : "--json-object";
            throw new UsageException(e.ParamName == "schema" ? $"{source}: {e.BareMessage()}"
                : $"{conversation!.Source}: {e.ParamName}: {e.BareMessage()}");
        }
    }

    /// <summary>--json-schema's value: a file, or (as llama.cpp's --json-schema takes it) the schema's JSON itself.</summary>
    private static JsonDocument SchemaOf(string given)
    {
        if (!IsInline(given))
        {
            return TextInput.ReadJson(given);
        }

        try
        {
            return JsonDocument.Parse(given);
        }
        catch (JsonException e)
        {
            throw new UsageException($"--json-schema: the schema given inline is not valid JSON ({e.Message})");
        }
    }

    /// <summary>Whether --json-schema's value is the schema itself rather than a file's name.</summary>
    private static bool IsInline(string given) => given.TrimStart().StartsWith('{');

    /// <summary>A --messages file's tools (OpenAI's <c>{"type": "function", "function": {...}}</c>, or the function alone) as the functions a call may name.</summary>
    private static List<ToolSignature> Signatures(JsonElement tools, string source)
    {
        var signatures = new List<ToolSignature>();
        int i = 0;
        foreach (JsonElement tool in tools.EnumerateArray())
        {
            string where = $"tools[{i++}]";
            JsonElement function = tool.ValueKind == JsonValueKind.Object && tool.TryGetProperty("function", out JsonElement inner) ? inner : tool;
            if (function.ValueKind != JsonValueKind.Object || !function.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String)
            {
                throw new UsageException($"{source}: {where} has no function name");
            }

            JsonElement? parameters = function.TryGetProperty("parameters", out JsonElement given) ? given : null;
            bool strict = function.TryGetProperty("strict", out JsonElement flag) && flag.ValueKind == JsonValueKind.True;
            signatures.Add(new ToolSignature(name.GetString()!, parameters, strict, $"{where}.function.parameters"));
        }

        return signatures;
    }

    private static ulong? ParseSeed(string? text) => text is null ? null
        : ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed) ? seed
        : throw new UsageException($"--seed '{text}' is not a non-negative integer");

    /// <summary>
    /// Token ids for one prompt: ids as given; text with the tokenizer's special tokens (Llama's BOS); a chat
    /// message through the model's chat template, with the assistant turn opened.
    /// </summary>
    private static int[] Encode(string kind, string value, Tokenizer? tokenizer) => kind switch
    {
        "prompt-ids" => Arguments.ParseIds("prompt-ids", value),
        "prompt" => tokenizer!.Encode(value, addSpecialTokens: true),
        _ => tokenizer!.Encode(tokenizer.ApplyChatTemplate([("user", value)], addGenerationPrompt: true)),
    };

    private static string StopReasonName(StopReason reason) => reason switch
    {
        StopReason.Eos => "eos",
        StopReason.Stop => "stop",
        _ => "length",
    };

    private static void WriteJson(Utf8JsonWriter writer, GenerationResult result, StopStrings? text)
    {
        writer.WriteStartObject();
        writer.WriteStartArray("sequences");
        for (int s = 0; s < result.Sequences.Count; s++)
        {
            GeneratedSequence sequence = result.Sequences[s];
            writer.WriteStartObject();
            writer.WriteStartArray("ids");
            foreach (int id in sequence.Ids)
            {
                writer.WriteNumberValue(id);
            }

            writer.WriteEndArray();
            if (text is not null)
            {
                writer.WriteString("text", text.FinalText(s));
            }

            if (sequence.Score is double score)
            {
                writer.WriteNumber("score", score);
            }

            writer.WriteString("stop_reason", StopReasonName(sequence.StopReason));
            if (sequence.Logprobs is not null)
            {
                WriteLogprobs(writer, sequence.Logprobs);
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        if (result.Seed is ulong seed)
        {
            writer.WriteNumber("seed", seed);
        }
        else
        {
            writer.WriteNull("seed");
        }

        writer.WriteNumber("prefill_tokens_per_s", Math.Round(result.PrefillTokensPerSecond, 3));
        writer.WriteNumber("decode_tokens_per_s", Math.Round(result.DecodeTokensPerSecond, 3));
        if (result.LookupTokens.Drafted > 0)
        {
            writer.WriteNumber("lookup_drafted", result.LookupTokens.Drafted);
            writer.WriteNumber("lookup_accepted", result.LookupTokens.Accepted);
        }

        writer.WriteEndObject();
    }

    private static void WriteLogprobs(Utf8JsonWriter writer, IReadOnlyList<TokenLogprobs> logprobs)
    {
        writer.WriteStartArray("logprobs");
        foreach (TokenLogprobs token in logprobs)
        {
            writer.WriteStartObject();
            writer.WriteNumber("id", token.Id);
            writer.WriteNumberOrNull("logprob", token.Logprob);
            writer.WriteTop(token.Top);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    private static void WriteText(TextWriter stdout, TextWriter stderr, GenerationResult result, bool streamed, StopStrings? text, int perPrompt)
    {
        if (streamed)
        {
            stdout.WriteLine();
        }
        else
        {
            for (int s = 0; s < result.Sequences.Count; s++)
            {
                IReadOnlyList<int> ids = result.Sequences[s].Ids;
                // Which prompt (in command-line order) each sequence continues, and which of its samples or beams it is.
                string label = perPrompt == 1 ? $"prompt {s + 1}" : $"prompt {(s / perPrompt) + 1}, #{(s % perPrompt) + 1}";
                stdout.WriteLine($"[{label}] {(text is null ? string.Join(' ', ids) : text.FinalText(s))}");
            }
        }

        // The summary goes to stderr after the text, so the text must be out first.
        stdout.Flush();
        string reasons = string.Join(", ", result.Sequences.Select(s => $"{StopReasonName(s.StopReason)} after {s.Ids.Count} tokens"));
        string seed = result.Seed is ulong value ? $"; seed {value}" : "";
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{reasons}{seed}; {SpeedText(result)}]"));
    }

    /// <summary>
    /// "prefill 170.2 tokens/s, decode 30.1 tokens/s"; no decode figure when no decode step ran; a JIT build says its
    /// first figures include compiling the code (the AOT binary has nothing to compile).
    /// </summary>
    internal static string SpeedText(GenerationResult result)
    {
        var c = CultureInfo.InvariantCulture;
        string speed = string.Create(c, $"prefill {result.PrefillTokensPerSecond:F1} tokens/s");
        if (result.DecodeTokens > 0)
        {
            speed += string.Create(c, $", decode {result.DecodeTokensPerSecond:F1} tokens/s");
        }

        if (result.LookupTokens.Drafted > 0)
        {
            speed += string.Create(c, $", {result.LookupTokens.Accepted} of {result.LookupTokens.Drafted} looked-up guesses taken");
        }

        // A JIT build compiles methods as it goes (Native AOT compiles none at run time, and reports 0 here).
        return System.Runtime.JitInfo.GetCompiledMethodCount() > 0 ? speed + " (JIT build: includes compiling the code)" : speed;
    }
}
