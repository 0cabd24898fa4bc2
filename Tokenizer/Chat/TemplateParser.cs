namespace QwenSharp.Tokenization.Chat;

/// <summary>
/// Parses the Jinja subset chat templates use: if/elif/else, for (with <c>loop</c>, a filter and else),
/// set (names, tuples, namespace attributes), break/continue, and expressions with Jinja's precedence.
/// Anything else (macros, includes, call blocks) is a <see cref="TemplateException"/> naming it and its line.
/// </summary>
internal sealed class TemplateParser
{
    private readonly List<Chunk> _chunks;
    private int _chunk;
    private IReadOnlyList<Token> _tokens = [];
    private int _token;

    private TemplateParser(List<Chunk> chunks) => _chunks = chunks;

    public static IReadOnlyList<Node> Parse(string source)
    {
        var parser = new TemplateParser(TemplateLexer.Split(source));
        List<Node> body = parser.ParseBody(out string? end);
        if (end is not null)
        {
            throw parser.Error($"'{end}' without a matching opening tag");
        }

        return body;
    }

    /// <summary>Parses nodes until an end-like statement (returned in <paramref name="end"/>) or the end of the template.</summary>
    private List<Node> ParseBody(out string? end, params string[] ends)
    {
        var nodes = new List<Node>();
        while (_chunk < _chunks.Count)
        {
            Chunk chunk = _chunks[_chunk++];
            switch (chunk.Kind)
            {
                case ChunkKind.Text:
                    nodes.Add(new TextNode(chunk.Text, chunk.Line));
                    break;
                case ChunkKind.Output:
                    Begin(chunk);
                    nodes.Add(new OutputNode(ParseExpression(), chunk.Line));
                    ExpectEnd();
                    break;
                default:
                    Begin(chunk);
                    string keyword = Peek.Kind == TokenKind.Name ? Peek.Text : "";
                    if (ends.Contains(keyword))
                    {
                        _token++;
                        end = keyword;
                        return nodes;
                    }

                    if (keyword is "endif" or "endfor" or "else" or "elif" or "endset" or "endgeneration")
                    {
                        throw Error($"unexpected '{keyword}'");
                    }

                    Node? node = ParseStatement(keyword, chunk.Line);
                    if (node is not null)
                    {
                        nodes.Add(node);
                    }

                    break;
            }
        }

        if (ends.Length > 0)
        {
            throw new TemplateException($"chat template: missing '{{% {ends[^1]} %}}' at the end of the template");
        }

        end = null;
        return nodes;
    }

    private Node? ParseStatement(string keyword, int line)
    {
        _token++;
        switch (keyword)
        {
            case "if":
                return ParseIf(line);
            case "for":
                return ParseFor(line);
            case "set":
                return ParseSet(line);
            case "break":
                ExpectEnd();
                return new BreakNode(line);
            case "continue":
                ExpectEnd();
                return new ContinueNode(line);
            case "generation":
                // transformers' AssistantTracker marks assistant text for masks; for rendering it is a no-op block.
                ExpectEnd();
                return new IfNode([(new LiteralExpr(true, line), ParseBody(out _, "endgeneration"))], [], line);
            default:
                _token--;
                throw Error(keyword.Length == 0 ? "a statement must start with a keyword"
                    : $"the statement '{keyword}' is not supported by QwenSharp's chat-template interpreter");
        }
    }

    private IfNode ParseIf(int line)
    {
        var branches = new List<(Expr, IReadOnlyList<Node>)>();
        Expr condition = ParseExpression();
        ExpectEnd();
        while (true)
        {
            List<Node> body = ParseBody(out string? end, "elif", "else", "endif");
            branches.Add((condition, body));
            if (end == "elif")
            {
                condition = ParseExpression();
                ExpectEnd();
                continue;
            }

            ExpectEnd();
            if (end == "else")
            {
                List<Node> elseBody = ParseBody(out _, "endif");
                ExpectEnd();
                return new IfNode(branches, elseBody, line);
            }

            return new IfNode(branches, [], line);
        }
    }

