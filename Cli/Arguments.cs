using System.Globalization;

namespace QwenSharp.Cli;

/// <summary>One option a command accepts.</summary>
/// <param name="Name">Without the dashes: "max-new-tokens".</param>
/// <param name="ValueName">What the value is ("N", "DIR"); null for a flag.</param>
/// <param name="Help">One line for --help.</param>
/// <param name="Repeatable">May be given more than once.</param>
internal sealed record OptionSpec(string Name, string? ValueName, string Help, bool Repeatable = false)
{
    public bool TakesValue => ValueName is not null;
}

/// <summary>
/// The options given to one command, checked against what it accepts: an unknown option, a missing value or
/// a value of the wrong form is a <see cref="UsageException"/> naming the option.
/// </summary>
internal sealed class Arguments
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    private Arguments(string command) => Command = command;

    public string Command { get; }

    public List<string> Positionals { get; } = [];

    /// <summary>Every option with a value, in command-line order (a batch of --prompt and --prompt-ids keeps its order).</summary>
    public List<(string Name, string Value)> InOrder { get; } = [];

    public static Arguments Parse(string command, IReadOnlyList<string> args, IReadOnlyList<OptionSpec> specs)
    {
        var parsed = new Arguments(command);
        bool optionsEnded = false;
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--" && !optionsEnded)
            {
                // After "--" everything is text, even what starts with "--".
                optionsEnded = true;
                continue;
            }

            if (optionsEnded || !arg.StartsWith("--", StringComparison.Ordinal))
            {
                parsed.Positionals.Add(arg);
                continue;
            }

            string name = arg[2..];
            string? inlineValue = null;
            int equals = name.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                inlineValue = name[(equals + 1)..];
                name = name[..equals];
            }

            OptionSpec spec = specs.FirstOrDefault(s => s.Name == name)
                ?? throw new UsageException($"unknown option '--{name}' for '{command}' (see qwensharp {command} --help{LlamaCppOptions.Hint(name, specs)})");
            if (!spec.TakesValue)
            {
                if (inlineValue is not null)
                {
                    throw new UsageException($"--{name} takes no value");
                }

                parsed._flags.Add(name);
                continue;
            }

            string value = inlineValue ?? (i + 1 < args.Count ? args[++i] : throw new UsageException($"--{name} needs a value ({spec.ValueName})"));
            if (!parsed._values.TryGetValue(name, out List<string>? list))
            {
                parsed._values[name] = list = [];
            }
            else if (!spec.Repeatable)
            {
                throw new UsageException($"--{name} is given more than once");
            }

            list.Add(value);
            parsed.InOrder.Add((name, value));
        }

        return parsed;
    }

    public bool Has(string name) => _flags.Contains(name) || _values.ContainsKey(name);

    public bool Flag(string name) => _flags.Contains(name);

    public string? Value(string name) => _values.TryGetValue(name, out List<string>? list) ? list[^1] : null;

    public IReadOnlyList<string> Values(string name) => _values.TryGetValue(name, out List<string>? list) ? list : [];

    public int? Int(string name, int min, int max = int.MaxValue)
    {
        string? text = Value(name);
        if (text is null)
        {
            return null;
        }

        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value) || value < min || value > max)
        {
            string range = max == int.MaxValue ? $"an integer >= {min}" : $"an integer from {min} to {max}";
            throw new UsageException($"--{name} '{text}' is not {range}");
        }

        return value;
    }

    /// <summary>A number within [min, max], or null when the option is absent.</summary>
    public double? Double(string name, double min, double max)
    {
        string? text = Value(name);
        if (text is null)
        {
            return null;
        }

        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value) || value < min || value > max)
        {
            // double.Epsilon as the minimum means "above zero" (a bound people read, unlike 5E-324).
            string lower = min == double.Epsilon ? "greater than 0" : $">= {min.ToString(CultureInfo.InvariantCulture)}";
            string range = double.IsPositiveInfinity(max) ? $"a number {lower}"
                : min == double.Epsilon ? $"a number greater than 0 and at most {max.ToString(CultureInfo.InvariantCulture)}"
                : $"a number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}";
            throw new UsageException($"--{name} '{text}' is not {range}");
        }

        return value;
    }

    /// <summary>A list of token ids, "1,2,3" (spaces after the commas allowed; an empty item is an error).</summary>
    public static int[] ParseIds(string option, string text)
    {
        string[] parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.All(p => p.Length == 0))
        {
            throw new UsageException($"--{option} '{text}' holds no token ids (expected e.g. 1,2,3)");
        }

        int empty = Array.FindIndex(parts, p => p.Length == 0);
        if (empty >= 0)
        {
            throw new UsageException($"--{option} '{text}': item {empty + 1} is empty (expected ids separated by single commas, e.g. 1,2,3)");
        }

        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
            {
                throw new UsageException($"--{option}: '{parts[i]}' (item {i + 1}) is not a token id (a non-negative integer)");
            }
        }

        return ids;
    }
}
