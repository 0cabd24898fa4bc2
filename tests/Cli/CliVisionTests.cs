using System.Text.Json;
using QwenSharp.Tests.Qwen2VL;

namespace QwenSharp.Tests.Cli;

/// <summary>The command line with Qwen2-VL: conversations with pictures from files, against the float64 reference.</summary>
public sealed class CliVisionTests
{
    private static string Model => VisionFixture.ModelDirectory;

    [Theory]
    [InlineData("1_image_a")]
    [InlineData("2_image_b")]
    [InlineData("4_text_only")]
    public void Generate_messages_gives_the_reference_greedy_ids(string name)
    {
        using JsonDocument reference = VisionFixture.Case(name);
        int[] expected = VisionFixture.Ints(reference.RootElement.GetProperty("greedy_new_ids"));
        CliRunner.Result result = CliRunner.Run("generate", "--model", Model, "--messages", VisionFixture.Messages(name),
            "--greedy", "--ignore-eos", "--max-new-tokens", expected.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        int[] ids = [.. result.Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())];
        double[] margins = [.. reference.RootElement.GetProperty("greedy_top2_margins").EnumerateArray().Select(e => e.GetDouble())];
        int tie = Array.FindIndex(margins, m => m < 1e-3);
        int compare = tie < 0 ? expected.Length : tie + 1;
        Assert.Equal(expected[..compare], ids[..compare]);
    }

    [Fact]
    public void Generate_image_with_chat_is_the_one_picture_user_turn()
    {
        using JsonDocument reference = VisionFixture.Case("1_image_a");
        int[] expected = VisionFixture.Ints(reference.RootElement.GetProperty("greedy_new_ids"));
        CliRunner.Result result = CliRunner.Run("generate", "--model", Model, "--image", VisionFixture.Image("a_56x56_rgb.png"),
            "--chat", "What is in this picture?", "--greedy", "--ignore-eos", "--max-new-tokens", "4", "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(expected[..4], result.Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Tokenize_messages_expands_picture_pads_as_the_processor(string name)
    {
        using JsonDocument reference = VisionFixture.Case(name);
        CliRunner.Result result = CliRunner.Run("tokenize", "--model", Model, "--messages", VisionFixture.Messages(name), "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(VisionFixture.Ints(reference.RootElement.GetProperty("prompt_ids")), result.Json.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(reference.RootElement.GetProperty("prompt_text").GetString(), result.Json.GetProperty("text").GetString());
    }

    public static TheoryData<string> Cases() => [.. VisionFixture.Cases];

    [Theory]
    [InlineData("1_image_a")]
    [InlineData("2_image_b")]
    public void Score_messages_mean_nll_matches_the_reference(string name)
    {
        using JsonDocument reference = VisionFixture.Case(name);
        CliRunner.Result result = CliRunner.Run("score", "--model", Model, "--messages", VisionFixture.Messages(name), "--generation-prompt", "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(reference.RootElement.GetProperty("prompt_mean_nll").GetDouble(), result.Json.GetProperty("mean_nll").GetDouble(), 1e-3);

        // A picture's pads are positions without a scored next token.
        int pads = VisionFixture.Ints(reference.RootElement.GetProperty("prompt_ids")).Count(id => id == 151655);
        Assert.Equal(pads, result.Json.GetProperty("positions").EnumerateArray().Count(p => p.TryGetProperty("logprob", out JsonElement l) && l.ValueKind == JsonValueKind.Null));
    }

    [Fact]
    public void Chat_image_attaches_a_picture_to_the_next_message()
    {
        using JsonDocument reference = VisionFixture.Case("1_image_a");
        int[] expected = VisionFixture.Ints(reference.RootElement.GetProperty("greedy_new_ids"));
        CliRunner.Result result = CliRunner.RunWithInput($"/image {VisionFixture.Image("a_56x56_rgb.png")}\nWhat is in this picture?\n",
            "chat", "--model", Model, "--greedy", "--max-new-tokens", "4");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var tokenizer = Tokenization.Tokenizer.FromDirectory(Model);
        Assert.Equal(tokenizer.Decode(expected[..4]), result.Stdout.Trim());
    }

    [Fact]
    public void A_picture_for_a_text_model_is_refused()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--model", Support.Fixtures.Directory("qwen2.5-0.5b-instruct"), "--image", VisionFixture.Image("a_56x56_rgb.png"), "--chat", "Hi");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("not a vision model", Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public void Image_without_one_chat_is_a_usage_error()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--model", Model, "--image", VisionFixture.Image("a_56x56_rgb.png"), "--prompt", "Hi");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--image goes with exactly one --chat", Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("text", "not a PNG or JPEG image")]
    [InlineData("truncated", "corrupt or truncated")]
    [InlineData("bomb", "more than the")]
    [InlineData("missing", "not found")]
    public void A_bad_picture_is_one_line_and_exit_2(string kind, string expected)
    {
        string dir = Support.Fixtures.TempDirectory();
        string path = Path.Combine(dir, "picture.png");
        switch (kind)
        {
            case "text":
                File.WriteAllText(path, "this is not a picture");
                break;
            case "truncated":
                byte[] png = File.ReadAllBytes(VisionFixture.Image("b_100x70_rgb.png"));
                File.WriteAllBytes(path, png[..(png.Length / 2)]);
                break;
            case "bomb":
                File.WriteAllBytes(path, HugePngHeader(40000, 40000));
                break;
        }

        CliRunner.Result result = CliRunner.Run("generate", "--model", Model, "--image", path, "--chat", "Hi", "--max-new-tokens", "1");
        Assert.Equal(2, result.ExitCode);
        string line = Assert.Single(result.ErrorLines);
        Assert.Contains(expected, line, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", line, StringComparison.Ordinal);
    }

    /// <summary>A PNG whose header claims <paramref name="width"/> x <paramref name="height"/> pixels, with one tiny data chunk.</summary>
    private static byte[] HugePngHeader(int width, int height)
    {
        var bytes = new List<byte>([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        void Chunk(string type, byte[] data)
        {
            byte[] typeBytes = System.Text.Encoding.ASCII.GetBytes(type);
            bytes.AddRange(BigEndian(data.Length));
            bytes.AddRange(typeBytes);
            bytes.AddRange(data);
            bytes.AddRange(BigEndian((int)Crc32([.. typeBytes, .. data])));
        }

        Chunk("IHDR", [.. BigEndian(width), .. BigEndian(height), 8, 2, 0, 0, 0]);
        Chunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        Chunk("IEND", []);
        return [.. bytes];
    }

    private static byte[] BigEndian(int value) => [(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value];

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
            }
        }

        return ~crc;
    }
}
