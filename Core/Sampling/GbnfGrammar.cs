using System.Collections.Concurrent;

namespace QwenSharp.Sampling;

/// <summary>
/// A GBNF grammar (llama.cpp's notation: its <c>--grammar</c>, llama-server's <c>grammar</c>, vLLM's
/// <c>guided_grammar</c>; read by <see cref="GbnfParser"/>), compiled to llama.cpp's pushdown recognizer: a state is a set
/// of stacks of positions in the rules (<see cref="GrammarStacks"/>), each stack expanded until a character set is on
/// top, and a character steps every stack whose top takes it. Left-recursive rules, which would expand without end, are
/// refused by name. Steps are kept (states are one object per key), as a token mask steps every token of the vocabulary
/// from one state.
/// </summary>
public sealed class GbnfGrammar
{
    private const int MaxStepsKept = 1 << 20;

    /// <summary>States kept (each with its ASCII steps, about 1 KB) before the kept steps start over.</summary>
    private const int MaxStatesKept = 1 << 15;

    private readonly GrammarElement[] _elements;
    private readonly int[] _ruleStarts;
    private readonly int[][] _sets;
    private readonly ConcurrentDictionary<(GrammarStacks, int), GrammarStacks?> _steps = new();
    private readonly ConcurrentDictionary<string, GrammarStacks> _states = new(StringComparer.Ordinal);
    private int _stepsKept;
    private int _statesKept;

    private GbnfGrammar(GbnfParser parsed, int root)
    {
        IReadOnlyList<List<List<GrammarElement>>> rules = parsed.Rules;
        var elements = new List<GrammarElement>();
        _ruleStarts = new int[rules.Count];
        for (int rule = 0; rule < rules.Count; rule++)
        {
            _ruleStarts[rule] = elements.Count;
            for (int alternative = 0; alternative < rules[rule].Count; alternative++)
            {
                elements.AddRange(rules[rule][alternative]);
                elements.Add(new GrammarElement(alternative == rules[rule].Count - 1 ? GrammarOp.End : GrammarOp.Alternative, 0));
            }
        }

        _elements = [.. elements];
        _sets = [.. parsed.Sets];
        HasTokens = parsed.HasTokens;
        Begin = Expand(AlternativesOf(root, below: null)) ?? throw new ArgumentException("the grammar allows no text");
    }

