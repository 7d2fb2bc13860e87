package jinja

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// vars is the context of the table tests.
func vars() map[string]any {
	return map[string]any{
		"messages": []any{map[string]any{"role": "user", "content": "hi"}, map[string]any{"role": "assistant", "content": "yo"}},
		"d":        map[string]any{"a": []any{1, 2}, "b": 1},
		"s":        " Hello World ",
		"n":        3,
		"f":        2.5,
		"items":    []any{3, 1, 2},
		"none":     nil,
		"users": []any{
			map[string]any{"name": "ann", "age": 3},
			map[string]any{"name": "Bob", "age": 1},
			map[string]any{"name": "cy"},
		},
		"tools": []any{},
		"t": []any{
			map[string]any{"n": 1, "c": []any{map[string]any{"n": 2, "c": []any{map[string]any{"n": 3}}}}},
			map[string]any{"n": 4},
		},
		"bos_token": "<s>",
	}
}

// TestRender: each feature renders as Jinja2 renders it with transformers'
// settings (the wants were checked against Jinja2 3.1).
func TestRender(t *testing.T) {
	for _, c := range []struct{ src, want, err string }{
		{"{{ 'a' ~ 1 ~ none ~ true ~ 1.5 }}", "a1NoneTrue1.5", ""},
		{"{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 2 ** 8 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 4 / 2 }}", "3 -4 -2 3.5 256 7 9 2.0", ""},
		{"{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 3 not in items }} {{ 'a' in d }} {{ none is none }}", "True True True True False True True", ""},
		{"{{ x }}|{{ x is defined }}|{{ x is undefined }}|{{ x | default('dflt') }}|{{ '' | d('e', true) }}|{{ x | length }}|{% for i in x %}no{% endfor %}", "|False|True|dflt|e|0|", ""},
		{"{% for i in range(3) %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}|{% endfor %}", "10TrueFalse332|21FalseFalse321|32FalseTrue310|", ""},
		{"{% for i in items %}{{ loop.previtem }}-{{ i }}-{{ loop.nextitem }};{% endfor %}", "-3-1;3-1-2;1-2-;", ""},
		{"{% for i in items if i > 1 %}{{ i }}{{ loop.last }}{% else %}empty{% endfor %}{% for i in [] %}x{% else %}E{% endfor %}", "3False2TrueE", ""},
		{"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", "a=[1, 2];b=1;ab", ""},
		{"{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", "0134", ""},
		{"{% set ns = namespace(c=0, s='') %}{% for m in messages %}{% set ns.c = ns.c + 1 %}{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.c }}{{ ns.s }}", "2ua", ""},
		{"{% set x = 1 %}{% for i in range(2) %}{% set x = i + 10 %}{{ x }}{% endfor %}{{ x }}", "10111", ""},
		{"{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t %}block {{ n }}{% endset %}[{{ t }}]{% set u | upper %}up{% endset %}{{ u }}", "12[block 3]UP", ""},
		{"{% macro m(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(a=3, b=4) }}", "<1B><12><34>", ""},
		{"{% macro list(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(x) list(items) %}[{{ x }}]{% endcall %}", "[3][1][2]", ""},
		{"{{ s | trim }}|{{ s | upper }}|{{ s | lower }}|{{ 'hello wORLD-x(y' | title }}|{{ 'hELLO' | capitalize }}|{{ s | length }}|{{ 'abc' | reverse }}", "Hello World| HELLO WORLD | hello world |Hello World-X(Y|Hello|13|cba", ""},
		{"{{ items | first }}{{ items | last }}{{ items | join(',') }}{{ items | sort | join }}{{ items | reverse | list }}{{ items | length }}{{ [1,1,2] | unique | list }}{{ items | max }}{{ items | min }}{{ items | sum }}", "323,1,2123[2, 1, 3]3[1, 2]316", ""},
		{"{{ users | map(attribute='name') | join(',') }}|{{ users | selectattr('age') | map(attribute='name') | list }}|{{ users | rejectattr('age', 'defined') | list }}|{{ users | selectattr('name', 'equalto', 'ann') | list | length }}|{{ users | sort(attribute='name') | map(attribute='name') | join }}", "ann,Bob,cy|['ann', 'Bob']|[{'name': 'cy'}]|1|annBobcy", ""},
		{"{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'é\"\n' | tojson }}|{{ [1.5, none, true, 'x'] | tojson }}|{{ {} | tojson }}|{{ [] | tojson(indent=2) }}", "{\"a\": [1, 2], \"b\": 1}|{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}|\"é\\\"\\n\"|[1.5, null, true, \"x\"]|{}|[]", ""},
		{"{{ 'a,b,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'xxhixx'.strip('x') }}|{{ 'abc'.startswith('a') }}|{{ 'abc'.endswith(('x','c')) }}|{{ 'aXa'.replace('a', 'b') }}|{{ '{} and {name}'.format(1, name='n') }}|{{ 'banana'.count('a') }}|{{ 'banana'.find('n') }}|{{ 'hello world'.title() }}|{{ ' x '.rstrip() }}|{{ ' x '.lstrip() }}", "['a', 'b', 'c']|['a', 'b']|hi|True|True|bXb|1 and n|3|2|Hello World| x|x ", ""},
		{"{{ ' a  b c '.split(maxsplit=1) }}|{{ 'a b'.split(none, 0) }}|{{ '  a b  '.split(none, 1) }}|{{ 'a\\r\\nb\\rc'.splitlines() }}|{{ 'a b  c' | wordcount }}", "['a', 'b c ']|['a b']|['a', 'b  ']|['a', 'b', 'c']|3", ""},
		{"{% for a in [1] %}{% for b in [1] %}{{ loop.depth }}{% endfor %}{% endfor %}|{% for x in t recursive %}[{{ x.n }}{{ loop.depth }}{% if x.c %}{{ loop(x.c) }}{% endif %}]{% endfor %}", "1|[11[22[33]]][41]", ""},
		{"{% filter upper %}ab{{ 1 }}{% endfilter %}|{% set j = joiner(', ') %}{% for i in [1,2,3] %}{{ j() }}{{ i }}{% endfor %}|{% set c = cycler('a','b') %}{{ c.next() }}{{ c.next() }}{{ c.current }}{{ c.next() }}{% set _ = c.reset() %}{{ c.current }}", "AB1|1, 2, 3|abaaa", ""},
		{`{% set v = '{"b": [1, 2.5, null, true], "a": "x"}' | from_json %}{{ v.b[1] }} {{ v | tojson }}`, `2.5 {"b": [1, 2.5, null, true], "a": "x"}`, ""},
		{"{{ d.get('a') }}|{{ d.get('z', 'dz') }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d['b'] }}|{{ d.b }}|{{ d.zz }}|{{ messages[-1].content }}|{{ messages[5] }}", "[1, 2]|dz|['a', 'b']|[[1, 2], 1]|1|1||yo|", ""},
		{"{{ items[::-1] }}|{{ items[1:] }}|{{ items[:-1] }}|{{ 'hello'[1:3] }}|{{ 'hello'[::-1] }}|{{ items[0] }}|{{ 'héllo'[1] }}", "[2, 1, 3]|[1, 2]|[3, 1]|el|olleh|3|é", ""},
		{"{{ 1 is odd }}{{ 2 is even }}{{ 'x' is string }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ d is mapping }}{{ items is iterable }}{{ items is sequence }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 3 is divisibleby 3 }}{{ 1 is eq 1 }}{{ 'a' is in 'abc' }}{{ none is not none }}", "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalse", ""},
		{"{{ 'yes' if n > 2 else 'no' }}{{ 'only' if false }}|{{ not n }}{{ n and 'x' }}{{ 0 or 'y' }}{{ -n }}{{ n | abs }}{{ -2.5 | abs }}{{ 2.567 | round(2) }}{{ 2.5 | round }}{{ '42' | int + 1 }}{{ '4.5' | float }}{{ n | string + 'x' }}", "yes|Falsexy-332.52.572.0434.53x", ""},
		{"{{ [1, [2, 'a'], {'k': none}] }}|{{ (1,) }}|{{ 'it\\'s' }}|{{ \"a\\tb\\\\c\\u00e9\" }}|{{ 1e3 }}|{{ 0.1 + 0.2 }}|{{ 2 ** 20 }}", "[1, [2, 'a'], {'k': None}]|(1,)|it's|a\tb\\cé|1000.0|0.30000000000000004|1048576", ""},
		{"{{ 'line1\nline2\n\nline4' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}|{{ [1,2,3,4,5] | batch(2) | list }}|{{ '<a href=\"x\">&' | escape }}|{{ d | items | list }}|{{ 'x' | safe }}", "line1\n  line2\n\n  line4|  a\n  b|[[1, 2], [3, 4], [5]]|&lt;a href=&#34;x&#34;&gt;&amp;|[('a', [1, 2]), ('b', 1)]|x", ""},
		{"  {% if true %}\n  yes\n  {% endif %}\n  {%- if true %} a {% endif -%}  \n{# comment #}\n  {{ n }}  \n{%+ if true %}b{% endif %}", "  yes\n a   3  \nb", ""},
		{"{{ raise_exception('boom ' ~ n) }}", "", "boom 3"},
		{"{% raw %}{{ not rendered }}{% endraw %}|{{ messages | selectattr('role', 'equalto', 'user') | list | length }}", "{{ not rendered }}|1", ""},
		{"{{ users[2].age }}|{{ users[2].age.x }}", "", "'dict object' has no attribute 'age'"},
		{"{{ '%s-%d' | format('a', 3) }}|{{ items | map('string') | join('+') }}|{{ [3,'a'] | map('upper') | list }}", "a-3|3+1+2|['3', 'A']", ""},
	} {
		tpl, err := Parse(c.src)
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		got, err := tpl.Render(vars(), DefaultLimits)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.src, err, c.err)
			}
		case err != nil:
			t.Errorf("%q: %v", c.src, err)
		case got != c.want:
			t.Errorf("%q:\n got %q\nwant %q", c.src, got, c.want)
		}
	}
}

