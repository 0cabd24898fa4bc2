using System.Text;

namespace QwenSharp.Tokenization.Chat;

/// <summary>Jinja's <c>loop</c> variable inside a for loop.</summary>
internal sealed class LoopInfo(List<object?> items, int index)
{
    public object? Get(string name) => name switch
    {
        "index" => (long)(index + 1),
        "index0" => (long)index,
        "revindex" => (long)(items.Count - index),
        "revindex0" => (long)(items.Count - index - 1),
        "first" => index == 0,
        "last" => index == items.Count - 1,
        "length" => (long)items.Count,
        "previtem" => index > 0 ? items[index - 1] : new Undefined("loop.previtem on the first item"),
        "nextitem" => index + 1 < items.Count ? items[index + 1] : new Undefined("loop.nextitem on the last item"),
        _ => new Undefined($"loop.{name}"),
    };
}

/// <summary>Variables: one scope per for loop, reading through to the enclosing ones, as in Jinja.</summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _variables = [];

    public bool TryGet(string name, out object? value)
    {
        for (Scope? scope = this; scope is not null; scope = scope.Parent)
        {
            if (scope._variables.TryGetValue(name, out value))
            {
                return true;
            }
        }

        value = null;
        return false;
    }

    public Scope? Parent { get; } = parent;

    public void Set(string name, object? value) => _variables[name] = value;
}

/// <summary>Renders a parsed template: statements write text, expressions evaluate to Python-like values (<see cref="PyValues"/>).</summary>
internal sealed class TemplateInterpreter
{
    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    private readonly StringBuilder _output = new();

    public static string Render(IReadOnlyList<Node> nodes, Scope globals)
    {
        var interpreter = new TemplateInterpreter();
        interpreter.Execute(nodes, globals);
        return interpreter._output.ToString();
    }

    private Flow Execute(IReadOnlyList<Node> nodes, Scope scope)
    {
        foreach (Node node in nodes)
        {
            Flow flow = Execute(node, scope);
            if (flow != Flow.Normal)
            {
                return flow;
            }
        }

        return Flow.Normal;
    }

    private Flow Execute(Node node, Scope scope)
    {
        switch (node)
        {
            case TextNode text:
                _output.Append(text.Text);
                return Flow.Normal;
            case OutputNode output:
                _output.Append(PyValues.Str(Evaluate(output.Value, scope)));
                return Flow.Normal;
            case IfNode conditional:
                foreach ((Expr condition, IReadOnlyList<Node> body) in conditional.Branches)
                {
                    if (PyValues.IsTrue(Evaluate(condition, scope)))
                    {
                        return Execute(body, scope);
                    }
                }

                return Execute(conditional.Else, scope);
            case ForNode loop:
                return ExecuteFor(loop, scope);
            case SetNode set:
                ExecuteSet(set, scope);
                return Flow.Normal;
            case BreakNode:
                return Flow.Break;
            case ContinueNode:
                return Flow.Continue;
            default:
                throw new TemplateException($"chat template line {node.Line}: cannot execute {node.GetType().Name}");
        }
    }

    private Flow ExecuteFor(ForNode loop, Scope scope)
    {
        List<object?> items = Iterate(Evaluate(loop.Items, scope), loop.Line);
        var bodyScope = new Scope(scope);
        if (loop.Filter is not null)
        {
            items = [.. items.Where(item =>
            {
                Bind(loop.Targets, item, bodyScope, loop.Line);
                return PyValues.IsTrue(Evaluate(loop.Filter, bodyScope));
            })];
        }

        if (items.Count == 0)
        {
            return Execute(loop.Else, scope);
        }

        for (int i = 0; i < items.Count; i++)
        {
            Bind(loop.Targets, items[i], bodyScope, loop.Line);
            bodyScope.Set("loop", new LoopInfo(items, i));
            if (Execute(loop.Body, bodyScope) == Flow.Break)
            {
                break;
            }
        }

        return Flow.Normal;
    }

