using System.Text;

namespace QwenSharp.Sampling;

/// <summary>
/// Whether the bytes fed so far begin a JSON value that a <see cref="JsonSchema"/> allows and that can still be
/// finished: OpenAI's <c>response_format: json_schema</c>, one byte at a time. The open containers are a persistent
/// stack of frames, so a copy of the state (trying a token) shares them; strings, numbers and literals are
/// <see cref="JsonScalar"/>'s; property keys and enum values are matched against their written bytes, several at once
/// while they share a beginning. Limits keep a model from stalling in one place: no whitespace before the answer, and
/// between tokens only <see cref="JsonWhitespace"/>'s (llama.cpp's rule); numbers of at most
/// <see cref="JsonScalar.MaxNumberBytes"/> bytes; nesting <see cref="MaxDepth"/> deep. Strings' lengths, arrays' item
/// counts and numbers' ranges are kept as they are written: a byte that would leave no way to meet them is refused. Over
/// <see cref="JsonSchema.AnyObject"/> it takes any JSON object (OpenAI's <c>json_object</c>); whatever it calls
/// <see cref="Complete"/> is an answer System.Text.Json parses and the schema allows.
/// </summary>
public struct JsonSchemaPrefix : ITextAutomaton
{
    /// <summary>Containers open at once, at most.</summary>
    public const int MaxDepth = 64;

    private Frame? _frames;         // the open containers, innermost first
    private JsonSchemaNode _node;   // Value: the node of the value to begin; Enum: the enum's node; Colon: the value's node
    private Mode _mode;
    private ulong _candidates;      // KeyMatch: properties, Enum: values, still matching
    private int _position;          // KeyMatch, Enum: bytes matched
    private int _depth;
    private byte _whitespace;
    private bool _key;              // the scalar is a key of an object without listed properties
    private JsonScalar _scalar;

    private enum Mode : byte
    {
        Start,
        ValueOrClose,
        Value,
        KeyOrClose,
        Key,
        KeyMatch,
        Colon,
        AfterValue,
        Scalar,
        Enum,
        Done,
    }

    /// <summary>
    /// An open object or array: its node; for an object with listed properties the first one that may still come, for an
    /// array with item limits (or first items of their own) the items begun (left 0 otherwise, so that states differing only
    /// in it are one); for an array whose items must differ the values written (bits of its items' enum); for an object
    /// with key limits the keys written.
    /// </summary>
    private sealed record Frame(Frame? Parent, JsonSchemaNode Node, bool IsObject, int Next, ulong Written = 0, int Keys = 0);

    /// <summary>The state before the answer's first byte.</summary>
    public static JsonSchemaPrefix Start(JsonSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return new JsonSchemaPrefix { _node = schema.Root, _mode = Mode.Start };
    }

    /// <summary>The text so far is a whole answer, and nothing may follow it.</summary>
    public readonly bool Complete => _mode == Mode.Done;

    /// <summary>A JSON answer may end only when it is whole (<see cref="Complete"/>).</summary>
    public readonly bool CanEnd => Complete;

    /// <summary>
    /// The state as a string: states with equal keys allow the same next tokens, of at most <paramref name="tokenBytes"/>
    /// bytes each (<see cref="TokenMasks"/> keeps a mask per key).
    /// </summary>
    public readonly string KeyFor(int tokenBytes)
    {
        var key = new StringBuilder();
        key.Append(System.Globalization.CultureInfo.InvariantCulture, $"{(byte)_mode}.{_node?.Id}.{_candidates:x}.{_position}.{_whitespace}.{(_key ? 1 : 0)}.");
        key.Append(_mode == Mode.Scalar ? _scalar.KeyFor(tokenBytes) : "");
        for (Frame? frame = _frames; frame is not null; frame = frame.Parent)
        {
            key.Append(System.Globalization.CultureInfo.InvariantCulture, $"/{frame.Node.Id}{(frame.IsObject ? 'o' : 'a')}{frame.Next}.{frame.Written:x}.{frame.Keys}");
        }

        return key.ToString();
    }

