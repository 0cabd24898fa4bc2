using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Qwen2;

/// <summary>
/// sentence-transformers' <c>Dense</c> module, applied to the pooled vector: y = f(W x + b), W [out_features, in_features]
/// (stella_en_1.5B_v5's <c>2_Dense_1024</c>: 1536 → 1024, f the identity). Its folder holds <c>config.json</c>
/// (<c>in_features</c>, <c>out_features</c>, <c>bias</c>, <c>activation_function</c>: torch's Identity or Tanh, Tanh when
/// unsaid as sentence-transformers' default) and <c>model.safetensors</c> (<c>linear.weight</c>, <c>linear.bias</c>; f32, f16
/// or bf16). The products are summed in float64: a vector a text, so exactness costs nothing.
/// </summary>
public sealed class EmbeddingDense
{
    /// <summary>torch's names of the activations QwenSharp applies, as sentence-transformers saves them.</summary>
    private const string Identity = "torch.nn.modules.linear.Identity", Tanh = "torch.nn.modules.activation.Tanh";

    private readonly float[] _weight;
    private readonly float[]? _bias;
    private readonly bool _tanh;

    private EmbeddingDense(string source, int inFeatures, int outFeatures, float[] weight, float[]? bias, bool tanh)
    {
        Source = source;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        _weight = weight;
        _bias = bias;
        _tanh = tanh;
    }

    /// <summary>The module's config.json, for messages.</summary>
    public string Source { get; }

    public int InFeatures { get; }

    public int OutFeatures { get; }

    /// <summary>f(W x + b) of one pooled vector of <see cref="InFeatures"/> values.</summary>
    public float[] Apply(ReadOnlySpan<float> x)
    {
        if (x.Length != InFeatures)
        {
            throw new ArgumentException($"{Source}: a vector of {x.Length} values into a Dense module of in_features {InFeatures}", nameof(x));
        }

        var y = new float[OutFeatures];
        for (int o = 0; o < OutFeatures; o++)
        {
            double sum = Float64Dot.Of(_weight.AsSpan(o * InFeatures, InFeatures), x, _bias?[o] ?? 0);
            y[o] = (float)(_tanh ? Math.Tanh(sum) : sum);
        }

        return y;
    }

    /// <summary>
    /// The module in <paramref name="directory"/>, or why it cannot be applied (an activation other than Identity or Tanh,
    /// weights only in a PyTorch pickle). A file that is missing or malformed is a load error naming it.
    /// </summary>
    public static (EmbeddingDense? Dense, string? Unsupported) Load(string directory)
    {
        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
        {
            QwenThrow.FileNotFound($"{configPath}: file not found (modules.json names a Dense module there)", configPath);
        }

        int inFeatures, outFeatures;
        bool hasBias;
        string activation;
        using (JsonDocument document = EmbeddingConfig.Parse(configPath))
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                QwenThrow.InvalidData($"{configPath}: expected an object, found {root.ValueKind}");
            }

            inFeatures = Features(root, "in_features", configPath);
            outFeatures = Features(root, "out_features", configPath);
            hasBias = !root.TryGetProperty("bias", out JsonElement bias) || bias.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw new InvalidDataException($"{configPath}: bias is {bias.GetRawText()}, expected true or false"),
            };
            activation = !root.TryGetProperty("activation_function", out JsonElement f) ? Tanh
                : f.ValueKind == JsonValueKind.String ? f.GetString()!
                : throw new InvalidDataException($"{configPath}: activation_function is {f.GetRawText()}, expected a name such as \"{Identity}\"");
        }

        if (activation is not (Identity or Tanh))
        {
            return (null, $"{configPath}: activation_function {activation} is not one QwenSharp applies ({Identity} and {Tanh} are)");
        }

        string weightsPath = Path.Combine(directory, "model.safetensors");
        if (!File.Exists(weightsPath))
        {
            string pickle = Path.Combine(directory, "pytorch_model.bin");
            if (File.Exists(pickle))
            {
                return (null, $"{pickle}: the Dense module's weights are a PyTorch pickle, which QwenSharp does not read; save them as model.safetensors (sentence-transformers 3 and later does)");
            }

            QwenThrow.FileNotFound($"{weightsPath}: file not found (the weights of the Dense module {configPath} describes)", weightsPath);
        }

        using SafeTensorsFile file = SafeTensorsFile.Open(weightsPath);
        float[] weight = Tensor(file, "linear.weight", [outFeatures, inFeatures]);
        float[]? biasValues = hasBias ? Tensor(file, "linear.bias", [outFeatures]) : null;
        return (new EmbeddingDense(configPath, inFeatures, outFeatures, weight, biasValues, activation == Tanh), null);
    }

    private static int Features(JsonElement root, string name, string configPath) =>
        root.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int n) && n > 0 && n <= 1 << 20
            ? n
            : throw new InvalidDataException($"{configPath}: {name} is {(value.ValueKind == JsonValueKind.Undefined ? "missing" : value.GetRawText())}, expected a whole number from 1 to {1 << 20}");

    private static float[] Tensor(SafeTensorsFile file, string name, long[] shape)
    {
        if (!file.TryGetView(name, out TensorView? view))
        {
            QwenThrow.InvalidData($"{file.Path}: no tensor '{name}' (a Dense module's weights are linear.weight and linear.bias)");
        }

        if (!view.Shape.SequenceEqual(shape) || view.DType is not (DType.F32 or DType.F16 or DType.BF16))
        {
            QwenThrow.InvalidData($"{file.Path}: tensor '{name}' is {view.DType} {view.ShapeText}, expected F32, F16 or BF16 {QwenThrow.Shape(shape)} (from config.json's in_features and out_features)");
        }

        return TensorValues.ToSingle(view);
    }
}