// TestWhitespace: trim_blocks and lstrip_blocks as transformers sets them,
// the - and + modifiers, and the dropped final newline.
func TestWhitespace(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"a\n  {% if true %}\n  x\n  {% endif %}\nb", "a\n  x\nb"},
		{"{{ 1 }}  {% if true %}y{% endif %}", "1  y"},
		{"a {# c #}\n b", "a  b"},
		{"{%- if true -%}\n x \n{%- endif %}\n\n", "x"},
		{"x\r\n{% if true %}\r\ny{% endif %}\r\n", "x\ny"},
		{"{{- ' a ' -}}  \n b", " a b"},
		{"  {%+ if true %}x{% endif +%}\ny", "  x\ny"},
		{"{# a +#}\ny", "\ny"},
		{"{% for i in range(2) %}\n  {{ i }}\n{% endfor %}\n", "  0\n  1\n"},
	} {
		tpl, err := Parse(c.src)
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		if got, err := tpl.Render(nil, DefaultLimits); err != nil || got != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.src, got, err, c.want)
		}
	}
}

// TestErrors: parse and render errors say where.
func TestErrors(t *testing.T) {
	for _, c := range []struct{ src, err string }{
		{"{% for %}", "line 1:8: expected a name"},
		{"a\n{% if x %}", "line 2:4: {% if %} is not closed"},
		{"{{ 'abc }}", "line 1:4: unclosed string"},
		{"{% endfor %}", "unexpected {% endfor %}"},
		{"{% foo %}", `unknown statement "foo"`},
		{"{{ x | nope }}", `line 1:8: no filter named 'nope'`},
		{"{{ 1 + 'a' }}", "unsupported operand"},
		{"\n\n  {{ x.y.z }}", "line 3:7: 'x' is undefined"},
		{"{{ none.x.y }}", "has no attribute 'x'"},
		{"{% set x.y = 1 %}", "non-namespace"},
		{"{{ 1 // 0 }}", "division or modulo by zero"},
		{"{% for a, b in [1] %}{% endfor %}", "cannot unpack a int"},
		{"{{ [] | tojson(indent=2) ~ x | tojson }}", "Undefined is not JSON serializable"},
	} {
		tpl, err := Parse(c.src)
		if err == nil {
			_, err = tpl.Render(nil, DefaultLimits)
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want %q", c.src, err, c.err)
		}
		var le *LimitError
		if errors.As(err, &le) {
			t.Errorf("%q: a limit error", c.src)
		}
	}
}