    /// <summary>Takes one byte; false (the state then undefined) when no answer the schema allows begins with the bytes so far.</summary>
    public bool Feed(byte b)
    {
        switch (_mode)
        {
            case Mode.Scalar:
                return FeedScalar(b);
            case Mode.Enum:
                return FeedEnum(b);
            case Mode.KeyMatch:
                return FeedKey(b);
            case Mode.Done:
                return false;
        }

        if (b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r')
        {
            return _mode != Mode.Start && JsonWhitespace.Take(ref _whitespace, b);
        }

        _whitespace = 0;
        return _mode switch
        {
            Mode.Start or Mode.Value => BeginValue(b),
            Mode.ValueOrClose => b == ']' ? Close(isObject: false) : BeginItem(b),
            Mode.KeyOrClose => b == '}' ? Close(isObject: true) : BeginKey(b),
            Mode.Key => BeginKey(b),
            Mode.Colon => b == ':' && Become(Mode.Value),
            _ => FeedAfterValue(b),
        };
    }

    private bool Become(Mode mode)
    {
        _mode = mode;
        return true;
    }

    private bool BeginValue(byte b)
    {
        JsonSchemaNode node = _node;
        if (node.Enum is byte[][] values)
        {
            // An item of an array whose items must differ: not one of the values written already.
            ulong open = _frames is { IsObject: false, Node.UniqueItems: true } array ? ~array.Written : ulong.MaxValue;
            _candidates = Matching(values, open, 0, b);
            _position = 1;
            return _candidates != 0 && Become(Mode.Enum);
        }

        if (b == '{' && node.Kinds.HasFlag(JsonKinds.Object))
        {
            return Open(node, isObject: true);
        }

        if (b == '[' && node.Kinds.HasFlag(JsonKinds.Array))
        {
            return Open(node, isObject: false);
        }

        _key = false;
        return JsonScalar.TryBegin(b, node.Kinds, node, out _scalar) && Become(Mode.Scalar);
    }

    private bool Open(JsonSchemaNode node, bool isObject)
    {
        if (_depth == MaxDepth)
        {
            return false;
        }

        _frames = new Frame(_frames, node, isObject, 0);
        _depth++;
        if (!isObject)
        {
            _node = node.ItemAt(0);
        }

        return Become(isObject ? Mode.KeyOrClose : Mode.ValueOrClose);
    }

    private bool Close(bool isObject)
    {
        Frame? frame = _frames;
        if (frame is null || frame.IsObject != isObject || (isObject ? !MayClose(frame) : frame.Next < frame.Node.MinItems))
        {
            return false;
        }

        _frames = frame.Parent;
        _depth--;
        if (_frames is { IsObject: false } array)
        {
            // The item just closed (counted arrays have counted it).
            _node = array.Node.ItemAt(Math.Max(array.Next - 1, 0));
        }

        return Become(_frames is null ? Mode.Done : Mode.AfterValue);
    }

    /// <summary>The first item of an array.</summary>
    private bool BeginItem(byte b) => Counted(_frames!) && BeginValue(b);

    /// <summary>One more item begun in <paramref name="array"/>: refused past its <c>maxItems</c>, counted where it has limits.</summary>
    private bool Counted(Frame array)
    {
        if (!array.Node.CountsItems)
        {
            return true;
        }

        if (array.Next == array.Node.MaxItems)
        {
            return false;
        }

        _frames = array with { Next = array.Next + 1 };
        return true;
    }

    /// <summary>An object may close when no required property is still to come and it has its least number of keys.</summary>
    private static bool MayClose(Frame frame) =>
        (frame.Node.Properties is not { } properties || properties.Skip(frame.Next).All(p => !p.Required)) && frame.Keys >= frame.Node.MinProperties;

    /// <summary>Whether an object without listed properties may take another key: it takes values at all, and not past its most.</summary>
    private static bool MapTakesKey(Frame frame) => frame.Node.Values is not null && frame.Keys < frame.Node.MaxProperties;

    /// <summary>One more key written, where the object counts them.</summary>
    private static Frame Keyed(Frame frame) => frame.Node.CountsProperties ? frame with { Keys = frame.Keys + 1 } : frame;

    /// <summary>The properties that may come next: each from <see cref="Frame.Next"/> on up to and including the first required one.</summary>
    private static ulong KeyCandidates(Frame frame)
    {
        IReadOnlyList<JsonSchemaProperty> properties = frame.Node.Properties!;
        ulong candidates = 0;
        for (int j = frame.Next; j < properties.Count; j++)
        {
            // With key limits: the required properties after this one must still fit, and enough may still follow it.
            bool fits = !frame.Node.CountsProperties
                || (frame.Keys + 1 + properties.Skip(j + 1).Count(p => p.Required) <= frame.Node.MaxProperties
                    && frame.Keys + 1 + (properties.Count - j - 1) >= frame.Node.MinProperties);
            candidates |= fits ? 1UL << j : 0;
            if (properties[j].Required)
            {
                break;
            }
        }

        return candidates;
    }

    private bool BeginKey(byte b)
    {
        Frame frame = _frames!;
        if (frame.Node.Properties is null)
        {
            // Any key, when the object takes values at all (additionalProperties: false without properties takes none).
            _key = true;
            return MapTakesKey(frame) && JsonScalar.TryBegin(b, JsonKinds.String, frame.Node.KeyNames, out _scalar) && Become(Mode.Scalar);
        }

        _candidates = Matching(frame.Node.Keys!, KeyCandidates(frame), 0, b);
        _position = 1;
        return _candidates != 0 && Become(Mode.KeyMatch);
    }

    /// <summary>The candidates among <paramref name="candidates"/> whose byte at <paramref name="position"/> is <paramref name="b"/>.</summary>
    private static ulong Matching(byte[][] texts, ulong candidates, int position, byte b)
    {
        ulong matching = 0;
        for (int i = 0; i < texts.Length; i++)
        {
            if ((candidates & (1UL << i)) != 0 && position < texts[i].Length && texts[i][position] == b)
            {
                matching |= 1UL << i;
            }
        }

        return matching;
    }

    private bool FeedKey(byte b)
    {
        Frame frame = _frames!;
        IReadOnlyList<JsonSchemaProperty> properties = frame.Node.Properties!;
        _candidates = Matching(frame.Node.Keys!, _candidates, _position, b);
        _position++;
        if (_candidates == 0)
        {
            return false;
        }

        // Keys are quoted, so no key is the beginning of another: one that is whole is the only one left.
        int chosen = System.Numerics.BitOperations.TrailingZeroCount(_candidates);
        if (properties[chosen].Key.Length == _position)
        {
            _frames = Keyed(frame) with { Next = chosen + 1 };
            _node = properties[chosen].Value;
            return Become(Mode.Colon);
        }

        return true;
    }

    private bool FeedEnum(byte b)
    {
        byte[][] values = _node.Enum!;
        ulong next = Matching(values, _candidates, _position, b);
        if (next != 0)
        {
            _candidates = next;
            _position++;
            return true;
        }

        // No value goes on with this byte: it ends the value when one of them is whole (a number or literal has no end mark).
        for (int i = 0; i < values.Length; i++)
        {
            if ((_candidates & (1UL << i)) != 0 && values[i].Length == _position)
            {
                if (_frames is { IsObject: true, Node.Variants: { } variants, Next: 1 } tagged)
                {
                    // A tagged union's tag: its value picks the alternative the object goes on as.
                    _frames = tagged with { Node = variants[i], Next = 0 };
                }
                else if (_frames is { IsObject: false, Node.UniqueItems: true } array)
                {
                    _frames = array with { Written = array.Written | (1UL << i) };
                }

                return Become(Mode.AfterValue) && Feed(b);
            }
        }

        return false;
    }

    private bool FeedScalar(byte b)
    {
        switch (_scalar.Feed(b))
        {
            case ScalarStep.Taken:
                return true;
            case ScalarStep.Finished when _key:
                _frames = Keyed(_frames!);
                _node = _frames.Node.Values!;
                return Become(Mode.Colon);
            case ScalarStep.Finished:
                return Become(Mode.AfterValue);
            case ScalarStep.Ended:
                return Become(Mode.AfterValue) && Feed(b);
            default:
                return false;
        }
    }

    private bool FeedAfterValue(byte b)
    {
        Frame frame = _frames!;
        switch (b)
        {
            case (byte)',' when frame.IsObject:
                return (frame.Node.Properties is null ? MapTakesKey(frame) : KeyCandidates(frame) != 0) && Become(Mode.Key);
            case (byte)',':
                if (!Counted(frame))
                {
                    return false;
                }

                _node = frame.Node.ItemAt(frame.Next);
                return Become(Mode.Value);
            case (byte)'}':
                return Close(isObject: true);
            case (byte)']':
                return Close(isObject: false);
            default:
                return false;
        }
    }
}
