using System.Text;

namespace QwenSharp.Sampling;

/// <summary>
/// An answer that is exactly one of a few texts, byte for byte (vLLM's <c>guided_choice</c>): a classifier's label, a
/// yes or no. The texts still matching are kept as bits, as <see cref="JsonSchemaPrefix"/> keeps an enum's values; the
/// answer may end once one of them is whole, and must once no longer one goes on from it.
/// </summary>
public struct ChoicePrefix : ITextAutomaton
{
    /// <summary>At most this many texts: the candidates are a 64-bit set.</summary>
    public const int MaxChoices = 64;

#pragma warning disable IDE0044 // Feed changes these: the state is a value copied per token tried.
    private byte[][] _choices;
    private ulong _candidates;
    private int _position;
#pragma warning restore IDE0044

    /// <summary>The state before the answer's first byte; the texts must be different, non-empty, and at most <see cref="MaxChoices"/>.</summary>
    public static ChoicePrefix Start(IReadOnlyList<string> choices)
    {
        ArgumentNullException.ThrowIfNull(choices);
        if (choices.Count is 0 or > MaxChoices)
        {
            throw new ArgumentException($"{choices.Count} choices: give 1 to {MaxChoices}", nameof(choices));
        }

        for (int i = 0; i < choices.Count; i++)
        {
            if (string.IsNullOrEmpty(choices[i]))
            {
                throw new ArgumentException($"choice {i} is empty", nameof(choices));
            }

            if (choices.Take(i).Contains(choices[i], StringComparer.Ordinal))
            {
                throw new ArgumentException($"choice {i} ('{choices[i]}') is given twice", nameof(choices));
            }
        }

        return new ChoicePrefix
        {
            _choices = [.. choices.Select(Encoding.UTF8.GetBytes)],
            _candidates = choices.Count == MaxChoices ? ulong.MaxValue : (1UL << choices.Count) - 1,
        };
    }

    public bool Feed(byte b)
    {
        ulong next = 0;
        for (int i = 0; i < _choices.Length; i++)
        {
            if ((_candidates & (1UL << i)) != 0 && _position < _choices[i].Length && _choices[i][_position] == b)
            {
                next |= 1UL << i;
            }
        }

        _candidates = next;
        _position++;
        return next != 0;
    }

    public readonly string KeyFor(int tokenBytes) => $"{_candidates:x}.{_position}";

    /// <summary>One of the texts is whole.</summary>
    public readonly bool CanEnd
    {
        get
        {
            for (int i = 0; i < _choices.Length; i++)
            {
                if ((_candidates & (1UL << i)) != 0 && _choices[i].Length == _position)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>One of the texts is whole and none longer goes on from it.</summary>
    public readonly bool Complete
    {
        get
        {
            for (int i = 0; i < _choices.Length; i++)
            {
                if ((_candidates & (1UL << i)) != 0 && _choices[i].Length > _position)
                {
                    return false;
                }
            }

            return CanEnd;
        }
    }
}
