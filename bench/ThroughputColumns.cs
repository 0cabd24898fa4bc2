using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using QwenSharp.Formats;

namespace QwenSharp.Bench;

/// <summary>
/// GB/s of weights read and GFLOP/s, from the benchmark's Shape, DType and Tokens parameters and its mean
/// time: decode is bound by how fast weights stream from memory, prefill by arithmetic.
/// </summary>
public sealed class ThroughputColumn(bool gigabytes) : IColumn
{
    public string Id => gigabytes ? "weight-GB/s" : "GFLOP/s";

    public string ColumnName => gigabytes ? "Weights GB/s" : "GFLOP/s";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => gigabytes ? 0 : 1;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => gigabytes ? "Bytes of weights read per second / 1e9" : "2 × tokens × rows × cols per second / 1e9";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        BenchmarkReport? report = summary[benchmarkCase];
        if (report?.ResultStatistics is null || benchmarkCase.Parameters["Shape"] is not WeightShape shape)
        {
            return "-";
        }

        DType type = benchmarkCase.Parameters["DType"] is DType d ? d : DType.BF16;
        int tokens = benchmarkCase.Parameters.Items.Any(p => p.Name == "Tokens") ? (int)benchmarkCase.Parameters["Tokens"] : 1;
        double seconds = report.ResultStatistics.Mean / 1e9;
        double value = gigabytes ? shape.Bytes(type) / seconds / 1e9 : 2.0 * tokens * shape.Rows * shape.Cols / seconds / 1e9;
        return value.ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;
}