// TestHostile: templates built to run forever or fill memory stop with a
// LimitError, and the render's memory stays small.
func TestHostile(t *testing.T) {
	deep := strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000)
	lim := Limits{Steps: DefaultLimits.Steps, OutputBytes: 4 << 20}
	for _, c := range []struct{ name, src, what string }{
		{"huge range", "{% for i in range(1000000000) %}x{% endfor %}", "steps"},
		{"huge range, no output", "{% for i in range(1000000000) %}{% endfor %}", "steps"},
		{"range to a list", "{{ range(1000000000) | list | length }}", "bytes of values"},
		{"nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps"},
		{"output", "{% for i in range(1000000) %}{{ 'x' * 1000 }}{% endfor %}", "output bytes"},
		{"string doubling", "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "output bytes"},
		{"string repeat", "{{ 'ab' * 1000000000 }}", "output bytes"},
		{"many big strings", "{% set l = [] %}{% for i in range(100000) %}{% set _ = l.append('x' * 1000000 ~ i) %}{% endfor %}", "bytes of values"},
		{"list doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "bytes of values"},
		{"replace blow-up", "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s.replace('x', 'xxxxxxxx') %}{% endfor %}", "output bytes"},
		{"deep list printed", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}", "nested values"},
		{"deep lists compared", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l == ns.l }}", "nested values"},
		{"split of a long string", "{{ ('a ' * 2000000).split() | length }}", "bytes of values"},
		{"splitlines of a long string", "{{ ('\\n' * 4000000).splitlines() | length }}", "bytes of values"},
		{"long strings compared", "{% set s = 'x' * 4000000 %}{% set t = 'x' * 4000000 %}{% for i in range(1000000) %}{% if s == t %}{% endif %}{% endfor %}", "steps"},
		{"long string searched", "{% set s = 'x' * 4000000 %}{% for i in range(1000000) %}{% if 'y' in s or s.find('y') > 0 %}{% endif %}{% endfor %}", "steps"},
		{"long string indexed", "{% set s = 'é' * 2000000 %}{% for i in range(1000000) %}{{ s[-1] }}{% endfor %}", "steps"},
		{"long string measured", "{% set s = 'x' * 4000000 %}{% for i in range(1000000) %}{% if s | length %}{% endif %}{% endfor %}", "steps"},
		{"long key looked up", "{% set s = 'x' * 4000000 %}{% set d = {} %}{% for i in range(1000000) %}{{ d[s] }}{% endfor %}", "steps"},
		{"wide format", "{{ '%999999999s' | format('x') }}", "output bytes"},
		{"recursive loop", "{% for x in [[]] recursive %}{{ loop([[]]) }}{% endfor %}", "nested macro calls"},
		{"deep from_json", "{{ ('[' * 100000) | from_json }}", "nested values"},
		{"recursive macro", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested macro calls"},
		{"macro fan-out", "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}", "steps"},
		{"huge tojson indent", "{{ [[[[1]]]] | tojson(indent=100000000) }}", "output bytes"},
		{"tojson indent of a big list", "{{ range(100000) | list | tojson(indent=1000) }}", "output bytes"},
		{"huge indent filter", "{{ 'a\nb' | indent(1000000000) }}", "output bytes"},
		{"join of a range", "{{ range(1000000000) | join(',') }}", "bytes of values"},
		{"sort of a big list", "{{ range(1000000, 0, -1) | sort | first }}", "bytes of values"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tpl, err := Parse(c.src)
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err = tpl.Render(nil, lim)
			runtime.ReadMemStats(&after)
			var le *LimitError
			if !errors.As(err, &le) || le.What != c.what {
				t.Fatalf("error %v, want a limit on %s", err, c.what)
			}
			// All the render allocated bounds its peak.
			if all := after.TotalAlloc - before.TotalAlloc; all > 256<<20 {
				t.Errorf("allocated %d MiB in all", all>>20)
			}
			t.Logf("%v; allocated %d MiB in all", err, (after.TotalAlloc-before.TotalAlloc)>>20)
		})
	}
	for _, src := range []string{
		"{{ " + deep + " }}",
		strings.Repeat("{% if true %}", 10000) + strings.Repeat("{% endif %}", 10000),
		"{{ x" + strings.Repeat(".a", 100000) + " }}",
		"{{ x" + strings.Repeat("|trim", 100000) + " }}",
		"{{ " + strings.Repeat("not ", 100000) + "x }}",
		"{{ " + strings.Repeat("-", 100000) + "1 }}",
		"{{ " + strings.Repeat("[", 100000) + " }}",
	} {
		if _, err := Parse(src); err == nil {
			t.Errorf("%.40q...: %v", src, err)
		}
	}
}

