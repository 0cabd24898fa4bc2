using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QwenSharp.Gpu.Vulkan;

namespace QwenSharp.Gpu;

/// <summary>
/// Collects a step's work (dispatches, copies, the barriers between them) and submits it as one command
/// buffer when results are read (<see cref="Flush"/>). A recorded command buffer is kept and submitted
/// again when the next step's work is the same, command for command: decode steps of one batch size differ
/// only in the data behind their buffer addresses, so after the first they cost one vkQueueSubmit and no
/// recording (the Vulkan analogue of a replayed CUDA graph).
/// Barriers come from tracking: a dispatch that reads what an earlier one wrote since the last barrier, or
/// writes what one read or wrote, gets a barrier before it; independent work (q, k and v projections) runs
/// without one.
/// </summary>
internal sealed unsafe class CommandStream : IDisposable
{
    private const int CachedRecordings = 6;

    /// <summary>How long one submitted step may take before the device is taken for hung.</summary>
    private static readonly TimeSpan s_stepTimeout = TimeSpan.FromMinutes(10);

    private readonly VulkanDevice _device;
    private readonly ShaderLibrary _shaders;
    private readonly List<GpuBuffer> _read = [];
    private readonly List<GpuBuffer> _written = [];
    private readonly Recording[] _recordings = new Recording[CachedRecordings];
    private StepCommand[] _commands = new StepCommand[256];
    private int _count;
    private int _markCount = -1;
    private readonly List<GpuBuffer> _markRead = [];
    private readonly List<GpuBuffer> _markWritten = [];
    private ulong _pool;
    private ulong _fence;
    private long _submits;

    public CommandStream(VulkanDevice device, ShaderLibrary shaders)
    {
        _device = device;
        _shaders = shaders;
        DeviceApi api = device.Api;
        var poolInfo = new VkCommandPoolCreateInfo
        {
            SType = Vk.STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
            Flags = (uint)Vk.COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
            QueueFamilyIndex = device.QueueFamily,
        };
        ulong pool;
        VkCheck.Ok(api.CreateCommandPool(device.Handle, &poolInfo, 0, &pool), "vkCreateCommandPool");
        _pool = pool;
        var fenceInfo = new VkFenceCreateInfo { SType = Vk.STRUCTURE_TYPE_FENCE_CREATE_INFO };
        ulong fence;
        VkCheck.Ok(api.CreateFence(device.Handle, &fenceInfo, 0, &fence), "vkCreateFence");
        _fence = fence;
        nint* buffers = stackalloc nint[CachedRecordings];
        var allocate = new VkCommandBufferAllocateInfo
        {
            SType = Vk.STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
            CommandPool = pool,
            Level = Vk.COMMAND_BUFFER_LEVEL_PRIMARY,
            CommandBufferCount = CachedRecordings,
        };
        VkCheck.Ok(api.AllocateCommandBuffers(device.Handle, &allocate, buffers), "vkAllocateCommandBuffers");
        for (int i = 0; i < CachedRecordings; i++)
        {
            _recordings[i] = new Recording(buffers[i]);
        }
    }

    /// <summary>True while work waits for the next <see cref="Flush"/>.</summary>
    public bool HasPending => _count > 0;

    /// <summary>Submissions so far, and how many of them replayed a kept recording (for tests and bench).</summary>
    public long Submits => _submits;

    public long Replays { get; private set; }

    /// <summary>Commands added since the stream was made; never goes back, so it tells whether anything came after a mark.</summary>
    public long Recorded { get; private set; }

    /// <summary>
    /// Remembers this point of the step (the commands and the barrier tracking), so that what is added after it can be
    /// taken back with <see cref="RewindToMark"/> and recorded again as part of a later dispatch.
    /// </summary>
    public void Mark()
    {
        _markCount = _count;
        _markRead.Clear();
        _markRead.AddRange(_read);
        _markWritten.Clear();
        _markWritten.AddRange(_written);
    }

