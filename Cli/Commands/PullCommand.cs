namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp pull</c>: downloads a model from the Hugging Face Hub into its cache (huggingface_hub's layout, shared
/// with transformers and vLLM) and prints its local path; --model takes the same name afterwards, offline.
/// </summary>
internal sealed class PullCommand : ICommand
{
    public string Name => "pull";

    public string Summary => "download a model from the Hugging Face Hub into its cache (or update it) and print its path";

    public string Usage => "qwensharp pull OWNER/NAME[@REVISION][:TAG]";

    public IReadOnlyList<OptionSpec> Options { get; } = [];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp pull Qwen/Qwen2.5-0.5B-Instruct",
        "qwensharp pull Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0",
        "qwensharp pull hf.co/Qwen/Qwen2-VL-2B-Instruct@main",
    ];

    public int MaxPositionals => 1;

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string model = args.Positionals is [string only] ? only : throw new UsageException("pull takes one model name, such as Qwen/Qwen2.5-0.5B-Instruct");
        if (!Hub.HubReference.TryParse(model, out _))
        {
            throw new UsageException($"'{model}' is not a Hugging Face model name (OWNER/NAME, optionally @REVISION and :TAG such as Q4_K_M)");
        }

        stdout.WriteLine(HubModels.Resolve(model, stderr, update: true));
        return 0;
    }
}
