using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>--device gpu through the command line: the fixtures' references, devices, and the errors of a missing or wrong device.</summary>
public sealed class CliGpuTests
{
    [SkippableFact]
    public void Generate_DeviceGpu_ReproducesReferenceGreedyIds()
    {
        TestBackends.RequireGpu();
        Reference reference = Reference.Load("tiny-qwen2");

        CliRunner.Result result = GenerateGreedy("tiny-qwen2", reference, "--device", "gpu");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(reference.GreedyNewIds, result.Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
    }

    [SkippableTheory]
    [InlineData("1")]
    [InlineData("3")]
    [InlineData("99")]
    public void Generate_GpuLayers_ReproducesReferenceGreedyIds(string gpuLayers)
    {
        // tiny-qwen2-f16-sharded has 3 layers: the last on the GPU; all three, the LM head on the CPU; everything.
        TestBackends.RequireGpu();
        Reference reference = Reference.Load("tiny-qwen2-f16-sharded");

        CliRunner.Result result = GenerateGreedy("tiny-qwen2-f16-sharded", reference, "--gpu-layers", gpuLayers);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(reference.GreedyNewIds, result.Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
    }

    [SkippableFact]
    public void GpuLayersAuto_FitsEveryLayer_ReproducesReferenceGreedyIds_AndSaysSo()
    {
        TestBackends.RequireGpu();
        Reference reference = Reference.Load("tiny-qwen2-f16-sharded");

        CliRunner.Result result = GenerateGreedy("tiny-qwen2-f16-sharded", reference, "--gpu-layers", "auto", "--context", "256");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(reference.GreedyNewIds, result.Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Contains(result.Stderr.Split('\n'), line => line.StartsWith("note: layers fitted to gpu, ", StringComparison.Ordinal)
            && line.EndsWith(": every layer and the LM head, beside a KV cache of 256 positions", StringComparison.Ordinal));

        CliRunner.Result info = CliRunner.Run("info", "--model", Fixtures.Directory("tiny-qwen2-f16-sharded"), "--gpu-layers", "auto", "--json");
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Equal(4, info.Json.GetProperty("gpu_layers").GetInt32());
    }

    /// <summary>generate of the fixture's reference prompt, greedy, as many new tokens as its reference, JSON out, with <paramref name="placement"/>'s options.</summary>
    private static CliRunner.Result GenerateGreedy(string fixture, Reference reference, params string[] placement) =>
        CliRunner.Run(["generate", "--model", Fixtures.Directory(fixture), "--prompt-ids", string.Join(",", reference.PromptIds), "--greedy", "--ignore-eos",
            "--max-new-tokens", reference.GreedyNewIds.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json", .. placement]);

    [Fact]
    public void GpuLayers_NeitherCountNorAuto_OneLineAndExitCode2()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--prompt-ids", "1", "--gpu-layers", "most");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal("qwensharp generate: error: --gpu-layers 'most' is not a count of layers from 0 to 100000, or auto", Assert.Single(result.ErrorLines));
    }

    [SkippableFact]
    public void Info_GpuLayers_SaysWhereTheLayersRun()
    {
        TestBackends.RequireGpu();

        CliRunner.Result result = CliRunner.Run("info", "--model", Fixtures.Directory("tiny-qwen2-f16-sharded"), "--gpu-layers", "2", "--json");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(2, result.Json.GetProperty("gpu_layers").GetInt32());
        Assert.Matches(@"^gpu, .* \(2 of 4 layers, LM head counted\) \+ cpu, ", result.Json.GetProperty("backend").GetString());
    }

    [Fact]
    public void Generate_GpuLayersWithDeviceCpu_OneLineAndExitCode2()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--prompt-ids", "1", "--device", "cpu", "--gpu-layers", "2");

        Assert.Equal(2, result.ExitCode);
        Assert.Equal("qwensharp generate: error: --gpu-layers places layers on a GPU: it goes with --device gpu or gpu:N (or alone), not --device cpu", Assert.Single(result.ErrorLines));
    }

    [SkippableFact]
    public void Score_DeviceGpu_MeanNllMatchesReference()
    {
        TestBackends.RequireGpu();
        Reference reference = Reference.Load("tiny-qwen2-f16-sharded");

        CliRunner.Result result = CliRunner.Run("score", "--model", Fixtures.Directory("tiny-qwen2-f16-sharded"), "--prompt-ids", string.Join(",", reference.PromptIds),
            "--json", "--device", "gpu:0");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(reference.PromptMeanNll, result.Json.GetProperty("mean_nll").GetDouble(), 1e-4);
    }

    [SkippableFact]
    public void Devices_Json_ListsTheDefaultDeviceWithItsSubgroupSize()
    {
        TestBackends.RequireGpu();

        CliRunner.Result result = CliRunner.Run("devices", "--json");

        Assert.Equal(0, result.ExitCode);
        System.Text.Json.JsonElement[] devices = [.. result.Json.GetProperty("devices").EnumerateArray()];
        System.Text.Json.JsonElement chosen = Assert.Single(devices, d => d.GetProperty("default").GetBoolean());
        Assert.True(chosen.GetProperty("subgroup_size").GetInt32() > 0);
        Assert.True(chosen.GetProperty("memory_bytes").GetInt64() > 0);
        Assert.Equal(QwenSharp.Cpu.Kernels.CpuIdentity.Describe(), result.Json.GetProperty("cpu").GetString());
    }

    [Theory]
    [InlineData("tpu", "--device 'tpu' is not one of cpu, gpu, gpu:N")]
    [InlineData("gpu:x", "--device 'gpu:x' is not one of cpu, gpu, gpu:N")]
    public void Generate_UnknownDevice_OneLineAndExitCode2(string device, string message)
    {
        CliRunner.Result result = CliRunner.Run("generate", "--prompt-ids", "1", "--device", device);

        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"qwensharp generate: error: {message}", Assert.Single(result.ErrorLines));
    }

    [SkippableFact]
    public void Generate_DeviceIndexBeyondTheList_OneLineAndExitCode2()
    {
        TestBackends.RequireGpu();

        CliRunner.Result result = CliRunner.Run("generate", "--prompt-ids", "1", "--device", "gpu:99");

        Assert.Equal(2, result.ExitCode);
        Assert.Matches(@"--device gpu:99: there are \d+ Vulkan devices, gpu:0 to gpu:\d+ \(see qwensharp devices\)", Assert.Single(result.ErrorLines));
    }

    [Fact]
    public void Generate_NoVulkanLoader_NamesTheLoaderAndHowToInstallOne()
    {
        // A real process, so the loader is looked up afresh under the environment variable.
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "qwensharp.dll"));
        foreach (string arg in new[] { "generate", "--prompt-ids", "1", "--device", "gpu" })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["QWENSHARP_VULKAN_LOADER"] = "/nonexistent/libvulkan.so.1";
        using var process = System.Diagnostics.Process.Start(start)!;
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();

        Assert.Equal(2, process.ExitCode);
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => !l.StartsWith("note:", StringComparison.Ordinal));
        Assert.Contains("the Vulkan loader /nonexistent/libvulkan.so.1 (from QWENSHARP_VULKAN_LOADER) was not found", line);
        Assert.Contains("mesa-vulkan-drivers", line);
    }
}