// TestLongConversation: a thousand messages with tools take a small part of
// the default limits.
func TestLongConversation(t *testing.T) {
	tpl, err := Parse(toolTemplate)
	if err != nil {
		t.Fatal(err)
	}
	tool := map[string]any{"type": "function", "function": map[string]any{
		"name": "get_weather", "description": "Weather in a city",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	}}
	var msgs []any
	msgs = append(msgs, map[string]any{"role": "system", "content": "You are helpful."})
	for i := range 1000 {
		switch i % 4 {
		case 0:
			msgs = append(msgs, map[string]any{"role": "user", "content": strings.Repeat("Tell me more. ", 20)})
		case 1:
			msgs = append(msgs, map[string]any{"role": "assistant", "content": "", "tool_calls": []any{map[string]any{
				"type": "function", "function": map[string]any{"name": "get_weather", "arguments": map[string]any{"city": "Paris"}}}}})
		case 2:
			msgs = append(msgs, map[string]any{"role": "tool", "content": `{"temp": 21}`})
		default:
			msgs = append(msgs, map[string]any{"role": "assistant", "content": strings.Repeat("It is warm. ", 20)})
		}
	}
	v := map[string]any{"messages": msgs, "tools": []any{tool, tool, tool}, "add_generation_prompt": true}
	e := &evaluator{lim: DefaultLimits}
	out, err := e.render(tpl.body, v)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages: %d steps (%.2f%% of %d), %d output bytes, %d value bytes",
		len(msgs), e.steps, 100*float64(e.steps)/float64(DefaultLimits.Steps), DefaultLimits.Steps, len(out), e.bytes)
	if e.steps > DefaultLimits.Steps/20 || len(out) > DefaultLimits.OutputBytes/20 {
		t.Errorf("a long conversation takes %d steps and %d bytes", e.steps, len(out))
	}
}

