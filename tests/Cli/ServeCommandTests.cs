using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary><c>qwensharp serve</c> as a user runs it: bad options refused in one line, and a real process that serves, then drains on SIGTERM and exits 0.</summary>
public sealed class ServeCommandTests
{
    [Theory]
    [InlineData("--host", "example.com", "--host 'example.com' is not an IP address")]
    [InlineData("--port", "70000", "--port")]
    [InlineData("--max-concurrent", "0", "--max-concurrent")]
    [InlineData("--prompt-lookup", "7", "--prompt-lookup")]
    [InlineData("--kv-cache-type", "f8", "--kv-cache-type 'f8' is not one of f32, f16, bf16")]
    [InlineData("--stored-responses", "-1", "--stored-responses")]
    public void BadOptionsAreOneLine(string option, string value, string expected)
    {
        CliRunner.Result result = CliRunner.Run("serve", option, value);

        Assert.Equal(2, result.ExitCode);
        string line = Assert.Single(result.ErrorLines);
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public void SlotSavePathThatIsAFile_IsOneLine_AndTheFileKept()
    {
        string file = Path.Combine(Fixtures.TempDirectory(), "notes.txt");
        File.WriteAllText(file, "mine");
        CliRunner.Result result = CliRunner.Run("serve", "--slot-save-path", file);

        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"qwensharp serve: error: --slot-save-path {file}: is a file; give a folder for the slot files", Assert.Single(result.ErrorLines));
        Assert.Equal("mine", File.ReadAllText(file));
    }

    [Fact]
    public void AKvCacheTooLargeForMemory_NamesTheSmallerTypesTheModelCanTake()
    {
        // Heads of 64 (whole blocks): f16, q8_0 or q4_0 from f32, q8_0 or q4_0 from the halves, q4_0 from q8_0, nothing
        // smaller than q4_0.
        using QwenSharp.Backend.IBackend backend = TestBackends.Create("cpu");
        using var model = QwenSharp.Qwen2.Qwen2Model.Load(RandomKQuantModel.Qwen2Folder.Value, backend);
        Assert.Equal(", or store it in half the memory (--kv-cache-type f16), a quarter (q8_0) or a seventh (q4_0)", QwenSharp.Cli.Commands.ServeCommand.SmallerCacheHint(model));
        model.KvCacheType = QwenSharp.Formats.DType.BF16;
        Assert.Equal(", or store it in about half the memory (--kv-cache-type q8_0) or a quarter (q4_0)", QwenSharp.Cli.Commands.ServeCommand.SmallerCacheHint(model));
        model.KvCacheType = QwenSharp.Formats.DType.Q8_0;
        Assert.Equal(", or store it in about half the memory (--kv-cache-type q4_0)", QwenSharp.Cli.Commands.ServeCommand.SmallerCacheHint(model));
        model.KvCacheType = QwenSharp.Formats.DType.Q4_0;
        Assert.Equal("", QwenSharp.Cli.Commands.ServeCommand.SmallerCacheHint(model));

        // Heads of 8 take no blocks.
        using var tiny = QwenSharp.Qwen2.Qwen2Model.Load(Fixtures.ModelDirectory("tiny-qwen2"), backend);
        Assert.Equal(", or store it in half the memory (--kv-cache-type f16)", QwenSharp.Cli.Commands.ServeCommand.SmallerCacheHint(tiny));
        tiny.KvCacheType = QwenSharp.Formats.DType.F16;
        Assert.Equal("", QwenSharp.Cli.Commands.ServeCommand.SmallerCacheHint(tiny));
    }

    [Fact]
    public void APortInUseIsOneLine()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;

        CliRunner.Result result = CliRunner.Run("serve", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"cannot listen on 127.0.0.1:{port}", Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AProcessServesThenDrainsOnSigtermAndExitsZero()
    {
        // A LoRA adapter named NAME=PATH, which requests pick by that name (LoraServerTests checks what adapters give).
        QwenSharp.Qwen2.Qwen2Config demo = QwenSharp.Qwen2.Qwen2Config.Load(Path.Combine(Fixtures.DemoModel, QwenSharp.Qwen2.Qwen2Config.FileName));
        string adapter = RandomLoraAdapter.Make(demo, 4, 8, 31, [QwenSharp.Lora.LoraTarget.Q], [0]).WritePeft(Path.Combine(Fixtures.TempDirectory(), "peft"));
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in (string[])[Path.Combine(AppContext.BaseDirectory, "qwensharp.dll"), "serve", "--port", "0", "--batch-invariant", "--kv-cache-type", "f16",
            "--lora", $"story={adapter}", "--lora-scale", "0", "--stored-responses", "0"])
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        try
        {
            string? address = null;
            bool adapterListed = false;
            while (await process.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(1)) is string line)
            {
                adapterListed |= line.Contains($"LoRA adapter 0: 'story' at scale 0 ({adapter})", StringComparison.Ordinal);
                if (line.Contains("listening on ", StringComparison.Ordinal))
                {
                    address = line.Split("listening on ")[1].Split(' ')[0];
                    Assert.Contains(", batch-invariant", line, StringComparison.Ordinal);
                    Assert.Contains(" tokens in f16", line, StringComparison.Ordinal);
                    break;
                }
            }

            Assert.NotNull(address);
            Assert.True(adapterListed, "serve did not list its LoRA adapter by the name given");
            using var http = new HttpClient { BaseAddress = new Uri(address) };
            using var body = new StringContent("{\"prompt\": \"Once upon a time\", \"max_tokens\": 8, \"temperature\": 0, \"model\": \"story\"}");
            using HttpResponseMessage response = await http.PostAsync("/v1/completions", body);
            using JsonDocument answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal(8, answer.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
            // --stored-responses 0: the Responses API keeps nothing, and says so.
            using var responsesBody = new StringContent("{\"input\": \"Once\", \"previous_response_id\": \"resp_1\"}");
            using HttpResponseMessage unstored = await http.PostAsync("/v1/responses", responsesBody);
            using JsonDocument unstoredAnswer = JsonDocument.Parse(await unstored.Content.ReadAsStringAsync());
            Assert.Contains("--stored-responses 0", unstoredAnswer.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);

            using (Process kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync();
            }

            string rest = await process.StandardError.ReadToEndAsync().WaitAsync(TimeSpan.FromMinutes(1));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(0, process.ExitCode);
            Assert.Contains("stopped", rest, StringComparison.Ordinal);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }
    }
}