    /// <summary>
    /// True when the mark is in the step being recorded (no flush since) and nothing was added after the command that made
    /// <see cref="Recorded"/> equal <paramref name="recorded"/>.
    /// </summary>
    public bool CanRewind(long recorded) => _markCount >= 0 && Recorded == recorded;

    /// <summary>Drops the commands added since <see cref="Mark"/>, and the barriers they would have needed.</summary>
    public void RewindToMark()
    {
        if (_markCount < 0 || _markCount > _count)
        {
            throw new InvalidOperationException("no mark in the step being recorded to rewind to");
        }

        _count = _markCount;
        _markCount = -1;
        _read.Clear();
        _read.AddRange(_markRead);
        _written.Clear();
        _written.AddRange(_markWritten);
    }

    /// <summary>Dispatches and barriers in the last submitted step (kernel launches are what a small model's decode waits on).</summary>
    public (int Dispatches, int Barriers) LastStep { get; private set; }

    /// <summary>
    /// Adds one dispatch of <paramref name="groups"/> workgroups (split into x and y past the device's limit on x)
    /// of <paramref name="pipeline"/>, with <paramref name="push"/> as its push constants.
    /// </summary>
    public void Dispatch<TPush>(ulong pipeline, in TPush push, long groups, ReadOnlySpan<GpuBuffer> reads, ReadOnlySpan<GpuBuffer> writes)
        where TPush : unmanaged
    {
        if (groups <= 0)
        {
            return;
        }

        uint x = (uint)Math.Min(groups, _device.MaxGroupsX);
        long y = (groups + x - 1) / x;
        if (y > _device.MaxGroupsY)
        {
            throw new GpuException($"{_device.Info.Name}: a dispatch of {groups} workgroups exceeds the device's grid ({_device.MaxGroupsX} x {_device.MaxGroupsY})");
        }

        Track(reads, writes);
        ref StepCommand command = ref Append(CommandKind.Dispatch);
        command.Pipeline = pipeline;
        command.GroupsX = x;
        command.GroupsY = (uint)y;
        command.PushSize = sizeof(TPush);
        if (sizeof(TPush) > ShaderLibrary.PushConstantBytes)
        {
            throw new InvalidOperationException($"push constants of {sizeof(TPush)} bytes exceed {ShaderLibrary.PushConstantBytes}");
        }

        TPush copy = push;
        new ReadOnlySpan<byte>(&copy, sizeof(TPush)).CopyTo(command.Push);
    }

    /// <summary>Adds a copy of <paramref name="bytes"/> bytes between buffers.</summary>
    public void Copy(GpuBuffer source, long sourceOffset, GpuBuffer destination, long destinationOffset, long bytes)
    {
        if (bytes <= 0)
        {
            return;
        }

        Track([source], [destination]);
        ref StepCommand command = ref Append(CommandKind.Copy);
        command.Source = source.Handle;
        command.Destination = destination.Handle;
        command.SourceOffset = (ulong)sourceOffset;
        command.DestinationOffset = (ulong)destinationOffset;
        command.Bytes = (ulong)bytes;
    }