// toolTemplate is a ChatML template with tools in the style of Qwen2.5's
// and Hermes'.
const toolTemplate = `{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- elif messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
`

// FuzzRender: no template makes Render panic or run past its limits.
func FuzzRender(f *testing.F) {
	for _, s := range []string{
		toolTemplate,
		"{% for m in messages %}{{ m.role | upper }}: {{ m.content | trim }}\n{% endfor %}",
		"{% set ns = namespace(x=0) %}{% for i in range(5) if i is odd %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}",
		"{% macro m(a, b=2) %}{{ a ~ b }}{% endmacro %}{{ m(1) }}{% call m(3) %}{% endcall %}",
		"{{ d | tojson(indent=2) }}{{ items[::-1] }}{{ 'a,b'.split(',') | join('-') }}",
		"{%- if x is defined -%}{{ x }}{%- elif n > 2 %}{{ n // 2 }}{% else %}{{ none }}{% endif %}",
		"{# c #}{% raw %}{{ x }}{% endraw %}{{ '%s' | format(1) }}{{ '{}'.format(2) }}",
		"{{ range == range }}{{ [joiner()] == [joiner()] }}{{ {}[range] is defined }}{{ loop == namespace }}",
		"{% for x in t recursive %}{{ loop(x.c) }}{% endfor %}{% filter upper %}{{ cycler(1).next() }}{% endfilter %}",
		"{% for k, v in d.items() %}{{ loop.index }}{{ k }}{{ v | string | length }}{% endfor %}",
	} {
		f.Add(s)
	}
	lim := Limits{Steps: 100000, OutputBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := Parse(src)
		if err != nil {
			return
		}
		out, _ := tpl.Render(vars(), lim)
		if len(out) > lim.OutputBytes {
			t.Fatalf("%d output bytes", len(out))
		}
	})
}

// TestRawJSON: a json.RawMessage is seen as Python's json.loads gives it
// (key order kept, integers not floats), within the render's bounds.
func TestRawJSON(t *testing.T) {
	tpl, err := Parse(`{{ v | tojson }}|{{ v.b + 1 }}|{{ v is mapping }}|{% for k in v %}{{ k }}{% endfor %}|{{ l[1].y }}`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tpl.Render(map[string]any{
		"v": json.RawMessage(` {"z": [1.5, 2.0, null, "<\u00e9>"], "b": 10, "a": {}} `),
		"l": []any{1, map[string]any{"y": json.RawMessage(`"s"`)}},
	}, DefaultLimits)
	if want := `{"z": [1.5, 2.0, null, "<é>"], "b": 10, "a": {}}|11|True|zba|s`; err != nil || out != want {
		t.Fatalf("%q, %v; want %q", out, err, want)
	}
	for _, bad := range []string{`{"a": }`, `{} {}`, ``} {
		if _, err := tpl.Render(map[string]any{"v": json.RawMessage(bad)}, DefaultLimits); err == nil || !strings.Contains(err.Error(), "json.RawMessage") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	var le *LimitError
	deep := json.RawMessage(strings.Repeat("[", 5000) + strings.Repeat("]", 5000))
	if _, err := tpl.Render(map[string]any{"v": deep}, DefaultLimits); !errors.As(err, &le) || le.What != "nested values" {
		t.Errorf("deep: %v", err)
	}
	if _, err := tpl.Render(map[string]any{"v": json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)}, Limits{Steps: 1000, OutputBytes: 1 << 20}); !errors.As(err, &le) || le.What != "steps" {
		t.Errorf("long: %v", err)
	}
}
