using System.Globalization;
using System.Text;

namespace QwenSharp.Tokenization.Chat;

internal enum TokenKind
{
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

/// <summary>A token inside <c>{{ }}</c> or <c>{% %}</c>.</summary>
internal readonly record struct Token(TokenKind Kind, string Text, object? Value, int Line)
{
    public bool Is(string text) => (Kind is TokenKind.Operator or TokenKind.Name) && Text == text;

    public override string ToString() => Kind == TokenKind.End ? "end of tag" : $"'{Text}'";
}

internal enum ChunkKind
{
    Text,
    Output,
    Statement,
}

/// <summary>A piece of template source: literal text, an <c>{{ expression }}</c> or a <c>{% statement %}</c>.</summary>
internal sealed record Chunk(ChunkKind Kind, string Text, IReadOnlyList<Token> Tokens, int Line);

/// <summary>
/// Cuts a Jinja template into text, expressions and statements, applying whitespace control as
/// transformers configures Jinja: <c>trim_blocks</c> (the newline after a block tag goes),
/// <c>lstrip_blocks</c> (spaces before a block tag on its line go), and the <c>-</c> modifiers.
/// </summary>
internal static class TemplateLexer
{
    private static readonly string[] s_operators =
        ["//", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "~", "+", "-", "*", "/", "%", "<", ">", "="];

    public static List<Chunk> Split(string source)
    {
        // Jinja reads templates with universal newlines and, without keep_trailing_newline, drops one final newline.
        source = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (source.EndsWith('\n'))
        {
            source = source[..^1];
        }

        var chunks = new List<Chunk>();
        int position = 0;
        int line = 1;
        bool trimNextNewline = false;
        bool stripNextWhitespace = false;
        while (position < source.Length)
        {
            int open = FindTagOpen(source, position);
            string text = source[position..(open < 0 ? source.Length : open)];
            if (stripNextWhitespace)
            {
                text = text.TrimStart();
            }
            else if (trimNextNewline && text.StartsWith('\n'))
            {
                text = text[1..];
            }
            else if (trimNextNewline && text.StartsWith("\r\n", StringComparison.Ordinal))
            {
                text = text[2..];
            }

            if (open < 0)
            {
                AddText(chunks, text, line);
                break;
            }

            char kind = source[open + 1];
            char modifier = open + 2 < source.Length ? source[open + 2] : '\0';
            if (modifier == '-')
            {
                text = text.TrimEnd();
            }
            else if (kind is '%' or '#' && modifier != '+')
            {
                text = LStripBlock(text, source, open);
            }

            AddText(chunks, text, line);
            line += Count(source.AsSpan(position, open - position), '\n');
            int tagLine = line;
            string close = kind switch { '{' => "}}", '%' => "%}", _ => "#}" };
            int closeAt = kind == '#' ? source.IndexOf(close, open + 2, StringComparison.Ordinal) : FindClose(source, open + 2, close);
            if (closeAt < 0)
            {
                throw new TemplateException($"chat template line {tagLine}: '{source.Substring(open, 2)}' is never closed by '{close}'");
            }

            int innerStart = open + 2 + (modifier is '-' or '+' ? 1 : 0);
            bool stripAfter = closeAt > innerStart && source[closeAt - 1] == '-';
            int innerEnd = stripAfter ? closeAt - 1 : closeAt;
            string inner = source[innerStart..Math.Max(innerStart, innerEnd)];
            if (kind != '#')
            {
                List<Token> tokens = Tokenize(inner, tagLine);
                chunks.Add(new Chunk(kind == '{' ? ChunkKind.Output : ChunkKind.Statement, inner, tokens, tagLine));
            }

            line += Count(source.AsSpan(open, closeAt + 2 - open), '\n');
            position = closeAt + 2;
            stripNextWhitespace = stripAfter;
            trimNextNewline = kind is '%' or '#';
        }

        return chunks;
    }

    private static void AddText(List<Chunk> chunks, string text, int line)
    {
        if (text.Length > 0)
        {
            chunks.Add(new Chunk(ChunkKind.Text, text, [], line));
        }
    }

