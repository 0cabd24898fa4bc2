using System.Globalization;
using System.Text;

namespace QwenSharp.Tokenization.Chat;

/// <summary>A name or attribute that does not exist; falsy, prints as nothing, iterates as empty (Jinja's Undefined).</summary>
internal sealed class Undefined(string description)
{
    public string Description { get; } = description;
}

/// <summary>The object <c>namespace(...)</c> makes: attributes that <c>set ns.x = ...</c> can change inside loops.</summary>
internal sealed class JinjaNamespace
{
    public OrderedDictionary<string, object?> Attributes { get; } = [];
}

/// <summary>A function or bound method callable from a template.</summary>
internal sealed record Callable(string Name, Func<IReadOnlyList<object?>, IReadOnlyDictionary<string, object?>, object?> Invoke);

/// <summary>
/// Values as Python and Jinja see them: None (null), bool, int (long), float (double), str (string),
/// list (<see cref="List{T}"/>), dict (<see cref="OrderedDictionary{TKey, TValue}"/>, insertion ordered as
/// in Python), plus <see cref="Undefined"/>. Truthiness, str(), repr(), equality, ordering and
/// <c>json.dumps</c> follow Python.
/// </summary>
internal static class PyValues
{
    public static bool IsTrue(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        OrderedDictionary<string, object?> dict => dict.Count > 0,
        _ => true,
    };

    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        OrderedDictionary<string, object?> => "dict",
        JinjaNamespace => "Namespace",
        Callable => "function",
        _ => value.GetType().Name,
    };

    /// <summary>Python's <c>str(value)</c> (Jinja prints values this way; Undefined prints as nothing).</summary>
    public static string Str(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(value),
    };

    /// <summary>Python's <c>repr(value)</c>.</summary>
    public static string Repr(object? value)
    {
        var builder = new StringBuilder();
        AppendRepr(builder, value);
        return builder.ToString();
    }

    private static void AppendRepr(StringBuilder builder, object? value)
    {
        switch (value)
        {
            case null:
                builder.Append("None");
                break;
            case Undefined:
                break;
            case bool b:
                builder.Append(b ? "True" : "False");
                break;
            case long l:
                builder.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                builder.Append(FloatRepr(d, json: false));
                break;
            case string s:
                AppendStringRepr(builder, s);
                break;
            case List<object?> list:
                builder.Append('[');
                for (int i = 0; i < list.Count; i++)
                {
                    builder.Append(i > 0 ? ", " : "");
                    AppendRepr(builder, list[i]);
                }

                builder.Append(']');
                break;
            case OrderedDictionary<string, object?> dict:
                builder.Append('{');
                bool first = true;
                foreach ((string key, object? item) in dict)
                {
                    builder.Append(first ? "" : ", ");
                    first = false;
                    AppendStringRepr(builder, key);
                    builder.Append(": ");
                    AppendRepr(builder, item);
                }

                builder.Append('}');
                break;
            case JinjaNamespace ns:
                builder.Append("<Namespace ");
                AppendRepr(builder, ns.Attributes);
                builder.Append('>');
                break;
            default:
                builder.Append(value);
                break;
        }
    }

    private static void AppendStringRepr(StringBuilder builder, string s)
    {
        char quote = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        builder.Append(quote);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': builder.Append(@"\\"); break;
                case '\n': builder.Append(@"\n"); break;
                case '\r': builder.Append(@"\r"); break;
                case '\t': builder.Append(@"\t"); break;
                default:
                    if (c == quote)
                    {
                        builder.Append('\\').Append(c);
                    }
                    else if (c < 0x20 || c == 0x7F)
                    {
                        builder.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
                    }
                    else
                    {
                        builder.Append(c);
                    }

                    break;
            }
        }

        builder.Append(quote);
    }

    /// <summary>Python's float repr: shortest round-trip digits, exponent form below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double value, bool json)
    {
        if (double.IsNaN(value))
        {
            return json ? "NaN" : "nan";
        }

        if (double.IsInfinity(value))
        {
            return (value < 0 ? "-" : "") + (json ? "Infinity" : "inf");
        }

        if (value == 0)
        {
            return double.IsNegative(value) ? "-0.0" : "0.0";
        }

        // "R" gives the shortest round-trip digits (as Python's repr does); lay them out as Python does.
        string shortest = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        int exponentAt = shortest.IndexOfAny(['E', 'e']);
        string mantissa = exponentAt >= 0 ? shortest[..exponentAt] : shortest;
        int exponent = exponentAt >= 0 ? int.Parse(shortest.AsSpan(exponentAt + 1), CultureInfo.InvariantCulture) : 0;
        int dot = mantissa.IndexOf('.', StringComparison.Ordinal);
        string digits = mantissa.Replace(".", "", StringComparison.Ordinal);
        int pointPosition = (dot >= 0 ? dot : mantissa.Length) + exponent;
        int leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        pointPosition -= leadingZeros;
        int decimalExponent = pointPosition - 1;
        string sign = value < 0 ? "-" : "";
        if (decimalExponent < -4 || decimalExponent >= 16)
        {
            string fraction = digits.Length > 1 ? "." + digits[1..] : "";
            return $"{sign}{digits[0]}{fraction}e{(decimalExponent < 0 ? "-" : "+")}{Math.Abs(decimalExponent):00}";
        }

        if (pointPosition <= 0)
        {
            return $"{sign}0.{new string('0', -pointPosition)}{digits}";
        }

        if (pointPosition >= digits.Length)
        {
            return $"{sign}{digits}{new string('0', pointPosition - digits.Length)}.0";
        }

        return $"{sign}{digits[..pointPosition]}.{digits[pointPosition..]}";
    }

    public static new bool Equals(object? a, object? b)
    {
        a = a is Undefined ? null : a;
        b = b is Undefined ? null : b;
        return (a, b) switch
        {
            (null, null) => true,
            (null, _) or (_, null) => false,
            (bool x, bool y) => x == y,
            (string x, string y) => x == y,
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equals(p.First, p.Second)),
            (OrderedDictionary<string, object?> x, OrderedDictionary<string, object?> y) =>
                x.Count == y.Count && x.All(p => y.TryGetValue(p.Key, out object? v) && Equals(p.Value, v)),
            _ when IsNumber(a) && IsNumber(b) => ToDouble(a) == ToDouble(b),
            _ => ReferenceEquals(a, b),
        };
    }

    public static int Compare(object? a, object? b, int line)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            return a is long x && b is long y ? x.CompareTo(y) : ToDouble(a).CompareTo(ToDouble(b));
        }

        if (a is string s && b is string t)
        {
            return string.CompareOrdinal(s, t);
        }

        throw new TemplateException($"chat template line {line}: cannot compare {TypeName(a)} with {TypeName(b)}");
    }

    public static bool IsNumber(object? value) => value is long or double or bool;

    public static double ToDouble(object? value) => value switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => double.NaN,
    };

    /// <summary>Python's <c>json.dumps(value, ensure_ascii=False, indent=indent)</c>, as transformers' <c>tojson</c> filter calls it.</summary>
    public static string JsonDumps(object? value, int? indent, bool sortKeys, int line)
    {
        var builder = new StringBuilder();
        AppendJson(builder, value, indent, sortKeys, 0, line);
        return builder.ToString();
    }

    private static void AppendJson(StringBuilder builder, object? value, int? indent, bool sortKeys, int depth, int line)
    {
        switch (value)
        {
            case null:
                builder.Append("null");
                break;
            case bool b:
                builder.Append(b ? "true" : "false");
                break;
            case long l:
                builder.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                builder.Append(FloatRepr(d, json: true));
                break;
            case string s:
                AppendJsonString(builder, s);
                break;
            case List<object?> list:
                AppendJsonContainer(builder, '[', ']', list.Count, indent, depth, i => AppendJson(builder, list[i], indent, sortKeys, depth + 1, line));
                break;
            case OrderedDictionary<string, object?> dict:
                List<KeyValuePair<string, object?>> entries = sortKeys ? [.. dict.OrderBy(p => p.Key, StringComparer.Ordinal)] : [.. dict];
                AppendJsonContainer(builder, '{', '}', entries.Count, indent, depth, i =>
                {
                    AppendJsonString(builder, entries[i].Key);
                    builder.Append(": ");
                    AppendJson(builder, entries[i].Value, indent, sortKeys, depth + 1, line);
                });
                break;
            case Undefined u:
                throw new TemplateException($"chat template line {line}: tojson of an undefined value ({u.Description})");
            default:
                throw new TemplateException($"chat template line {line}: tojson cannot serialize a {TypeName(value)}");
        }
    }

    private static void AppendJsonContainer(StringBuilder builder, char open, char close, int count, int? indent, int depth, Action<int> appendItem)
    {
        builder.Append(open);
        if (count == 0)
        {
            builder.Append(close);
            return;
        }

        for (int i = 0; i < count; i++)
        {
            if (indent is int spaces)
            {
                builder.Append(i > 0 ? "," : "").Append('\n').Append(' ', spaces * (depth + 1));
            }
            else if (i > 0)
            {
                builder.Append(", ");
            }

            appendItem(i);
        }

        if (indent is int width)
        {
            builder.Append('\n').Append(' ', width * depth);
        }

        builder.Append(close);
    }

    private static void AppendJsonString(StringBuilder builder, string s)
    {
        builder.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': builder.Append("\\\""); break;
                case '\\': builder.Append(@"\\"); break;
                case '\n': builder.Append(@"\n"); break;
                case '\r': builder.Append(@"\r"); break;
                case '\t': builder.Append(@"\t"); break;
                case '\b': builder.Append(@"\b"); break;
                case '\f': builder.Append(@"\f"); break;
                default:
                    if (c < 0x20)
                    {
                        builder.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
                    }
                    else
                    {
                        builder.Append(c);
                    }

                    break;
            }
        }

        builder.Append('"');
    }
}