    private ForNode ParseFor(int line)
    {
        var targets = new List<string> { ExpectName() };
        while (Peek.Is(","))
        {
            _token++;
            targets.Add(ExpectName());
        }

        if (!Peek.Is("in"))
        {
            throw Error($"expected 'in' after the loop variable, found {Peek}");
        }

        _token++;
        Expr items = ParseOr(allowConditional: false);
        Expr? filter = null;
        if (Peek.Is("if"))
        {
            _token++;
            filter = ParseExpression();
        }

        if (Peek.Is("recursive"))
        {
            throw Error("recursive loops are not supported");
        }

        ExpectEnd();
        List<Node> body = ParseBody(out string? end, "else", "endfor");
        ExpectEnd();
        List<Node> elseBody = [];
        if (end == "else")
        {
            elseBody = ParseBody(out _, "endfor");
            ExpectEnd();
        }

        return new ForNode(targets, items, filter, body, elseBody, line);
    }

    private SetNode ParseSet(int line)
    {
        var targets = new List<string> { ExpectName() };
        string? attribute = null;
        if (Peek.Is("."))
        {
            _token++;
            attribute = ExpectName();
        }

        while (Peek.Is(","))
        {
            _token++;
            targets.Add(ExpectName());
        }

        if (!Peek.Is("="))
        {
            throw Error("block 'set' (without '=') is not supported");
        }

        _token++;
        Expr value = ParseExpression();
        if (targets.Count > 1 && Peek.Is(","))
        {
            var items = new List<Expr> { value };
            while (Peek.Is(","))
            {
                _token++;
                items.Add(ParseExpression());
            }

            value = new ListExpr(items, line);
        }

        ExpectEnd();
        return new SetNode(targets, attribute, value, line);
    }

    // Expressions, lowest precedence first, as Jinja's parser orders them.

    private Expr ParseExpression() => ParseOr(allowConditional: true);

    private Expr ParseOr(bool allowConditional)
    {
        Expr left = ParseAnd();
        while (Peek.Is("or"))
        {
            int line = Next().Line;
            left = new BinaryExpr("or", left, ParseAnd(), line);
        }

        if (allowConditional && Peek.Is("if"))
        {
            int line = Next().Line;
            Expr condition = ParseOr(allowConditional: false);
            Expr? otherwise = null;
            if (Peek.Is("else"))
            {
                _token++;
                otherwise = ParseOr(allowConditional: true);
            }

            return new ConditionalExpr(condition, left, otherwise, line);
        }

        return left;
    }

    private Expr ParseAnd()
    {
        Expr left = ParseNot();
        while (Peek.Is("and"))
        {
            int line = Next().Line;
            left = new BinaryExpr("and", left, ParseNot(), line);
        }

        return left;
    }

    private Expr ParseNot()
    {
        if (Peek.Is("not"))
        {
            int line = Next().Line;
            return new UnaryExpr("not", ParseNot(), line);
        }

        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        Expr left = ParseMath1();
        while (true)
        {
            Token token = Peek;
            if (token.Kind == TokenKind.Operator && token.Text is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                _token++;
                left = new BinaryExpr(token.Text, left, ParseMath1(), token.Line);
            }
            else if (token.Is("in"))
            {
                _token++;
                left = new BinaryExpr("in", left, ParseMath1(), token.Line);
            }
            else if (token.Is("not") && PeekAt(1).Is("in"))
            {
                _token += 2;
                left = new BinaryExpr("not in", left, ParseMath1(), token.Line);
            }
            else
            {
                return left;
            }
        }
    }

    private Expr ParseMath1()
    {
        Expr left = ParseConcat();
        while (Peek.Kind == TokenKind.Operator && Peek.Text is "+" or "-")
        {
            Token op = Next();
            left = new BinaryExpr(op.Text, left, ParseConcat(), op.Line);
        }

        return left;
    }