    private static int FindTagOpen(string source, int from)
    {
        for (int i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
        {
            if (source[i + 1] is '{' or '%' or '#')
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>The closing delimiter, skipping string literals and brackets (a nested dict's "}}" is not the end).</summary>
    private static int FindClose(string source, int from, string close)
    {
        char quote = '\0';
        int depth = 0;
        for (int i = from; i < source.Length - 1; i++)
        {
            char c = source[i];
            if (quote != '\0')
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == quote)
                {
                    quote = '\0';
                }
            }
            else if (c is '\'' or '"')
            {
                quote = c;
            }
            else if (depth == 0 && c == close[0] && source[i + 1] == close[1])
            {
                return i;
            }
            else if (c is '(' or '[' or '{')
            {
                depth++;
            }
            else if (c is ')' or ']' or '}' && depth > 0)
            {
                depth--;
            }
        }

        return -1;
    }

    /// <summary>lstrip_blocks: spaces and tabs between the line start and a block tag are removed.</summary>
    private static string LStripBlock(string text, string source, int open)
    {
        int lineStart = text.LastIndexOf('\n') + 1;
        ReadOnlySpan<char> tail = text.AsSpan(lineStart);
        bool atLineStart = lineStart > 0 || open - text.Length == 0 || IsLineStartInSource(source, open - text.Length);
        return atLineStart && tail.TrimStart(" \t").IsEmpty ? text[..lineStart] : text;
    }

    private static bool IsLineStartInSource(string source, int index) => index == 0 || source[index - 1] == '\n';

    private static int Count(ReadOnlySpan<char> text, char c)
    {
        int count = 0;
        foreach (char x in text)
        {
            count += x == c ? 1 : 0;
        }

        return count;
    }

    private static List<Token> Tokenize(string text, int line)
    {
        var tokens = new List<Token>();
        int i = 0;
        while (i < text.Length)
        {
            char c = text[i];
            if (char.IsWhiteSpace(c))
            {
                line += c == '\n' ? 1 : 0;
                i++;
                continue;
            }

            if (char.IsLetter(c) || c == '_')
            {
                int start = i;
                while (i < text.Length && (char.IsLetterOrDigit(text[i]) || text[i] == '_'))
                {
                    i++;
                }

                tokens.Add(new Token(TokenKind.Name, text[start..i], null, line));
                continue;
            }

            if (char.IsAsciiDigit(c))
            {
                int start = i;
                while (i < text.Length && (char.IsAsciiDigit(text[i]) || text[i] == '_'))
                {
                    i++;
                }

                bool isFloat = false;
                if (i + 1 < text.Length && text[i] == '.' && char.IsAsciiDigit(text[i + 1]))
                {
                    isFloat = true;
                    i++;
                    while (i < text.Length && char.IsAsciiDigit(text[i]))
                    {
                        i++;
                    }
                }

                if (i < text.Length && text[i] is 'e' or 'E')
                {
                    isFloat = true;
                    i++;
                    if (i < text.Length && text[i] is '+' or '-')
                    {
                        i++;
                    }

                    while (i < text.Length && char.IsAsciiDigit(text[i]))
                    {
                        i++;
                    }
                }

                string number = text[start..i].Replace("_", "", StringComparison.Ordinal);
                tokens.Add(isFloat
                    ? new Token(TokenKind.Float, number, double.Parse(number, CultureInfo.InvariantCulture), line)
                    : new Token(TokenKind.Integer, number, long.Parse(number, CultureInfo.InvariantCulture), line));
                continue;
            }

            if (c is '\'' or '"')
            {
                (string value, int end) = ReadString(text, i, line);
                tokens.Add(new Token(TokenKind.String, text[i..end], value, line));
                i = end;
                continue;
            }

            string? op = s_operators.FirstOrDefault(o => string.CompareOrdinal(text, i, o, 0, o.Length) == 0);
            if (op is null)
            {
                throw new TemplateException($"chat template line {line}: unexpected character '{c}'");
            }

            tokens.Add(new Token(TokenKind.Operator, op, null, line));
            i += op.Length;
        }

        tokens.Add(new Token(TokenKind.End, "", null, line));
        return tokens;
    }

    /// <summary>A Python-style string literal with its escapes.</summary>
    private static (string Value, int End) ReadString(string text, int start, int line)
    {
        char quote = text[start];
        var value = new StringBuilder();
        for (int i = start + 1; i < text.Length; i++)
        {
            char c = text[i];
            if (c == quote)
            {
                return (value.ToString(), i + 1);
            }

            if (c != '\\' || i + 1 >= text.Length)
            {
                value.Append(c);
                continue;
            }

            char e = text[++i];
            switch (e)
            {
                case 'n': value.Append('\n'); break;
                case 't': value.Append('\t'); break;
                case 'r': value.Append('\r'); break;
                case '0': value.Append('\0'); break;
                case 'b': value.Append('\b'); break;
                case 'f': value.Append('\f'); break;
                case '\\' or '\'' or '"': value.Append(e); break;
                case 'u' when i + 4 < text.Length:
                    value.Append((char)int.Parse(text.AsSpan(i + 1, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    i += 4;
                    break;
                case 'x' when i + 2 < text.Length:
                    value.Append((char)int.Parse(text.AsSpan(i + 1, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    i += 2;
                    break;
                case '\n':
                    break;
                default:
                    value.Append('\\').Append(e);
                    break;
            }
        }

        throw new TemplateException($"chat template line {line}: string literal is never closed");
    }
}
