using QwenSharp.Formats;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>llama-perplexity's file of log-probabilities: a row's codes by the format's definition, and a writer that never leaves half a file.</summary>
public sealed class LogitsBaseFileTests
{
    [Fact]
    public void Encode_SpansSixteenBelowTheTopIn65535Steps()
    {
        float[] logits = [0f, -1f, -20f, 2f, 2f - 16f];
        ushort[] row = new ushort[LogitsBaseFile.RowValues(logits.Length)];

        LogitsBaseFile.Encode(logits, row);

        // Five values: padded to six codes after the two floats.
        Assert.Equal(4 + 6, row.Length);
        double logSumExp = Math.Log(logits.Sum(l => Math.Exp(l - 2.0)));
        Assert.Equal(16f / 65535f, LogitsBaseFile.ScaleOf(row));
        Assert.Equal(-16 - logSumExp, LogitsBaseFile.LeastOf(row), 1e-5);
        // 2 is the top: 65535; 0 lies 14 above the least, 57343.1 steps; -1, 53247.2; -20 and the least itself: code 0.
        Assert.Equal(new ushort[] { 57343, 53247, 0, 65535, 0, 0 }, row[4..]);
        Assert.Equal(-logSumExp, LogitsBaseFile.LogProb(row, 3), 1e-5);
    }

    [Fact]
    public void Encode_EqualLogits_ScaleZeroAndCodesZero()
    {
        float[] logits = [3f, 3f, 3f];
        ushort[] row = new ushort[LogitsBaseFile.RowValues(3)];
        row.AsSpan().Fill(7);

        LogitsBaseFile.Encode(logits, row);

        Assert.Equal(0f, LogitsBaseFile.ScaleOf(row));
        Assert.Equal(-Math.Log(3), LogitsBaseFile.LogProb(row, 1), 1e-6);
        Assert.All(row[4..].ToArray(), code => Assert.Equal(0, code));
    }

    [Fact]
    public void Writer_KeepsOnlyAWholeFile_AndNeverOverwrites()
    {
        string directory = Fixtures.TempDirectory(), path = Path.Combine(directory, "base.kld");
        ushort[] row = new ushort[LogitsBaseFile.RowValues(8)];
        int[] tokens = [1, 2, 3, 4, 5, 6, 7, 0];

        using (LogitsBaseWriter writer = LogitsBaseWriter.Create(path, context: 4, vocabulary: 8, tokens))
        {
            writer.WriteRow(row);

            // Nothing under the target's name while rows are still coming (a killed run leaves only the .partial).
            Assert.False(File.Exists(path));
        }

        Assert.False(File.Exists(path));
        Assert.False(File.Exists(path + ".partial"));

        using (LogitsBaseWriter writer = LogitsBaseWriter.Create(path, context: 4, vocabulary: 8, tokens))
        {
            writer.WriteRow(row);
            writer.WriteRow(row);
            writer.Complete();
        }

        Assert.Equal(LogitsBaseFile.FileBytes(4, 8, 2), new FileInfo(path).Length);
        using (LogitsBaseReader reader = LogitsBaseReader.Open(path))
        {
            Assert.Equal((4, 8, 2), (reader.Context, reader.Vocabulary, reader.Chunks));
            Assert.Equal(tokens, reader.Tokens);
        }

        byte[] before = File.ReadAllBytes(path);
        ArgumentException refused = Assert.Throws<ArgumentException>(() => LogitsBaseWriter.Create(path, 4, 8, tokens));
        Assert.Contains("already exists", refused.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(path));
    }
}
