using System.Numerics;
using System.Text.Json;

namespace QwenSharp.Sampling;

/// <summary>
/// A schema's <c>minimum</c>/<c>maximum</c> (and their exclusive forms) as the closed range of the numbers an answer may
/// write, and whether the digits written so far can still end inside it. A number held to a range is plain decimal
/// (no exponent) of at most <see cref="MaxIntegerDigits"/> integer and <see cref="MaxFractionDigits"/> fraction digits,
/// so every value it can reach is exact in <see cref="decimal"/> and lies on a grid of <see cref="Step"/>: the digits
/// so far then reach a few intervals whose ends are exact, and the range is checked against each.
/// </summary>
/// <remarks>
/// With <c>multipleOf</c> the writable numbers are those multiples of it (OpenAI's structured outputs take it): the grid is
/// then its multiples that the type can write, and an interval reaches the range where one of them lies inside both.
/// </remarks>
public sealed record JsonNumberRange(decimal Lowest, decimal Highest, bool Integer)
{
    public const int MaxIntegerDigits = 15;
    public const int MaxFractionDigits = 12;

    /// <summary>Past this a bound lies beyond every number a ranged answer can write.</summary>
    public const decimal Beyond = 1e15m;

    /// <summary>The spacing of the values a ranged number can write.</summary>
    public decimal Step => Integer ? 1m : 1e-12m;

    /// <summary>The schema's <c>multipleOf</c>, or null.</summary>
    public decimal? MultipleOf { get; private init; }

    /// <summary>With <see cref="MultipleOf"/>: the spacing of the values allowed (its multiples the type can write), in units of 1e-12.</summary>
    private BigInteger Grid { get; init; }

    private const decimal Units = 1e12m;

    /// <summary>
    /// The range a schema's <c>minimum</c>, <c>maximum</c>, <c>exclusiveMinimum</c> and <c>exclusiveMaximum</c> give (a
    /// boolean exclusive form, as in draft 4, makes its bound exclusive), null when it has none. Bounds are rounded inward
    /// to the values a ranged number can write, so the range holds exactly the writable numbers the schema allows.
    /// </summary>
    internal static JsonNumberRange? Read(JsonElement schema, string path, bool integer)
    {
        decimal step = integer ? 1m : 1e-12m;
        bool exclusiveLow = schema.TryGetProperty("exclusiveMinimum", out JsonElement flag) && flag.ValueKind == JsonValueKind.True;
        bool exclusiveHigh = schema.TryGetProperty("exclusiveMaximum", out flag) && flag.ValueKind == JsonValueKind.True;
        decimal lowest = decimal.MinValue, highest = decimal.MaxValue;
        bool any = false;
        foreach ((string name, bool low, bool exclusive) in new[]
        {
            ("minimum", true, exclusiveLow), ("exclusiveMinimum", true, true), ("maximum", false, exclusiveHigh), ("exclusiveMaximum", false, true),
        })
        {
            if (!schema.TryGetProperty(name, out JsonElement bound) || bound.ValueKind is JsonValueKind.True or JsonValueKind.False)
            {
                continue;
            }

            if (bound.ValueKind != JsonValueKind.Number || !bound.TryGetDouble(out double approximate))
            {
                throw new ArgumentException($"{path}.{name}: '{name}' must be a number", "schema");
            }

            if (Math.Abs(approximate) >= (double)Beyond)
            {
                // Past every writable number: no limit on the side it bounds, or no number at all on the other.
                if ((approximate > 0) == low)
                {
                    throw new ArgumentException($"{path}.{name}: {bound.GetRawText()} is past the numbers an answer can be held to (less than 1e15 in size)", "schema");
                }

                continue;
            }

            any = true;

            decimal value = bound.GetDecimal();
            decimal inward = low
                ? (exclusive ? (decimal.Floor(value / step) * step) + step : decimal.Ceiling(value / step) * step)
                : (exclusive ? (decimal.Ceiling(value / step) * step) - step : decimal.Floor(value / step) * step);
            (lowest, highest) = low ? (Math.Max(lowest, inward), highest) : (lowest, Math.Min(highest, inward));
        }

        decimal? multiple = MultipleOfIn(schema, path);
        if (!any && multiple is null)
        {
            return null;
        }

        if (lowest > highest)
        {
            throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{path}: no {(integer ? "integer" : "number")} is at least {lowest:G29} and at most {highest:G29}"), "schema");
        }

        if (multiple is not decimal m)
        {
            return new JsonNumberRange(lowest, highest, integer);
        }

        // Unbounded sides end where a ranged number's digits do.
        decimal widest = Beyond - step;
        var range = new JsonNumberRange(Math.Max(lowest, -widest), Math.Min(highest, widest), integer)
        {
            MultipleOf = m,
            Grid = Lcm(new BigInteger(m * Units), new BigInteger(step * Units)),
        };
        return range.HasPoint(range.Lowest, range.Highest) ? range
            : throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{path}.multipleOf: no {(integer ? "integer" : "number")} from {range.Lowest:G29} to {range.Highest:G29} is a multiple of {m:G29}"), "schema");
    }