    /// <summary>Submits everything added since the last flush as one command buffer and waits for it.</summary>
    public void Flush()
    {
        if (_count == 0)
        {
            return;
        }

        Recording recording = FindOrRecord();
        int dispatches = 0, barriers = 0;
        foreach (ref readonly StepCommand command in _commands.AsSpan(0, _count))
        {
            dispatches += command.Kind == CommandKind.Dispatch ? 1 : 0;
            barriers += command.Kind == CommandKind.Barrier ? 1 : 0;
        }

        LastStep = (dispatches, barriers);
        DeviceApi api = _device.Api;
        nint commandBuffer = recording.CommandBuffer;
        var submit = new VkSubmitInfo { SType = Vk.STRUCTURE_TYPE_SUBMIT_INFO, CommandBufferCount = 1, PCommandBuffers = (nint)(&commandBuffer) };
        ulong fence = _fence;
        _count = 0;
        _markCount = -1;
        _read.Clear();
        _written.Clear();
        VkCheck.Ok(api.ResetFences(_device.Handle, 1, &fence), "vkResetFences");
        VkCheck.Ok(api.QueueSubmit(_device.Queue, 1, &submit, fence), "vkQueueSubmit");
        _submits++;
        long deadline = Environment.TickCount64 + (long)s_stepTimeout.TotalMilliseconds;
        while (true)
        {
            int result = api.WaitForFences(_device.Handle, 1, &fence, 1, 1_000_000_000);
            if (result == Vk.SUCCESS)
            {
                return;
            }

            if (result != Vk.TIMEOUT)
            {
                VkCheck.Fail(result, $"vkWaitForFences on {_device.Info.Name}");
            }

            if (Environment.TickCount64 > deadline)
            {
                throw new GpuException($"{_device.Info.Name}: a step did not finish within {s_stepTimeout.TotalMinutes:F0} minutes; the device is taken for hung");
            }
        }
    }

    /// <summary>Forgets every kept recording (a buffer they name is being freed).</summary>
    public void DropRecordings()
    {
        foreach (Recording recording in _recordings)
        {
            recording.Count = 0;
            recording.LastUse = 0;
        }
    }

    private ref StepCommand Append(CommandKind kind)
    {
        if (_count == _commands.Length)
        {
            Array.Resize(ref _commands, _commands.Length * 2);
        }

        ref StepCommand command = ref _commands[_count++];
        Recorded++;
        command = default;
        command.Kind = kind;
        return ref command;
    }

    private void Track(ReadOnlySpan<GpuBuffer> reads, ReadOnlySpan<GpuBuffer> writes)
    {
        bool hazard = false;
        foreach (GpuBuffer read in reads)
        {
            hazard |= _written.Contains(read);
        }

        foreach (GpuBuffer write in writes)
        {
            hazard |= _written.Contains(write) || _read.Contains(write);
        }

        if (hazard)
        {
            Append(CommandKind.Barrier);
            _read.Clear();
            _written.Clear();
        }

        foreach (GpuBuffer read in reads)
        {
            _read.Add(read);
        }

        foreach (GpuBuffer write in writes)
        {
            _written.Add(write);
        }
    }

    private Recording FindOrRecord()
    {
        ReadOnlySpan<byte> commands = MemoryMarshal.AsBytes(_commands.AsSpan(0, _count));
        Recording? oldest = null;
        foreach (Recording recording in _recordings)
        {
            if (recording.Count == _count && MemoryMarshal.AsBytes(recording.Commands.AsSpan(0, _count)).SequenceEqual(commands))
            {
                recording.LastUse = _submits + 1;
                Replays++;
                return recording;
            }

            if (oldest is null || recording.LastUse < oldest.LastUse)
            {
                oldest = recording;
            }
        }

        Record(oldest!);
        return oldest!;
    }

