namespace QwenSharp.Tokenization.Chat;

// The syntax tree of a template. Statements render output; expressions compute values.

internal abstract record Node(int Line);

internal sealed record TextNode(string Text, int Line) : Node(Line);

internal sealed record OutputNode(Expr Value, int Line) : Node(Line);

internal sealed record IfNode(IReadOnlyList<(Expr Condition, IReadOnlyList<Node> Body)> Branches, IReadOnlyList<Node> Else, int Line) : Node(Line);

internal sealed record ForNode(IReadOnlyList<string> Targets, Expr Items, Expr? Filter, IReadOnlyList<Node> Body, IReadOnlyList<Node> Else, int Line) : Node(Line);

/// <summary><c>set name = value</c>, or <c>set ns.attribute = value</c> when <see cref="Attribute"/> is set.</summary>
internal sealed record SetNode(IReadOnlyList<string> Targets, string? Attribute, Expr Value, int Line) : Node(Line);

internal sealed record BreakNode(int Line) : Node(Line);

internal sealed record ContinueNode(int Line) : Node(Line);

internal abstract record Expr(int Line);

internal sealed record LiteralExpr(object? Value, int Line) : Expr(Line);

internal sealed record NameExpr(string Name, int Line) : Expr(Line);

internal sealed record AttributeExpr(Expr Target, string Name, int Line) : Expr(Line);

internal sealed record ItemExpr(Expr Target, Expr Key, int Line) : Expr(Line);

internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Line) : Expr(Line);

internal sealed record Argument(string? Name, Expr Value);

internal sealed record CallExpr(Expr Function, IReadOnlyList<Argument> Arguments, int Line) : Expr(Line);

internal sealed record FilterExpr(Expr Value, string Name, IReadOnlyList<Argument> Arguments, int Line) : Expr(Line);

internal sealed record TestExpr(Expr Value, string Name, IReadOnlyList<Argument> Arguments, bool Negated, int Line) : Expr(Line);

internal sealed record UnaryExpr(string Operator, Expr Operand, int Line) : Expr(Line);

internal sealed record BinaryExpr(string Operator, Expr Left, Expr Right, int Line) : Expr(Line);

internal sealed record ConditionalExpr(Expr Condition, Expr Then, Expr? Else, int Line) : Expr(Line);

internal sealed record ListExpr(IReadOnlyList<Expr> Items, int Line) : Expr(Line);

internal sealed record DictExpr(IReadOnlyList<(Expr Key, Expr Value)> Items, int Line) : Expr(Line);
