using QwenSharp;

// The bundled demo model (a story model, llama2.c's stories260K); any Hugging Face Qwen2 folder, GGUF file or Hub name
// ("Qwen/Qwen2.5-0.5B-Instruct", downloaded into the Hugging Face cache) works the same.
string folder = args.Length > 0 ? args[0] : Path.Combine("models", "stories260K");
using QwenModel model = await QwenModel.LoadAsync(folder);

var options = new TextGenerationOptions { MaxNewTokens = 40, Sampling = new() { Temperature = 0.8, Seed = 42 } };
await foreach (GenerationUpdate update in model.GenerateAsync("Once upon a time", options))
{
    Console.Write(update.Text);
}

Console.WriteLine();