    private Expr ParseConcat()
    {
        Expr left = ParseMath2();
        while (Peek.Is("~"))
        {
            int line = Next().Line;
            left = new BinaryExpr("~", left, ParseMath2(), line);
        }

        return left;
    }

    private Expr ParseMath2()
    {
        Expr left = ParsePow();
        while (Peek.Kind == TokenKind.Operator && Peek.Text is "*" or "/" or "//" or "%")
        {
            Token op = Next();
            left = new BinaryExpr(op.Text, left, ParsePow(), op.Line);
        }

        return left;
    }

    private Expr ParsePow()
    {
        Expr left = ParseUnary();
        while (Peek.Is("**"))
        {
            int line = Next().Line;
            left = new BinaryExpr("**", left, ParseUnary(), line);
        }

        return left;
    }

    private Expr ParseUnary()
    {
        if (Peek.Kind == TokenKind.Operator && Peek.Text is "-" or "+")
        {
            Token op = Next();
            // As in Jinja, filters after a negative number apply to the negation: -3|abs is 3.
            return ParseFiltersAndTests(new UnaryExpr(op.Text, ParseUnaryOperand(), op.Line));
        }

        return ParseFiltersAndTests(ParsePostfix(ParsePrimary()));
    }

    private Expr ParseUnaryOperand()
    {
        if (Peek.Kind == TokenKind.Operator && Peek.Text is "-" or "+")
        {
            Token op = Next();
            return new UnaryExpr(op.Text, ParseUnaryOperand(), op.Line);
        }

        return ParsePostfix(ParsePrimary());
    }

    private Expr ParseFiltersAndTests(Expr value)
    {
        while (true)
        {
            if (Peek.Is("|"))
            {
                int line = Next().Line;
                string name = ExpectName();
                IReadOnlyList<Argument> arguments = Peek.Is("(") ? ParseArguments() : [];
                value = ParsePostfix(new FilterExpr(value, name, arguments, line));
            }
            else if (Peek.Is("is"))
            {
                int line = Next().Line;
                bool negated = false;
                if (Peek.Is("not"))
                {
                    _token++;
                    negated = true;
                }

                // Test names include none, true and false, which the lexer gives as names too.
                string name = ExpectName();
                IReadOnlyList<Argument> arguments = [];
                if (Peek.Is("("))
                {
                    arguments = ParseArguments();
                }
                else if (Peek.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                    || (Peek.Kind == TokenKind.Name && !Peek.Is("and") && !Peek.Is("or") && !Peek.Is("else") && !Peek.Is("if")))
                {
                    // Jinja allows one argument without parentheses: `x is divisibleby 3`.
                    arguments = [new Argument(null, ParsePostfix(ParsePrimary()))];
                }

                value = new TestExpr(value, name, arguments, negated, line);
            }
            else
            {
                return value;
            }
        }
    }

    private Expr ParsePostfix(Expr value)
    {
        while (true)
        {
            if (Peek.Is("."))
            {
                int line = Next().Line;
                Token name = Next();
                if (name.Kind is not (TokenKind.Name or TokenKind.Integer))
                {
                    throw Error($"expected an attribute name after '.', found {name}");
                }

                value = name.Kind == TokenKind.Integer
                    ? new ItemExpr(value, new LiteralExpr(name.Value, line), line)
                    : new AttributeExpr(value, name.Text, line);
            }
            else if (Peek.Is("["))
            {
                value = ParseSubscript(value);
            }
            else if (Peek.Is("("))
            {
                int line = Peek.Line;
                value = new CallExpr(value, ParseArguments(), line);
            }
            else
            {
                return value;
            }
        }
    }

    private Expr ParseSubscript(Expr target)
    {
        int line = Next().Line;
        Expr? start = null, stop = null, step = null;
        if (!Peek.Is(":"))
        {
            start = ParseExpression();
            if (Peek.Is("]"))
            {
                _token++;
                return new ItemExpr(target, start, line);
            }
        }

        Expect(":");
        if (!Peek.Is(":") && !Peek.Is("]"))
        {
            stop = ParseExpression();
        }

        if (Peek.Is(":"))
        {
            _token++;
            if (!Peek.Is("]"))
            {
                step = ParseExpression();
            }
        }

        Expect("]");
        return new SliceExpr(target, start, stop, step, line);
    }

