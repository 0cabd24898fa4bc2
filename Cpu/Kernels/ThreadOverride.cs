namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// A yes-or-no the kernels take from the CPU (<see cref="VectorUnits"/>, <see cref="SubnormalOperands"/>,
/// <see cref="RowsApart"/>, <see cref="ByteDots"/>, <see cref="PanelDecode"/>), which a test may set on its own thread, so that one machine runs every
/// kernel such a switch chooses between. <typeparamref name="TSwitch"/> names the switch: each one has its own
/// thread-local setting.
/// </summary>
internal static class ThreadOverride<TSwitch>
    where TSwitch : struct
{
    /// <summary>0: the CPU's answer; 1: yes; 2: no (this thread only).</summary>
    [ThreadStatic]
    private static int t_state;

    /// <summary>This thread's setting, else <paramref name="detected"/>.</summary>
    public static bool Or(bool detected) => t_state == 0 ? detected : t_state == 1;

    /// <summary>Until disposed, this thread's answer is <paramref name="value"/>.</summary>
    public static Scope Set(bool value)
    {
        var scope = new Scope(t_state);
        t_state = value ? 1 : 2;
        return scope;
    }

    /// <summary>
    /// Ends <see cref="Set"/>: the answer before it again, so scopes nest (a test that asks "no" inside a "yes" gets its
    /// "yes" back, not the CPU's answer).
    /// </summary>
    public readonly struct Scope(int previous) : IDisposable
    {
        public void Dispose() => t_state = previous;
    }
}
