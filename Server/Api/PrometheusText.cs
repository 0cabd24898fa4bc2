using System.Globalization;
using System.Text;

namespace QwenSharp.Server.Api;

/// <summary>Prometheus' text exposition format, as <c>/metrics</c> writes its own series, llama-server's and vLLM's.</summary>
internal static class PrometheusText
{
    /// <summary>A metric family's HELP and TYPE lines, once before its samples.</summary>
    public static void Family(StringBuilder text, string name, string type, string help) =>
        text.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} {type}\n");

    /// <summary>One sample; <paramref name="labels"/> with its braces (<c>{model_name="x"}</c>), or empty.</summary>
    public static void Sample(StringBuilder text, string name, double value, string labels = "") =>
        text.Append(CultureInfo.InvariantCulture, $"{name}{labels} {value}\n");
}
