using System.Numerics.Tensors;
using Microsoft.Extensions.AI;
using QwenSharp;

// An embedding model folder or GGUF file (gte-Qwen2-1.5B-instruct, jina-code-embeddings-1.5b, ...); without one, the
// bundled demo model, whose vectors run the same code but rank by chance.
string model = args.Length > 0 ? args[0] : Path.Combine("models", "stories260K");
string question = args.Length > 1 ? args[1] : "How long should bread dough be kneaded?";
string[] passages =
[
    "Knead the dough for about ten minutes, until it is smooth and springs back.",
    "The tide comes in and goes out twice a day.",
    "Preheat the oven to 220 degrees before the loaf goes in.",
];

using QwenModel qwen = await QwenModel.LoadAsync(model);
using IEmbeddingGenerator<string, Embedding<float>> embedder = qwen.AsEmbeddingGenerator();

// gte-Qwen2's queries carry an instruction; its passages do not.
Embedding<float> query = await embedder.GenerateAsync($"Instruct: Given a question, find the passage that answers it\nQuery: {question}");
GeneratedEmbeddings<Embedding<float>> vectors = await embedder.GenerateAsync(passages);

foreach ((string passage, float score) in passages
             .Select((p, i) => (p, TensorPrimitives.CosineSimilarity(query.Vector.Span, vectors[i].Vector.Span)))
             .OrderByDescending(x => x.Item2))
{
    Console.WriteLine($"{score:F3}  {passage}");
}
