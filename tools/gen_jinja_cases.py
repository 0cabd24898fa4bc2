#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/jinja-cases.json: templates rendered by Python's jinja2 with the
environment transformers uses for chat templates (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, its own tojson and raise_exception). These are the independent expected
outputs for QwenSharp's Jinja interpreter.  Run: python3 tools/gen_jinja_cases.py"""
import json, sys
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=['jinja2.ext.loopcontrols'])
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)
env.filters['tojson'] = tojson
env.globals['raise_exception'] = raise_exception

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <b>there</b> 'q' \"dq\" {x}\n  indented é 你好 🤗"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"n": 3, "x": 1.5, "big": 1e20, "small": 1e-7,
                                                                       "neg": -2, "ok": True, "none": None, "list": [1, "a", [], {}],
                                                                       "text": "tab\there \u0001 \\ \u2028 é"}}},
        {"name": "g", "arguments": "{\"already\": \"a string\"}"}]},
    {"role": "tool", "content": "42"},
    {"role": "user", "content": "   spaced   "},
]

CASES = [
    ("python str of values", "{{ 1.5 }}|{{ 1e-05 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 100.0 }}|{{ 0.1 + 0.2 }}|{{ 2**10 }}|{{ 7 / 2 }}|{{ -0.0 }}|{{ 123456789.125 }}"),
    ("python repr of containers", "{{ [1, 'a', none, true, false] }}|{{ {'k': \"it's\", 'n': {'m': 1.0}} }}|{{ 'a\\nb\\\\' }}|{{ ['x\\ty'] }}"),
    ("tojson", "{{ messages[2].tool_calls[0].function.arguments | tojson }}"),
    ("tojson indent", "{{ messages[2].tool_calls[0].function.arguments | tojson(indent=2) }}"),
    ("tojson sort_keys", "{{ {'b': 1, 'a': [2, {'d': 1, 'c': 2}]} | tojson(sort_keys=true) }}"),
    ("tojson string arguments", "{{ messages[2].tool_calls[1].arguments | tojson }}"),
    ("tojson of the whole conversation", "{{ messages | tojson }}"),
    ("loop variables", "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}"),
    ("loop with filter and else", "{% for m in messages if m.role == 'user' %}{{ m.content|trim }};{% else %}none{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %}"),
    ("previtem nextitem", "{% for x in [1, 2, 3] %}{{ loop.previtem is defined }}{{ loop.nextitem | default('-') }}{% endfor %}"),
    ("namespace", "{% set ns = namespace(found=false, count=0) %}{% for m in messages %}{% if m.role == 'tool' %}{% set ns.found = true %}{% endif %}{% set ns.count = ns.count + 1 %}{% endfor %}{{ ns.found }} {{ ns.count }}"),
    ("set inside loop does not leak", "{% set x = 'outer' %}{% for i in [1] %}{% set x = 'inner' %}{{ x }}{% endfor %}{{ x }}"),
    ("reverse loop (Qwen3 style)", "{% set ns = namespace(last_user=-1) %}{% for m in messages[::-1] %}{% set index = (messages|length - 1) - loop.index0 %}{% if ns.last_user == -1 and m.role == 'user' %}{% set ns.last_user = index %}{% endif %}{% endfor %}{{ ns.last_user }}"),
    ("string methods", "{{ '  x  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  l'.lstrip() }}|{{ 'r  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'MiXed'.lower() }}{{ 'MiXed'.upper() }}|{{ 'a-b'.replace('-', '+') }}|{{ 'hello world'.title() }}|{{ 'hello'.capitalize() }}"),
    ("slices and indexes", "{{ 'abcdef'[1:4] }}|{{ 'abcdef'[::-1] }}|{{ 'abcdef'[-2:] }}|{{ [1,2,3,4][::2] }}|{{ [1,2,3][-1] }}|{{ messages[-1].role }}|{{ messages[0]['content'] }}|{{ [1,2,3][5] is defined }}"),
    ("arithmetic", "{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 2 * 3 + 1 }}|{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 'ab' * 3 }}|{{ [1] + [2] }}|{{ 1 - 2 - 3 }}|{{ 10 / 4 }}|{{ 7.5 // 2 }}"),
    ("concat and precedence", "{{ 'a' ~ 1 ~ none ~ true }}|{{ (1 + 2) ~ 3 }}|{{ 'x' ~ messages|length }}|{{ not true or true }}|{{ not (true and false) }}"),
    ("comparisons", "{{ 1 < 2 }}{{ 2 <= 2 }}{{ 'a' < 'b' }}{{ 1 == 1.0 }}{{ 'a' != 'a' }}{{ [1, 2] == [1, 2] }}{{ 'b' in 'abc' }}{{ 'x' not in ['y'] }}{{ 'role' in messages[0] }}"),
    ("tests", "{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is sequence }}{{ true is boolean }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is equalto 1 }}{{ messages is not string }}{{ true is true }}{{ 0 is false }}"),
    ("filters", "{{ x | default('d') }}|{{ '' | default('e', true) }}|{{ messages | length }}|{{ 'abc' | upper }}|{{ [3,1,2] | first }}{{ [3,1,2] | last }}|{{ ['a','b'] | join('-') }}|{{ 3 | string }}|{{ '42' | int + 1 }}|{{ '2.5' | float }}|{{ [1,2] | list }}|{{ 'abc' | reverse }}|{{ [1,2,1] | unique | list }}|{{ -3 | abs }}|{{ 'a b' | replace(' ', '_') }}|{{ '<&>' | e }}|{{ ' x ' | trim }}|{{ 'hi' | capitalize }}"),
    ("dict methods", "{% for k, v in {'a': 1, 'b': [2]}.items() %}{{ k }}={{ v }};{% endfor %}{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('z', 'dflt') }}{{ {'a': 1}.keys() | list }}{{ {'a': 1}.values() | list }}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}"),
    ("selectattr and map", "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='role') | join(',') }}|{{ messages | rejectattr('role', 'equalto', 'user') | list | length }}|{{ [0, 1, '', 'a'] | select | list }}"),
    ("inline if", "{{ 'yes' if messages else 'no' }}|{{ 'a' if false }}|{{ ('x' if true else 'y') ~ '!' }}"),
    ("whitespace control", "  {%- if true %}\n  yes\n  {%- endif %}\n{{- ' after' }}\n  {# comment #}\n  {% if true %}\n    kept\n  {% endif %}\nend {{ 'x' -}}\n   z"),
    ("trim blocks and lstrip", "{% for m in messages %}\n    {% if m.role == 'user' %}\n        U:{{ m.content | trim }}\n    {% endif %}\n{% endfor %}\ndone\n"),
    ("plus disables lstrip", "line\n    {%+ if true %}x{% endif %}\n"),
    ("break continue", "{% for i in range(10) %}{% if i is odd %}{% continue %}{% endif %}{% if i > 6 %}{% break %}{% endif %}{{ i }}{% endfor %}|{{ range(2, 8, 3) | list }}"),
    ("tuple set and unpack", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% for x, y in [[1, 'a'], [2, 'b']] %}{{ x }}{{ y }}{% endfor %}"),
    ("string escapes", "{{ 'tab\\there' }}|{{ \"dq \\\"quoted\\\"\" }}|{{ 'uni \\u00e9' }}|{{ 'a' 'b' }}"),
    ("dict literal and attribute on missing", "{% set d = {'a': {'b': 'c'}, 'n': none} %}{{ d.a.b }}|{{ d['a']['b'] }}|{{ d.missing is defined }}|{{ d.n is none }}|{{ d.n.x is defined }}"),
    ("special token variables", "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools is none }}"),
    ("llama3-style header", "{{- bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"),
    ("tool call arguments string or mapping", "{% for tc in messages[2].tool_calls %}{% if tc.function is defined %}{% set tc = tc.function %}{% endif %}{% if tc.arguments is string %}{{ tc.arguments }}{% else %}{{ tc.arguments | tojson }}{% endif %};{% endfor %}"),
    ("length of unicode", "{{ messages[1].content | length }}|{{ '🤗é' | length }}|{{ '🤗é'[0] }}"),
]

out = []
for name, source in CASES:
    result = env.from_string(source).render(messages=MESSAGES, tools=None, documents=None, add_generation_prompt=True,
                                            bos_token="<s>", eos_token="</s>")
    out.append({"name": name, "template": source, "expected": result})
ERRORS = [
    ("raise_exception", "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}", "System role not supported"),
]
for name, source, message in ERRORS:
    try:
        env.from_string(source).render(messages=MESSAGES)
        raise SystemExit(f"{name}: expected an error")
    except jinja2.exceptions.TemplateError as e:
        assert message in str(e)
        out.append({"name": name, "template": source, "error": message})
meta = {"generator": "tools/gen_jinja_cases.py", "jinja2": jinja2.__version__, "messages": MESSAGES, "cases": out}
path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer/jinja-cases.json"
open(path, "w").write(json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
print(f"{len(out)} cases -> {path}")
