using System.Runtime.Intrinsics.X86;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>The switches' test overrides: this thread only, both answers, and the CPU's answer back once disposed.</summary>
public sealed class ThreadOverrideTests
{
    private readonly struct First
    {
    }

    private readonly struct Second
    {
    }

    [Fact]
    public void A_setting_holds_on_its_thread_for_its_switch_until_disposed()
    {
        Assert.True(ThreadOverride<First>.Or(true));
        Assert.False(ThreadOverride<First>.Or(false));
        using (ThreadOverride<First>.Set(false))
        {
            Assert.False(ThreadOverride<First>.Or(true));
            Assert.True(ThreadOverride<Second>.Or(true));
            bool elsewhere = false;
            var thread = new Thread(() => elsewhere = ThreadOverride<First>.Or(true));
            thread.Start();
            thread.Join();
            Assert.True(elsewhere);
        }

        Assert.True(ThreadOverride<First>.Or(true));
        using (ThreadOverride<First>.Set(true))
        {
            Assert.True(ThreadOverride<First>.Or(false));
            Assert.False(ThreadOverride<Second>.Or(false));
        }

        Assert.False(ThreadOverride<First>.Or(false));
    }

    [Fact]
    public void Each_switch_takes_its_own_setting()
    {
        using (RowsApart.Assume(false))
        using (VectorUnits.Assume(true))
        {
            Assert.False(RowsApart.Pay(KernelPath.Vector512));
            using (RowsApart.Assume(true))
            {
                Assert.True(RowsApart.Pay(KernelPath.Vector512));
                Assert.True(RowsApart.Pay(KernelPath.Vector256));
                Assert.False(RowsApart.Pay(KernelPath.Scalar));
            }
        }

        using (SubnormalOperands.Assume(true))
        {
            Assert.True(SubnormalOperands.AtFullSpeed);
        }

        using (SubnormalOperands.Assume(false))
        {
            Assert.False(SubnormalOperands.AtFullSpeed);
        }

        using (PanelDecode.Assume(true))
        {
            Assert.True(PanelDecode.Pays(KernelPath.Vector256, DType.Q4_0) == (Avx2.IsSupported && Fma.IsSupported));
            Assert.False(PanelDecode.Pays(KernelPath.Vector256, DType.Q4_K));
            Assert.False(PanelDecode.Pays(KernelPath.Scalar, DType.Q4_0));
        }

        using (PanelDecode.Assume(false))
        {
            Assert.False(PanelDecode.Pays(KernelPath.Vector256, DType.Q4_0));
        }

        using (ByteDots.WithoutVnni())
        {
            Assert.False(ByteDots.Vnni(KernelPath.Vector512));
        }
    }
}