    /// <summary>The schema's <c>multipleOf</c>: a positive number of at most <see cref="MaxFractionDigits"/> decimals, below <see cref="Beyond"/>.</summary>
    private static decimal? MultipleOfIn(JsonElement schema, string path)
    {
        if (!schema.TryGetProperty("multipleOf", out JsonElement value))
        {
            return null;
        }

        decimal m = value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out decimal parsed) ? parsed : 0m;
        if (m <= 0m || m >= Beyond || decimal.Round(m, MaxFractionDigits) != m)
        {
            throw new ArgumentException($"{path}.multipleOf: 'multipleOf' must be a positive number below 1e15 with at most {MaxFractionDigits} decimals", "schema");
        }

        return m;
    }

    private static BigInteger Lcm(BigInteger a, BigInteger b) => a / BigInteger.GreatestCommonDivisor(a, b) * b;

    /// <summary>Whether <paramref name="value"/> (a whole number written) is in the range (and a multiple of <see cref="MultipleOf"/>).</summary>
    public bool Holds(decimal value) => value >= Lowest && value <= Highest && (MultipleOf is null || new BigInteger(value * Units) % Grid == 0);

    /// <summary>
    /// Whether a number that began with these digits can end in the range: <paramref name="negative"/> when it began with
    /// a minus; <paramref name="integerDigits"/> digits so far before the point (one at least), whose value is the
    /// integer part of <paramref name="magnitude"/>; <paramref name="fractionDigits"/> after the point, or -1 before one.
    /// </summary>
    public bool Reaches(bool negative, decimal magnitude, int integerDigits, int fractionDigits)
    {
        if (fractionDigits >= 0)
        {
            // After the point only more fraction digits come: the magnitude grows by less than one unit of the last place.
            decimal last = fractionDigits == MaxFractionDigits ? 0m : Power10(-fractionDigits) - Step;
            return Overlaps(negative, magnitude, magnitude + last);
        }

        // j more integer digits, then a fraction (for numbers): [P 10^j, (P + 1) 10^j - step]. A leading zero takes none.
        int most = magnitude == 0m ? 0 : MaxIntegerDigits - integerDigits;
        for (int j = 0; j <= most; j++)
        {
            decimal scale = Power10(j);
            if (Overlaps(negative, magnitude * scale, ((magnitude + 1m) * scale) - Step))
            {
                return true;
            }
        }

        return false;
    }

    private bool Overlaps(bool negative, decimal lowestMagnitude, decimal highestMagnitude)
    {
        (decimal from, decimal to) = negative ? (-highestMagnitude, -lowestMagnitude) : (lowestMagnitude, highestMagnitude);
        return HasPoint(Math.Max(from, Lowest), Math.Min(to, Highest));
    }

    /// <summary>Whether a value allowed lies in [<paramref name="from"/>, <paramref name="to"/>] (ends on the type's grid, inside the range): any, or with <see cref="MultipleOf"/> one of its multiples.</summary>
    private bool HasPoint(decimal from, decimal to)
    {
        if (from > to)
        {
            return false;
        }

        if (MultipleOf is null)
        {
            return true;
        }

        BigInteger first = new(from * Units), last = new(to * Units);
        BigInteger up = BigInteger.Remainder(first, Grid);
        BigInteger multiple = up == 0 ? first : up > 0 ? first - up + Grid : first - up;
        return multiple <= last;
    }

    private static decimal Power10(int exponent)
    {
        decimal power = 1m;
        for (int i = 0; i < Math.Abs(exponent); i++)
        {
            power = exponent > 0 ? power * 10m : power / 10m;
        }

        return power;
    }
}