    /// <summary>
    /// Reads GBNF text whose answers start at the rule <paramref name="root"/>; what is wrong with it (or with where
    /// it starts) is an ArgumentException saying what and where.
    /// </summary>
    /// <remarks>
    /// Token references (<c>&lt;[id]&gt;</c>, <c>&lt;text&gt;</c>, <c>!&lt;...&gt;</c>) need the model's vocabulary:
    /// <paramref name="tokenOf"/> gives the one token a text is, <paramref name="vocabularySize"/> how many ids there are.
    /// </remarks>
    public static GbnfGrammar Parse(string text, string root = "root", Func<string, int?>? tokenOf = null, int vocabularySize = 0)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentException.ThrowIfNullOrEmpty(root);
        GbnfParser parsed = GbnfParser.Parse(text, tokenOf, vocabularySize);
        int start = parsed.IdOf(root) ?? throw new ArgumentException($"the grammar has no rule '{root}', where the answer starts");
        RefuseLeftRecursion(parsed);
        return new GbnfGrammar(parsed, start);
    }

    /// <summary>The state before the answer's first character.</summary>
    internal GrammarStacks Begin { get; }

    /// <summary>Whether a rule names a token (a reference): then whole tokens, not only characters, step the grammar (<see cref="GrammarConstraint"/>).</summary>
    public bool HasTokens { get; }

    /// <summary>
    /// The tokens the stacks of <paramref name="state"/> whose top is a token take: each <c>&lt;[id]&gt;</c> on top, and each
    /// <c>!&lt;[id]&gt;</c>'s id, which any other token passes. Both empty where no top is a token.
    /// </summary>
    internal TokenTopSets TokenTops(GrammarStacks state)
    {
        if (state.TokenTops is { } known)
        {
            return known;
        }

        var only = new List<int>();
        var allBut = new List<int>();
        foreach (GrammarFrame? stack in state.Stacks)
        {
            if (stack is not null && _elements[stack.Position] is { Op: GrammarOp.Token or GrammarOp.TokenNot } element)
            {
                (element.Op == GrammarOp.Token ? only : allBut).Add(element.Value);
            }
        }

        var tops = new TokenTopSets([.. only.Distinct()], [.. allBut.Distinct()]);
        state.TokenTops = tops;
        return tops;
    }

    /// <summary>The state after the whole token <paramref name="token"/> taken by the stacks whose top is a token, or null when none takes it.</summary>
    internal GrammarStacks? StepToken(GrammarStacks state, int token)
    {
        var tops = new List<GrammarFrame?>();
        foreach (GrammarFrame? stack in state.Stacks)
        {
            if (stack is not null && _elements[stack.Position] is { Op: GrammarOp.Token or GrammarOp.TokenNot } element
                && (element.Op == GrammarOp.Token) == (element.Value == token))
            {
                tops.Add(After(stack.Position, stack.Below));
            }
        }

        return tops.Count == 0 ? null : Expand(tops);
    }

    /// <summary>Every way either state's parse may go on: a token that some parse took as characters and another as a token.</summary>
    internal GrammarStacks Union(GrammarStacks first, GrammarStacks second) => Expand(first.Stacks.Concat(second.Stacks))!;

    /// <summary>The state after the character <paramref name="codePoint"/>, or null when no parse can go on with it.</summary>
    internal GrammarStacks? Step(GrammarStacks state, int codePoint)
    {
        if (codePoint < state.AsciiSteps.Length)
        {
            GrammarStacks? taken = state.AsciiSteps[codePoint];
            if (taken is null)
            {
                taken = Unkept(state, codePoint) ?? GrammarStacks.Refused;
                state.AsciiSteps[codePoint] = taken;
            }

            return ReferenceEquals(taken, GrammarStacks.Refused) ? null : taken;
        }

        if (_steps.TryGetValue((state, codePoint), out GrammarStacks? known))
        {
            return known;
        }

        GrammarStacks? next = Unkept(state, codePoint);
        // (ConcurrentDictionary.Count takes every lock: the steps are counted here.)
        if (Interlocked.Increment(ref _stepsKept) >= MaxStepsKept)
        {
            ForgetSteps();
        }

        _steps[(state, codePoint)] = next;
        return next;
    }

    private GrammarStacks? Unkept(GrammarStacks state, int codePoint)
    {

        var tops = new List<GrammarFrame?>();
        foreach (GrammarFrame? stack in state.Stacks)
        {
            if (stack is not null && _elements[stack.Position].Op == GrammarOp.Characters && Contains(_sets[_elements[stack.Position].Value], codePoint))
            {
                tops.Add(After(stack.Position, stack.Below));
            }
        }

        return tops.Count == 0 ? null : Expand(tops);
    }

    /// <summary>Whether some character from <paramref name="first"/> to <paramref name="last"/> can come next (a character partly written).</summary>
    internal bool Allows(GrammarStacks state, int first, int last)
    {
        foreach (GrammarFrame? stack in state.Stacks)
        {
            if (stack is not null && _elements[stack.Position].Op == GrammarOp.Characters && Meets(_sets[_elements[stack.Position].Value], first, last))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Every stack the given ones expand to: a rule on top gives way to each of its alternatives' first element, with
    /// what follows the rule beneath (nothing is pushed for a rule that ends its alternative, so right recursion does
    /// not deepen the stack); an alternative that is empty, or ends, pops to what is beneath. Stacks met twice count
    /// once. Null when none is left.
    /// </summary>
    private GrammarStacks? Expand(IEnumerable<GrammarFrame?> tops)
    {
        var expanded = new List<GrammarFrame?>();
        var seen = new HashSet<GrammarFrame>();
        bool whole = false;
        var todo = new Stack<GrammarFrame?>(tops);
        while (todo.Count > 0)
        {
            GrammarFrame? stack = todo.Pop();
            if (stack is null)
            {
                if (!whole)
                {
                    whole = true;
                    expanded.Add(null);
                }
            }
            else if (seen.Add(stack))
            {
                GrammarElement element = _elements[stack.Position];
                if (element.Op is GrammarOp.Characters or GrammarOp.Token or GrammarOp.TokenNot)
                {
                    expanded.Add(stack);
                }
                else
                {
                    foreach (GrammarFrame? alternative in AlternativesOf(element.Value, After(stack.Position, stack.Below)))
                    {
                        todo.Push(alternative);
                    }
                }
            }
        }

        if (expanded.Count == 0)
        {
            return null;
        }

        string key = string.Join('|', expanded.Select(s => s?.ToString() ?? "$").Order(StringComparer.Ordinal));
        if (_states.TryGetValue(key, out GrammarStacks? known))
        {
            return known;
        }

        if (Interlocked.Increment(ref _statesKept) >= MaxStatesKept)
        {
            ForgetSteps();
        }

        return _states.GetOrAdd(key, _ => new GrammarStacks([.. expanded], key));
    }

    /// <summary>
    /// Drops every step kept, so that the states they lead to (each referring to the next through its steps) can go:
    /// a grammar that nests or counts without end would otherwise keep every state any token ever reached.
    /// </summary>
    private void ForgetSteps()
    {
        foreach (GrammarStacks state in _states.Values)
        {
            Array.Clear(state.AsciiSteps);
        }

        _states.Clear();
        _steps.Clear();
        _statesKept = 0;
        _stepsKept = 0;
    }

    /// <summary>A stack per alternative of <paramref name="rule"/>: its first element over <paramref name="below"/> (an empty one: <paramref name="below"/>).</summary>
    private List<GrammarFrame?> AlternativesOf(int rule, GrammarFrame? below)
    {
        var stacks = new List<GrammarFrame?>();
        int at = _ruleStarts[rule];
        while (true)
        {
            stacks.Add(EndsAlternative(at) ? below : new GrammarFrame(at, below));
            while (!EndsAlternative(at))
            {
                at++;
            }

            if (_elements[at].Op == GrammarOp.End)
            {
                return stacks;
            }

            at++;
        }
    }

    /// <summary>The stack once the element at <paramref name="position"/> is matched: the next element of its alternative, if any, over <paramref name="below"/>.</summary>
    private GrammarFrame? After(int position, GrammarFrame? below) => EndsAlternative(position + 1) ? below : new GrammarFrame(position + 1, below);

    private bool EndsAlternative(int position) => _elements[position].Op is GrammarOp.End or GrammarOp.Alternative;

    private static bool Contains(int[] ranges, int codePoint)
    {
        for (int i = 0; i < ranges.Length && ranges[i] <= codePoint; i += 2)
        {
            if (codePoint <= ranges[i + 1])
            {
                return true;
            }
        }

        return false;
    }

    private static bool Meets(int[] ranges, int first, int last)
    {
        for (int i = 0; i < ranges.Length && ranges[i] <= last; i += 2)
        {
            if (first <= ranges[i + 1])
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Which rules can match the empty text: those with an empty alternative, then, one at a time from a queue, those with
    /// an alternative of rules all already known to (each occurrence counted down once), in time linear in the grammar.
    /// </summary>
    private static bool[] MayBeEmpty(IReadOnlyList<List<List<GrammarElement>>> rules)
    {
        bool[] empty = new bool[rules.Count];
        var left = new List<(int Rule, int Count)>();               // per alternative: its rule, and its elements not yet known to be empty
        var uses = new List<int>[rules.Count];                      // per rule: the alternatives (by index in left) that refer to it, once per reference
        var known = new Queue<int>();
        for (int rule = 0; rule < rules.Count; rule++)
        {
            uses[rule] ??= [];
            foreach (List<GrammarElement> alternative in rules[rule])
            {
                int index = left.Count;
                bool characters = alternative.Any(e => e.Op != GrammarOp.Rule);
                left.Add((rule, characters ? int.MaxValue : alternative.Count));
                foreach (GrammarElement element in characters ? [] : alternative)
                {
                    (uses[element.Value] ??= []).Add(index);
                }

                if (alternative.Count == 0 && !empty[rule])
                {
                    empty[rule] = true;
                    known.Enqueue(rule);
                }
            }
        }

        while (known.Count > 0)
        {
            foreach (int index in uses[known.Dequeue()])
            {
                (int rule, int count) = left[index];
                left[index] = (rule, count - 1);
                if (count == 1 && !empty[rule])
                {
                    empty[rule] = true;
                    known.Enqueue(rule);
                }
            }
        }

        return empty;
    }

    /// <summary>
    /// Refuses a rule that can reach itself before any character (through rules at the start of its alternatives, past
    /// those that may match nothing): expanding it would never end.
    /// </summary>
    private static void RefuseLeftRecursion(GbnfParser parsed)
    {
        IReadOnlyList<List<List<GrammarElement>>> rules = parsed.Rules;
        bool[] mayBeEmpty = MayBeEmpty(rules);

        // The rules each can begin with, then a depth-first search for a cycle among them.
        List<int>[] leftmost = [.. rules.Select(alternatives => alternatives
            .SelectMany(a => a.TakeWhile((e, i) => i == 0 || (a[i - 1].Op == GrammarOp.Rule && mayBeEmpty[a[i - 1].Value])))
            .Where(e => e.Op == GrammarOp.Rule).Select(e => e.Value).Distinct().ToList())];
        byte[] marks = new byte[rules.Count];   // 0 unvisited, 1 on the path, 2 done
        // Depth first, on a stack of its own: a chain of thousands of rules must not take the thread's.
        var path = new Stack<(int Rule, int Next)>();
        for (int start = 0; start < rules.Count; start++)
        {
            if (marks[start] != 0)
            {
                continue;
            }

            marks[start] = 1;
            path.Push((start, 0));
            while (path.Count > 0)
            {
                (int rule, int next) = path.Pop();
                if (next == leftmost[rule].Count)
                {
                    marks[rule] = 2;
                    continue;
                }

                path.Push((rule, next + 1));
                int reached = leftmost[rule][next];
                if (marks[reached] == 1)
                {
                    string name = parsed.Names[parsed.Owners[reached]];
                    throw new ArgumentException($"rule '{name}' is left-recursive (it can reach itself before any character), which a grammar here cannot expand: " +
                        "write 'x ::= y (\"+\" y)*' rather than 'x ::= x \"+\" y | y'");
                }

                if (marks[reached] == 0)
                {
                    marks[reached] = 1;
                    path.Push((reached, 0));
                }
            }
        }
    }
}