    private List<Argument> ParseArguments()
    {
        Expect("(");
        var arguments = new List<Argument>();
        while (!Peek.Is(")"))
        {
            if (Peek.Kind == TokenKind.Name && PeekAt(1).Is("="))
            {
                string name = Next().Text;
                _token++;
                arguments.Add(new Argument(name, ParseExpression()));
            }
            else
            {
                arguments.Add(new Argument(null, ParseExpression()));
            }

            if (!Peek.Is(","))
            {
                break;
            }

            _token++;
        }

        Expect(")");
        return arguments;
    }

    private Expr ParsePrimary()
    {
        Token token = Next();
        switch (token.Kind)
        {
            case TokenKind.String:
                string text = (string)token.Value!;
                // Adjacent string literals concatenate, as in Python.
                while (Peek.Kind == TokenKind.String)
                {
                    text += (string)Next().Value!;
                }

                return new LiteralExpr(text, token.Line);
            case TokenKind.Integer:
            case TokenKind.Float:
                return new LiteralExpr(token.Value, token.Line);
            case TokenKind.Name:
                return token.Text switch
                {
                    "true" or "True" => new LiteralExpr(true, token.Line),
                    "false" or "False" => new LiteralExpr(false, token.Line),
                    "none" or "None" => new LiteralExpr(null, token.Line),
                    _ => new NameExpr(token.Text, token.Line),
                };
            case TokenKind.Operator when token.Text == "(":
                Expr inner = ParseExpression();
                if (Peek.Is(","))
                {
                    var tuple = new List<Expr> { inner };
                    while (Peek.Is(","))
                    {
                        _token++;
                        if (Peek.Is(")"))
                        {
                            break;
                        }

                        tuple.Add(ParseExpression());
                    }

                    inner = new ListExpr(tuple, token.Line);
                }

                Expect(")");
                return inner;
            case TokenKind.Operator when token.Text == "[":
                var items = new List<Expr>();
                while (!Peek.Is("]"))
                {
                    items.Add(ParseExpression());
                    if (!Peek.Is(","))
                    {
                        break;
                    }

                    _token++;
                }

                Expect("]");
                return new ListExpr(items, token.Line);
            case TokenKind.Operator when token.Text == "{":
                var pairs = new List<(Expr, Expr)>();
                while (!Peek.Is("}"))
                {
                    Expr key = ParseExpression();
                    Expect(":");
                    pairs.Add((key, ParseExpression()));
                    if (!Peek.Is(","))
                    {
                        break;
                    }

                    _token++;
                }

                Expect("}");
                return new DictExpr(pairs, token.Line);
            default:
                _token--;
                throw Error($"expected a value, found {token}");
        }
    }

    private void Begin(Chunk chunk)
    {
        _tokens = chunk.Tokens;
        _token = 0;
    }

    private Token Peek => _tokens[Math.Min(_token, _tokens.Count - 1)];

    private Token PeekAt(int offset) => _tokens[Math.Min(_token + offset, _tokens.Count - 1)];

    private Token Next()
    {
        Token token = Peek;
        _token = Math.Min(_token + 1, _tokens.Count - 1);
        return token;
    }

    private void Expect(string text)
    {
        if (!Peek.Is(text))
        {
            throw Error($"expected '{text}', found {Peek}");
        }

        _token++;
    }

    private void ExpectEnd()
    {
        if (Peek.Kind != TokenKind.End)
        {
            throw Error($"unexpected {Peek}");
        }
    }

    private string ExpectName()
    {
        Token token = Next();
        return token.Kind == TokenKind.Name ? token.Text : throw Error($"expected a name, found {token}");
    }

    private TemplateException Error(string message) => new($"chat template line {Peek.Line}: {message}");
}