    private static void Bind(IReadOnlyList<string> targets, object? value, Scope scope, int line)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], value);
            return;
        }

        if (value is not List<object?> tuple || tuple.Count != targets.Count)
        {
            throw new TemplateException($"chat template line {line}: cannot unpack {PyValues.TypeName(value)} into {targets.Count} names");
        }

        for (int i = 0; i < targets.Count; i++)
        {
            scope.Set(targets[i], tuple[i]);
        }
    }

    private void ExecuteSet(SetNode set, Scope scope)
    {
        object? value = Evaluate(set.Value, scope);
        if (set.Attribute is not null)
        {
            if (!scope.TryGet(set.Targets[0], out object? target) || target is not JinjaNamespace ns)
            {
                throw new TemplateException($"chat template line {set.Line}: 'set {set.Targets[0]}.{set.Attribute}' needs {set.Targets[0]} to be a namespace()");
            }

            ns.Attributes[set.Attribute] = value;
            return;
        }

        Bind(set.Targets, value, scope, set.Line);
    }

    internal static List<object?> Iterate(object? value, int line) => value switch
    {
        List<object?> list => list,
        OrderedDictionary<string, object?> dict => [.. dict.Keys],
        string s => [.. s.EnumerateRunes().Select(r => (object?)r.ToString())],
        Undefined => [],
        _ => throw new TemplateException($"chat template line {line}: {PyValues.TypeName(value)} is not iterable"),
    };

    public object? Evaluate(Expr expr, Scope scope)
    {
        switch (expr)
        {
            case LiteralExpr literal:
                return literal.Value;
            case NameExpr name:
                return scope.TryGet(name.Name, out object? value) ? value
                    : TemplateBuiltins.Global(name.Name) ?? new Undefined($"'{name.Name}' is undefined");
            case AttributeExpr attribute:
                return TemplateBuiltins.GetAttribute(Evaluate(attribute.Target, scope), attribute.Name, attribute.Line);
            case ItemExpr item:
                return TemplateBuiltins.GetItem(Evaluate(item.Target, scope), Evaluate(item.Key, scope), item.Line);
            case SliceExpr slice:
                return TemplateBuiltins.Slice(Evaluate(slice.Target, scope), OptionalInt(slice.Start, scope), OptionalInt(slice.Stop, scope),
                    OptionalInt(slice.Step, scope), slice.Line);
            case CallExpr call:
                return Call(call, scope);
            case FilterExpr filter:
                return TemplateBuiltins.Filter(filter.Name, Evaluate(filter.Value, scope), Positional(filter.Arguments, scope),
                    Named(filter.Arguments, scope), filter.Line);
            case TestExpr test:
                bool result = TemplateBuiltins.Test(test.Name, Evaluate(test.Value, scope), Positional(test.Arguments, scope), test.Line);
                return test.Negated ? !result : result;
            case UnaryExpr unary:
                return Unary(unary, scope);
            case BinaryExpr binary:
                return Binary(binary, scope);
            case ConditionalExpr conditional:
                return PyValues.IsTrue(Evaluate(conditional.Condition, scope)) ? Evaluate(conditional.Then, scope)
                    : conditional.Else is null ? new Undefined("the else of an inline if without one") : Evaluate(conditional.Else, scope);
            case ListExpr list:
                return list.Items.Select(i => Evaluate(i, scope)).ToList();
            case DictExpr dict:
                var result2 = new OrderedDictionary<string, object?>();
                foreach ((Expr key, Expr item) in dict.Items)
                {
                    result2[PyValues.Str(Evaluate(key, scope))] = Evaluate(item, scope);
                }

                return result2;
            default:
                throw new TemplateException($"chat template line {expr.Line}: cannot evaluate {expr.GetType().Name}");
        }
    }

    private long? OptionalInt(Expr? expr, Scope scope) => expr is null ? null : Evaluate(expr, scope) switch
    {
        long l => l,
        null => null,
        object other => throw new TemplateException($"chat template line {expr.Line}: slice index must be an integer, found {PyValues.TypeName(other)}"),
    };

    private List<object?> Positional(IReadOnlyList<Argument> arguments, Scope scope) =>
        [.. arguments.Where(a => a.Name is null).Select(a => Evaluate(a.Value, scope))];

    private Dictionary<string, object?> Named(IReadOnlyList<Argument> arguments, Scope scope) =>
        arguments.Where(a => a.Name is not null).ToDictionary(a => a.Name!, a => Evaluate(a.Value, scope));

    private object? Call(CallExpr call, Scope scope)
    {
        object? function = Evaluate(call.Function, scope);
        if (function is not Callable callable)
        {
            string what = call.Function switch
            {
                NameExpr n => $"'{n.Name}'",
                AttributeExpr a => $"'.{a.Name}'",
                _ => "the expression",
            };
            throw new TemplateException($"chat template line {call.Line}: {what} is not a function QwenSharp's chat-template interpreter knows ({PyValues.TypeName(function)})");
        }

        try
        {
            return callable.Invoke(Positional(call.Arguments, scope), Named(call.Arguments, scope));
        }
        catch (TemplateException)
        {
            throw;
        }
        catch (Exception e) when (e is ArgumentException or InvalidCastException or IndexOutOfRangeException or FormatException)
        {
            throw new TemplateException($"chat template line {call.Line}: {callable.Name}(): {e.Message}", e);
        }
    }

    private object? Unary(UnaryExpr unary, Scope scope)
    {
        object? operand = Evaluate(unary.Operand, scope);
        return unary.Operator switch
        {
            "not" => !PyValues.IsTrue(operand),
            "-" => operand switch
            {
                long l => (object)(-l),
                double d => -d,
                _ => throw new TemplateException($"chat template line {unary.Line}: bad operand for unary -: {PyValues.TypeName(operand)}"),
            },
            _ => operand,
        };
    }

    private object? Binary(BinaryExpr binary, Scope scope)
    {
        object? left = Evaluate(binary.Left, scope);
        switch (binary.Operator)
        {
            case "and":
                return PyValues.IsTrue(left) ? Evaluate(binary.Right, scope) : left;
            case "or":
                return PyValues.IsTrue(left) ? left : Evaluate(binary.Right, scope);
        }

        object? right = Evaluate(binary.Right, scope);
        int line = binary.Line;
        return binary.Operator switch
        {
            "==" => PyValues.Equals(left, right),
            "!=" => !PyValues.Equals(left, right),
            "<" => PyValues.Compare(left, right, line) < 0,
            "<=" => PyValues.Compare(left, right, line) <= 0,
            ">" => PyValues.Compare(left, right, line) > 0,
            ">=" => PyValues.Compare(left, right, line) >= 0,
            "in" => TemplateBuiltins.Contains(right, left, line),
            "not in" => !TemplateBuiltins.Contains(right, left, line),
            "~" => PyValues.Str(left) + PyValues.Str(right),
            _ => TemplateBuiltins.Arithmetic(binary.Operator, left, right, line),
        };
    }
}
