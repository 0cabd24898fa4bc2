using System.Globalization;
using System.Text;

namespace QwenSharp.Tokenization.Chat;

/// <summary>
/// The globals, filters, tests, attribute access and methods of the Jinja subset, with the semantics of
/// Jinja's ImmutableSandboxedEnvironment as transformers sets it up (lists and dicts cannot be mutated).
/// </summary>
internal static class TemplateBuiltins
{
    private static readonly Callable s_raiseException = new("raise_exception", (args, _) =>
        throw new TemplateException($"the chat template raised an error: {(args.Count > 0 ? PyValues.Str(args[0]) : "")}"));

    private static readonly Callable s_namespace = new("namespace", (args, kwargs) =>
    {
        var ns = new JinjaNamespace();
        if (args.Count > 0 && args[0] is OrderedDictionary<string, object?> initial)
        {
            foreach ((string key, object? value) in initial)
            {
                ns.Attributes[key] = value;
            }
        }

        foreach ((string key, object? value) in kwargs)
        {
            ns.Attributes[key] = value;
        }

        return ns;
    });

    private static readonly Callable s_range = new("range", (args, _) =>
    {
        long start = args.Count > 1 ? (long)args[0]! : 0;
        long stop = (long)args[args.Count > 1 ? 1 : 0]!;
        long step = args.Count > 2 ? (long)args[2]! : 1;
        var items = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            items.Add(i);
        }

        return items;
    });

    private static readonly Callable s_dict = new("dict", (args, kwargs) =>
    {
        var dict = new OrderedDictionary<string, object?>();
        foreach ((string key, object? value) in kwargs)
        {
            dict[key] = value;
        }

        return dict;
    });

    private static readonly Callable s_strftimeNow = new("strftime_now", (args, _) => StrFTime(DateTime.Now, PyValues.Str(args[0])));

    public static object? Global(string name) => name switch
    {
        "raise_exception" => s_raiseException,
        "namespace" => s_namespace,
        "range" => s_range,
        "dict" => s_dict,
        "strftime_now" => s_strftimeNow,
        _ => null,
    };

    public static object? GetAttribute(object? target, string name, int line)
    {
        switch (target)
        {
            case Undefined u:
                throw new TemplateException($"chat template line {line}: cannot read '.{name}' of an undefined value ({u.Description})");
            case OrderedDictionary<string, object?> dict:
                return dict.TryGetValue(name, out object? value) ? value : (object?)DictMethod(dict, name) ?? new Undefined($"dict has no key or attribute '{name}'");
            case JinjaNamespace ns:
                return ns.Attributes.TryGetValue(name, out object? attribute) ? attribute : new Undefined($"namespace has no attribute '{name}'");
            case LoopInfo loop:
                return loop.Get(name);
            case string s:
                return (object?)StringMethod(s, name, line) ?? new Undefined($"str has no attribute '{name}'");
            case List<object?> list when name is "append" or "extend" or "pop" or "insert" or "remove" or "clear" or "sort" or "reverse":
                throw new TemplateException($"chat template line {line}: list.{name}() would modify a list, which the sandbox transformers uses forbids");
            case List<object?> list:
                return (object?)ListMethod(list, name) ?? new Undefined($"list has no attribute '{name}'");
            default:
                return new Undefined($"{PyValues.TypeName(target)} has no attribute '{name}'");
        }
    }

    public static object? GetItem(object? target, object? key, int line)
    {
        switch (target)
        {
            case Undefined u:
                throw new TemplateException($"chat template line {line}: cannot index an undefined value ({u.Description})");
            case OrderedDictionary<string, object?> dict:
                return key is string k && dict.TryGetValue(k, out object? value) ? value : new Undefined($"dict has no key {PyValues.Repr(key)}");
            case List<object?> list when key is long index:
                long i = index < 0 ? index + list.Count : index;
                return i >= 0 && i < list.Count ? list[(int)i] : new Undefined($"list index {index} out of range");
            case string s when key is long index:
                List<object?> chars = TemplateInterpreter.Iterate(s, line);
                long c = index < 0 ? index + chars.Count : index;
                return c >= 0 && c < chars.Count ? chars[(int)c] : new Undefined($"string index {index} out of range");
            case string or List<object?>:
                throw new TemplateException($"chat template line {line}: indices must be integers, not {PyValues.TypeName(key)}");
            default:
                return key is string name ? GetAttribute(target, name, line) : new Undefined($"{PyValues.TypeName(target)} cannot be indexed");
        }
    }

    /// <summary>Python slicing <c>x[start:stop:step]</c> of a list or string.</summary>
    public static object? Slice(object? target, long? start, long? stop, long? step, int line)
    {
        List<object?> items = target switch
        {
            List<object?> list => list,
            string s => TemplateInterpreter.Iterate(s, line),
            _ => throw new TemplateException($"chat template line {line}: cannot slice {PyValues.TypeName(target)}"),
        };
        long n = items.Count;
        long stride = step ?? 1;
        if (stride == 0)
        {
            throw new TemplateException($"chat template line {line}: slice step cannot be zero");
        }

        long Clamp(long? value, long fallback, long low, long high)
        {
            if (value is null)
            {
                return fallback;
            }

            long v = value.Value < 0 ? value.Value + n : value.Value;
            return Math.Clamp(v, low, high);
        }

        var result = new List<object?>();
        if (stride > 0)
        {
            for (long i = Clamp(start, 0, 0, n); i < Clamp(stop, n, 0, n); i += stride)
            {
                result.Add(items[(int)i]);
            }
        }
        else
        {
            for (long i = Clamp(start, n - 1, -1, n - 1); i > Clamp(stop, -1, -1, n - 1); i += stride)
            {
                result.Add(items[(int)i]);
            }
        }

        return target is string ? string.Concat(result.Select(PyValues.Str)) : result;
    }

    public static bool Contains(object? container, object? item, int line) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        string => throw new TemplateException($"chat template line {line}: 'in <string>' needs a string on the left, found {PyValues.TypeName(item)}"),
        List<object?> list => list.Any(x => PyValues.Equals(x, item)),
        OrderedDictionary<string, object?> dict => item is string key && dict.ContainsKey(key),
        Undefined => false,
        _ => throw new TemplateException($"chat template line {line}: argument of type {PyValues.TypeName(container)} is not iterable"),
    };

    public static object? Arithmetic(string op, object? left, object? right, int line)
    {
        if (op == "+" && left is string a && right is string b)
        {
            return a + b;
        }

        if (op == "+" && left is List<object?> x && right is List<object?> y)
        {
            return x.Concat(y).ToList();
        }

        if (op == "*" && left is string text && right is long times)
        {
            return string.Concat(Enumerable.Repeat(text, (int)Math.Max(0, times)));
        }

        if (left is long l && right is long r && op is "+" or "-" or "*" or "//" or "%")
        {
            return op switch
            {
                "+" => l + r,
                "-" => l - r,
                "*" => l * r,
                "//" => r == 0 ? throw DivisionByZero(line) : (long)Math.Floor((double)l / r),
                _ => r == 0 ? throw DivisionByZero(line) : ((l % r) + r) % r,
            };
        }

        if (PyValues.IsNumber(left) && PyValues.IsNumber(right) && left is not bool && right is not bool)
        {
            double p = PyValues.ToDouble(left), q = PyValues.ToDouble(right);
            return op switch
            {
                "+" => p + q,
                "-" => p - q,
                "*" => p * q,
                "/" => q == 0 ? throw DivisionByZero(line) : p / q,
                "//" => q == 0 ? throw DivisionByZero(line) : Math.Floor(p / q),
                "%" => q == 0 ? throw DivisionByZero(line) : p - q * Math.Floor(p / q),
                "**" => left is long && right is long && q >= 0 ? (object)(long)Math.Pow(p, q) : Math.Pow(p, q),
                _ => throw new TemplateException($"chat template line {line}: unknown operator '{op}'"),
            };
        }

        throw new TemplateException($"chat template line {line}: unsupported operand types for {op}: {PyValues.TypeName(left)} and {PyValues.TypeName(right)}");
    }

    private static TemplateException DivisionByZero(int line) => new($"chat template line {line}: division by zero");

    public static object? Filter(string name, object? value, List<object?> args, Dictionary<string, object?> kwargs, int line)
    {
        object? Arg(int index, string keyword, object? fallback) =>
            kwargs.TryGetValue(keyword, out object? named) ? named : index < args.Count ? args[index] : fallback;

        switch (name)
        {
            case "tojson":
                return PyValues.JsonDumps(value, Arg(0, "indent", null) is long indent ? (int)indent : null, PyValues.IsTrue(Arg(1, "sort_keys", false)), line);
            case "trim":
                return Strip(PyValues.Str(value), Arg(0, "chars", null) as string, true, true);
            case "length" or "count":
                return value switch
                {
                    string s => (long)s.EnumerateRunes().Count(),
                    List<object?> list => (long)list.Count,
                    OrderedDictionary<string, object?> dict => (long)dict.Count,
                    Undefined => 0L,
                    _ => throw new TemplateException($"chat template line {line}: object of type {PyValues.TypeName(value)} has no length"),
                };
            case "upper":
                return PyValues.Str(value).ToUpperInvariant();
            case "lower":
                return PyValues.Str(value).ToLowerInvariant();
            case "capitalize":
                string text = PyValues.Str(value);
                return text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..].ToLowerInvariant();
            case "title":
                return CultureInfo.InvariantCulture.TextInfo.ToTitleCase(PyValues.Str(value).ToLowerInvariant());
            case "default" or "d":
                bool boolean = PyValues.IsTrue(Arg(1, "boolean", false));
                return value is Undefined || (boolean && !PyValues.IsTrue(value)) ? Arg(0, "default_value", "") : value;
            case "first":
                return TemplateInterpreter.Iterate(value, line) is { Count: > 0 } firstItems ? firstItems[0] : new Undefined("first of an empty sequence");
            case "last":
                return TemplateInterpreter.Iterate(value, line) is { Count: > 0 } lastItems ? lastItems[^1] : new Undefined("last of an empty sequence");
            case "join":
                string separator = PyValues.Str(Arg(0, "d", ""));
                return string.Join(separator, TemplateInterpreter.Iterate(value, line).Select(PyValues.Str));
            case "string":
                return PyValues.Str(value);
            case "int":
                return value switch
                {
                    long l => l,
                    double d => (long)d,
                    bool b => b ? 1L : 0L,
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long parsed) => parsed,
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return value switch
                {
                    long l => (double)l,
                    double d => d,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) => parsed,
                    _ => Arg(0, "default", 0.0),
                };
            case "abs":
                return value switch { long l => Math.Abs(l), double d => Math.Abs(d), _ => value };
            case "list":
                return TemplateInterpreter.Iterate(value, line).ToList();
            case "items":
                return value is OrderedDictionary<string, object?> itemsDict
                    ? itemsDict.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList()
                    : throw new TemplateException($"chat template line {line}: items needs a dict, found {PyValues.TypeName(value)}");
            case "reverse":
                return value is string reversed ? string.Concat(reversed.EnumerateRunes().Reverse()) : Enumerable.Reverse(TemplateInterpreter.Iterate(value, line)).ToList();
            case "replace":
                return PyValues.Str(value).Replace(PyValues.Str(Arg(0, "old", "")), PyValues.Str(Arg(1, "new", "")), StringComparison.Ordinal);
            case "safe":
                return value;
            case "e" or "escape":
                return PyValues.Str(value).Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
                    .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&#34;", StringComparison.Ordinal).Replace("'", "&#39;", StringComparison.Ordinal);
            case "unique":
                var unique = new List<object?>();
                foreach (object? item in TemplateInterpreter.Iterate(value, line))
                {
                    if (!unique.Any(u => PyValues.Equals(u, item)))
                    {
                        unique.Add(item);
                    }
                }

                return unique;
            case "map":
                if (kwargs.TryGetValue("attribute", out object? attributeArgument) && attributeArgument is string mapAttribute)
                {
                    return TemplateInterpreter.Iterate(value, line).Select(item => GetItem(item, mapAttribute, line)).ToList();
                }

                string mapFilter = PyValues.Str(Arg(0, "", ""));
                return TemplateInterpreter.Iterate(value, line).Select(item => Filter(mapFilter, item, args.Skip(1).ToList(), [], line)).ToList();
            case "selectattr" or "rejectattr":
                bool keep = name == "selectattr";
                string attributeName = PyValues.Str(Arg(0, "", ""));
                string? testName = args.Count > 1 ? PyValues.Str(args[1]) : null;
                List<object?> testArgs = args.Skip(2).ToList();
                return TemplateInterpreter.Iterate(value, line).Where(item =>
                {
                    object? attribute = GetItem(item, attributeName, line);
                    bool passes = testName is null ? PyValues.IsTrue(attribute) : Test(testName, attribute, testArgs, line);
                    return passes == keep;
                }).ToList();
            case "select" or "reject":
                bool selectKeep = name == "select";
                string? selectTest = args.Count > 0 ? PyValues.Str(args[0]) : null;
                List<object?> selectArgs = args.Skip(1).ToList();
                return TemplateInterpreter.Iterate(value, line).Where(item =>
                    (selectTest is null ? PyValues.IsTrue(item) : Test(selectTest, item, selectArgs, line)) == selectKeep).ToList();
            default:
                throw new TemplateException($"chat template line {line}: the filter '{name}' is not supported by QwenSharp's chat-template interpreter");
        }
    }

    public static bool Test(string name, object? value, List<object?> args, int line)
    {
        object? Arg0() => args.Count > 0 ? args[0] : throw new TemplateException($"chat template line {line}: test '{name}' needs an argument");
        return name switch
        {
            "defined" => value is not Undefined,
            "undefined" => value is Undefined,
            "none" => value is null,
            "string" => value is string,
            "number" => value is long or double or bool,
            "integer" => value is long,
            "float" => value is double,
            "boolean" => value is bool,
            "true" => value is true,
            "false" => value is false,
            "mapping" => value is OrderedDictionary<string, object?>,
            "iterable" => value is string or List<object?> or OrderedDictionary<string, object?>,
            "sequence" => value is string or List<object?> or OrderedDictionary<string, object?>,
            "callable" => value is Callable,
            "equalto" or "eq" or "==" or "sameas" => PyValues.Equals(value, Arg0()),
            "ne" or "!=" => !PyValues.Equals(value, Arg0()),
            "in" => Contains(Arg0(), value, line),
            "odd" => value is long odd && odd % 2 != 0,
            "even" => value is long even && even % 2 == 0,
            "divisibleby" => value is long n && Arg0() is long d && d != 0 && n % d == 0,
            "lower" => value is string lower && lower == lower.ToLowerInvariant(),
            "upper" => value is string upper && upper == upper.ToUpperInvariant(),
            _ => throw new TemplateException($"chat template line {line}: the test '{name}' is not supported by QwenSharp's chat-template interpreter"),
        };
    }

    private static Callable? DictMethod(OrderedDictionary<string, object?> dict, string name) => name switch
    {
        "items" => new Callable("dict.items", (_, _) => dict.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList()),
        "keys" => new Callable("dict.keys", (_, _) => dict.Keys.Select(k => (object?)k).ToList()),
        "values" => new Callable("dict.values", (_, _) => dict.Values.ToList()),
        "get" => new Callable("dict.get", (args, _) =>
            args.Count > 0 && args[0] is string key && dict.TryGetValue(key, out object? value) ? value : args.Count > 1 ? args[1] : null),
        _ => null,
    };

    private static Callable? ListMethod(List<object?> list, string name) => name switch
    {
        "index" => new Callable("list.index", (args, _) =>
        {
            int index = list.FindIndex(x => PyValues.Equals(x, args[0]));
            return index >= 0 ? (long)index : throw new ArgumentException($"{PyValues.Repr(args[0])} is not in list");
        }),
        "count" => new Callable("list.count", (args, _) => (long)list.Count(x => PyValues.Equals(x, args[0]))),
        _ => null,
    };

    private static Callable? StringMethod(string s, string name, int line) => name switch
    {
        "strip" => new Callable("str.strip", (args, _) => Strip(s, OptionalString(args, 0), true, true)),
        "lstrip" => new Callable("str.lstrip", (args, _) => Strip(s, OptionalString(args, 0), true, false)),
        "rstrip" => new Callable("str.rstrip", (args, _) => Strip(s, OptionalString(args, 0), false, true)),
        "startswith" => new Callable("str.startswith", (args, _) => AnyAffix(args, a => s.StartsWith(a, StringComparison.Ordinal))),
        "endswith" => new Callable("str.endswith", (args, _) => AnyAffix(args, a => s.EndsWith(a, StringComparison.Ordinal))),
        "upper" => new Callable("str.upper", (_, _) => s.ToUpperInvariant()),
        "lower" => new Callable("str.lower", (_, _) => s.ToLowerInvariant()),
        "title" => new Callable("str.title", (_, _) => CultureInfo.InvariantCulture.TextInfo.ToTitleCase(s.ToLowerInvariant())),
        "capitalize" => new Callable("str.capitalize", (_, _) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant()),
        "replace" => new Callable("str.replace", (args, _) =>
            s.Replace(PyValues.Str(args[0]), PyValues.Str(args[1]), StringComparison.Ordinal)),
        "split" => new Callable("str.split", (args, _) => Split(s, OptionalString(args, 0), args.Count > 1 && args[1] is long max ? (int)max : -1)),
        "find" => new Callable("str.find", (args, _) => (long)s.IndexOf(PyValues.Str(args[0]), StringComparison.Ordinal)),
        "count" => new Callable("str.count", (args, _) => (long)CountOccurrences(s, PyValues.Str(args[0]))),
        "join" => new Callable("str.join", (args, _) => string.Join(s, TemplateInterpreter.Iterate(args[0], line).Select(PyValues.Str))),
        "isdigit" => new Callable("str.isdigit", (_, _) => s.Length > 0 && s.All(char.IsDigit)),
        "isspace" => new Callable("str.isspace", (_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
        _ => null,
    };

    private static string? OptionalString(IReadOnlyList<object?> args, int index) => index < args.Count ? args[index] as string : null;

    private static bool AnyAffix(IReadOnlyList<object?> args, Func<string, bool> test) => args[0] switch
    {
        string affix => test(affix),
        List<object?> affixes => affixes.Any(a => test(PyValues.Str(a))),
        _ => throw new ArgumentException("expected a string or a tuple of strings"),
    };

    /// <summary>Python's strip: whitespace by default, else any of <paramref name="chars"/>.</summary>
    private static string Strip(string s, string? chars, bool start, bool end)
    {
        int from = 0, to = s.Length;
        bool Strippable(char c) => chars is null ? char.IsWhiteSpace(c) : chars.Contains(c, StringComparison.Ordinal);
        while (start && from < to && Strippable(s[from]))
        {
            from++;
        }

        while (end && to > from && Strippable(s[to - 1]))
        {
            to--;
        }

        return s[from..to];
    }

    private static List<object?> Split(string s, string? separator, int maxSplit)
    {
        if (separator is null)
        {
            return [.. s.Split((char[]?)null, maxSplit < 0 ? int.MaxValue : maxSplit + 1, StringSplitOptions.RemoveEmptyEntries)];
        }

        if (separator.Length == 0)
        {
            throw new ArgumentException("empty separator");
        }

        return [.. s.Split(separator, maxSplit < 0 ? int.MaxValue : maxSplit + 1, StringSplitOptions.None)];
    }

    private static int CountOccurrences(string s, string sub)
    {
        if (sub.Length == 0)
        {
            return s.Length + 1;
        }

        int count = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    /// <summary>Python's strftime for the directives chat templates use (dates in system prompts).</summary>
    private static string StrFTime(DateTime time, string format)
    {
        var builder = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                builder.Append(format[i]);
                continue;
            }

            char d = format[++i];
            builder.Append(d switch
            {
                'd' => time.ToString("dd", CultureInfo.InvariantCulture),
                'm' => time.ToString("MM", CultureInfo.InvariantCulture),
                'Y' => time.ToString("yyyy", CultureInfo.InvariantCulture),
                'y' => time.ToString("yy", CultureInfo.InvariantCulture),
                'b' => time.ToString("MMM", CultureInfo.InvariantCulture),
                'B' => time.ToString("MMMM", CultureInfo.InvariantCulture),
                'a' => time.ToString("ddd", CultureInfo.InvariantCulture),
                'A' => time.ToString("dddd", CultureInfo.InvariantCulture),
                'H' => time.ToString("HH", CultureInfo.InvariantCulture),
                'I' => time.ToString("hh", CultureInfo.InvariantCulture),
                'M' => time.ToString("mm", CultureInfo.InvariantCulture),
                'S' => time.ToString("ss", CultureInfo.InvariantCulture),
                'p' => time.ToString("tt", CultureInfo.InvariantCulture),
                'j' => time.DayOfYear.ToString("000", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => "%" + d,
            });
        }

        return builder.ToString();
    }
}