    private void Record(Recording recording)
    {
        DeviceApi api = _device.Api;
        nint cb = recording.CommandBuffer;
        recording.Count = 0;
        VkCheck.Ok(api.ResetCommandBuffer(cb, 0), "vkResetCommandBuffer");
        var begin = new VkCommandBufferBeginInfo { SType = Vk.STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
        VkCheck.Ok(api.BeginCommandBuffer(cb, &begin), "vkBeginCommandBuffer");
        ulong bound = 0;
        for (int i = 0; i < _count; i++)
        {
            ref StepCommand c = ref _commands[i];
            switch (c.Kind)
            {
                case CommandKind.Dispatch:
                    if (c.Pipeline != bound)
                    {
                        api.CmdBindPipeline(cb, Vk.PIPELINE_BIND_POINT_COMPUTE, c.Pipeline);
                        bound = c.Pipeline;
                    }

                    fixed (byte* push = &c.Push[0])
                    {
                        api.CmdPushConstants(cb, _shaders.Layout, (uint)Vk.SHADER_STAGE_COMPUTE_BIT, 0, (uint)c.PushSize, push);
                    }

                    api.CmdDispatch(cb, c.GroupsX, c.GroupsY, 1);
                    break;
                case CommandKind.Copy:
                    var region = new VkBufferCopy { SrcOffset = c.SourceOffset, DstOffset = c.DestinationOffset, Size = c.Bytes };
                    api.CmdCopyBuffer(cb, c.Source, c.Destination, 1, &region);
                    break;
                default:
                    Barrier(cb, (uint)(Vk.PIPELINE_STAGE_COMPUTE_SHADER_BIT | Vk.PIPELINE_STAGE_TRANSFER_BIT));
                    break;
            }
        }

        // Make the last writes visible to the host, which reads the read-back buffer after the fence.
        Barrier(cb, (uint)(Vk.PIPELINE_STAGE_COMPUTE_SHADER_BIT | Vk.PIPELINE_STAGE_TRANSFER_BIT | Vk.PIPELINE_STAGE_HOST_BIT));
        VkCheck.Ok(api.EndCommandBuffer(cb), "vkEndCommandBuffer");
        if (recording.Commands.Length < _count)
        {
            recording.Commands = new StepCommand[_commands.Length];
        }

        _commands.AsSpan(0, _count).CopyTo(recording.Commands);
        recording.Count = _count;
        recording.LastUse = _submits + 1;
    }

    private void Barrier(nint cb, uint destinationStages)
    {
        var barrier = new VkMemoryBarrier
        {
            SType = Vk.STRUCTURE_TYPE_MEMORY_BARRIER,
            SrcAccessMask = (uint)(Vk.ACCESS_SHADER_WRITE_BIT | Vk.ACCESS_TRANSFER_WRITE_BIT),
            DstAccessMask = (uint)(Vk.ACCESS_SHADER_READ_BIT | Vk.ACCESS_SHADER_WRITE_BIT | Vk.ACCESS_TRANSFER_READ_BIT
                | Vk.ACCESS_TRANSFER_WRITE_BIT | Vk.ACCESS_HOST_READ_BIT),
        };
        _device.Api.CmdPipelineBarrier(cb, (uint)(Vk.PIPELINE_STAGE_COMPUTE_SHADER_BIT | Vk.PIPELINE_STAGE_TRANSFER_BIT), destinationStages,
            0, 1, &barrier, 0, null, 0, null);
    }

    public void Dispose()
    {
        DeviceApi api = _device.Api;
        if (_fence != 0)
        {
            api.DestroyFence(_device.Handle, _fence, 0);
            _fence = 0;
        }

        if (_pool != 0)
        {
            api.DestroyCommandPool(_device.Handle, _pool, 0);
            _pool = 0;
        }
    }

    private enum CommandKind
    {
        Dispatch = 1,
        Copy,
        Barrier,
    }

    /// <summary>One command as recorded; compared byte for byte to find a recording to replay.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct StepCommand
    {
        public CommandKind Kind;
        public int PushSize;
        public ulong Pipeline;
        public uint GroupsX;
        public uint GroupsY;
        public ulong Source;
        public ulong Destination;
        public ulong SourceOffset;
        public ulong DestinationOffset;
        public ulong Bytes;
        public PushBytes Push;
    }

    [InlineArray(ShaderLibrary.PushConstantBytes)]
    private struct PushBytes
    {
        private byte _element0;
    }

    private sealed class Recording(nint commandBuffer)
    {
        public nint CommandBuffer { get; } = commandBuffer;

        public StepCommand[] Commands { get; set; } = [];

        public int Count { get; set; }

        public long LastUse { get; set; }
    }
}
