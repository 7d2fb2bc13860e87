package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/godwit-ai/godwit/internal/jinja"
	"github.com/godwit-ai/godwit/internal/toolcall"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// hermesTools lists the tools and teaches the Hermes call format
// (toolcall.Hermes), in the words of this server: the ChatML built-in's
// system section, and the preamble given to templates that render no
// tools.
const hermesTools = `{{- '# Tools\n\nYou may call one or more functions to help with the request. ' -}}
{{- 'The functions are described by their JSON signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + tool | tojson -}}{%- endfor -%}
{{- '\n</tools>\n\nTo call a function, write a JSON object with its name and arguments within <tool_call></tool_call> XML tags, ' -}}
{{- 'one block for each call:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' -}}`

// hermesCall writes a call in the Hermes format.
const hermesCall = `{{- '<tool_call>\n{"name": "' + call['function']['name'] + '", "arguments": ' + call['function']['arguments'] | tojson + '}\n</tool_call>' -}}`

// Built-in chat templates, for files without tokenizer.chat_template; the
// family is told by the special tokens the vocabulary has (Llama 3, ChatML,
// Gemma, Phi-3, Llama 2). ChatML is the
// fallback, as in llama.cpp. ChatML renders tools as Qwen2.5 does (Hermes
// calls, results in a user turn), Llama 3 as Llama 3.1 does (JSON calls
// with "parameters", results from the ipython role).
const (
	templateChatML = `{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if messages[0]['role'] == 'system' -%}{{- messages[0]['content'] + '\n\n' -}}{%- endif -%}
` + hermesTools + `
{{- '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if tools and loop.first and message['role'] == 'system' -%}
{%- elif message['role'] == 'assistant' and message['tool_calls'] -%}
{{- '<|im_start|>assistant' -}}
{%- if message['content'] -%}{{- '\n' + message['content'] -}}{%- endif -%}
{%- for call in message['tool_calls'] -%}
{{- '\n' -}}` + hermesCall + `
{%- endfor -%}
{{- '<|im_end|>\n' -}}
{%- elif message['role'] == 'tool' -%}
{%- if loop.first or loop.previtem['role'] != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\n<tool_response>\n' + message['content'] + '\n</tool_response>' -}}
{%- if loop.last or loop.nextitem['role'] != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
{%- else -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}`

	templateLlama3 = `{{- bos_token -}}
{%- if tools -%}
{{- '<|start_header_id|>system<|end_header_id|>\n\n' -}}
{%- if messages[0]['role'] == 'system' -%}{{- messages[0]['content'] | trim + '\n\n' -}}{%- endif -%}
{{- 'You can call the functions below. To call one, answer with nothing but a JSON object of the form ' -}}
{{- '{"name": function name, "parameters": object of argument names and their values}; ' -}}
{{- 'to call several, join their objects with "; ". Use literal values, not variables.\n\n' -}}
{%- for tool in tools -%}{{- tool | tojson(indent=4) + '\n\n' -}}{%- endfor -%}
{{- '<|eot_id|>' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if tools and loop.first and message['role'] == 'system' -%}
{%- elif message['role'] == 'assistant' and message['tool_calls'] -%}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- for call in message['tool_calls'] -%}
{%- if not loop.first -%}{{- '; ' -}}{%- endif -%}
{{- '{"name": "' + call['function']['name'] + '", "parameters": ' + call['function']['arguments'] | tojson + '}' -}}
{%- endfor -%}
{{- '<|eot_id|>' -}}
{%- else -%}
{%- set role = message['role'] -%}
{%- if role == 'tool' -%}{%- set role = 'ipython' -%}{%- endif -%}
{{- '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}`

	templatePhi3 = `{%- for message in messages -%}
{%- set role = message['role'] -%}
{%- if role != 'system' and role != 'assistant' -%}{%- set role = 'user' -%}{%- endif -%}
{{- '<|' + role + '|>\n' + message['content'] + '<|end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}`
	// templateGemma puts a system message at the head of the next user
	// turn, as llama.cpp's gemma template does: Gemma has no system role.
	templateGemma = `{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] | trim + '\n\n' -%}
{%- elif message['role'] == 'assistant' -%}{{- '<start_of_turn>model\n' + message['content'] | trim + '<end_of_turn>\n' -}}
{%- else -%}{{- '<start_of_turn>user\n' + ns.system + message['content'] | trim + '<end_of_turn>\n' -}}{%- set ns.system = '' -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}`
	templateLlama2 = `{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}{%- set ns.system = '<<SYS>>\n' + message['content'] + '\n<</SYS>>\n\n' -%}
{%- elif message['role'] == 'user' -%}{{- '[INST] ' + ns.system + message['content'] | trim + ' [/INST]' -}}{%- set ns.system = '' -%}
{%- elif message['role'] == 'assistant' -%}{{- ' ' + message['content'] | trim + ' ' + eos_token -}}
{%- endif -%}
{%- endfor -%}`
)

// For templates that render no tools: hermesPreamble lists the tools,
// hermesCalls writes an assistant's calls.
var (
	hermesPreamble = mustParse(hermesTools)
	hermesCalls    = mustParse(`{%- for call in tool_calls -%}{%- if not loop.first -%}{{- '\n' -}}{%- endif -%}` + hermesCall + `{%- endfor -%}`)
)

func mustParse(src string) *jinja.Template {
	t, err := jinja.Parse(src)
	if err != nil {
		panic(err)
	}
	return t
}

// chatTemplate renders chat messages into a prompt.
type chatTemplate struct {
	name string // "gguf", a file's name or the built-in's name
	t    *jinja.Template
	lim  jinja.Limits
	tok  *tokenizer.Tokenizer
	bos  string
	eos  string
	// nativeTools: the template renders tools, calls and their results
	// itself, as it is taken to when its source names tools at all.
	nativeTools bool
	format      toolcall.Format // told by the source when nativeTools, else Hermes
}

// newChatTemplate parses src, named name ("gguf" when empty), or picks a
// built-in template for tok's family, else arch's, when src is empty.
// Renders are bounded by lim.
func newChatTemplate(src, name, arch string, tok *tokenizer.Tokenizer, lim jinja.Limits) (*chatTemplate, error) {
	if name == "" {
		name = "gguf"
	}
	if src == "" {
		name, src = builtinTemplate(tok, arch)
	}
	t, err := jinja.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("chat template (%s): %w", name, err)
	}
	ct := &chatTemplate{name: name, t: t, lim: lim, tok: tok, nativeTools: strings.Contains(src, "tools")}
	if ct.nativeTools {
		ct.format = toolcall.Detect(src, func(s string) bool {
			ids := tok.Encode(s, false, true)
			return len(ids) == 1 && tok.Token(ids[0]) == s
		})
	}
	if id := tok.BOS(); id >= 0 {
		ct.bos = tok.Token(id)
	}
	if id := tok.EOS(); id >= 0 {
		ct.eos = tok.Token(id)
	}
	return ct, nil
}

// toolFormat is how the model is asked to write tool calls, and so how its
// output is to be parsed: the template's own format, or Hermes where
// render teaches it to a template that renders no tools.
func (c *chatTemplate) toolFormat() toolcall.Format { return c.format }

// builtinTemplate picks the built-in template of the chat format whose
// tokens tok's vocabulary has, else of the architecture arch, else ChatML.
func builtinTemplate(tok *tokenizer.Tokenizer, arch string) (string, string) {
	has := map[string]bool{}
	for id := range tok.VocabSize() {
		switch s := tok.Token(int32(id)); s {
		case "<|start_header_id|>", "<|im_start|>", "[INST]", "<start_of_turn>", "<|assistant|>", "<|end|>":
			has[s] = true
		}
	}
	switch {
	case has["<|start_header_id|>"]:
		return "llama3", templateLlama3
	case has["<|im_start|>"]:
		return "chatml", templateChatML
	case has["<start_of_turn>"]:
		return "gemma", templateGemma
	case has["<|assistant|>"] && has["<|end|>"]:
		return "phi3", templatePhi3
	case has["[INST]"]:
		return "llama2", templateLlama2
	case strings.HasPrefix(arch, "gemma"):
		return "gemma", templateGemma
	case arch == "phi3":
		return "phi3", templatePhi3
	}
	return "chatml", templateChatML
}

// chatMessage is a message after its content parts are joined.
type chatMessage struct {
	Role, Content, Name string
	// ToolCalls are an assistant's calls, their Arguments the JSON text
	// the client sent.
	ToolCalls []toolcall.Call
	// ToolCallID is the call a tool message answers.
	ToolCallID string
}

// render returns the prompt text for msgs, ending with the assistant's
// turn, with tools as OpenAI sends them (none when empty), each decoded
// into map[string]any and []any or, better, left a json.RawMessage, which
// keeps the client's key order and integers. A template that renders no
// tools gets them, the calls and the results in Hermes form in its
// messages.
func (c *chatTemplate) render(msgs []chatMessage, all []any) (string, error) {
	if !c.nativeTools {
		var err error
		if msgs, err = c.hermesMessages(msgs, all); err != nil {
			return "", c.failed(err)
		}
		all = nil
	}
	var toolsVar any // none without tools, as transformers passes it
	if len(all) > 0 {
		toolsVar = all
	}
	list := make([]any, len(msgs))
	for i, m := range msgs {
		v := map[string]any{"role": m.Role, "content": m.Content}
		if m.Name != "" {
			v["name"] = m.Name
		}
		if m.ToolCallID != "" {
			v["tool_call_id"] = m.ToolCallID
		}
		if len(m.ToolCalls) > 0 {
			v["tool_calls"] = toolCallsValue(m.ToolCalls)
		}
		list[i] = v
	}
	out, err := c.t.Render(map[string]any{
		"messages":              list,
		"tools":                 toolsVar,
		"add_generation_prompt": true,
		"bos_token":             c.bos,
		"eos_token":             c.eos,
	}, c.lim)
	if err != nil {
		return "", c.failed(err)
	}
	return out, nil
}

// toolCallsValue is an assistant's calls as templates want them, in
// OpenAI's form; their arguments are the object when they are one (Qwen's
// templates write arguments | tojson), else the text.
func toolCallsValue(calls []toolcall.Call) []any {
	list := make([]any, len(calls))
	for i, tc := range calls {
		var args any = tc.Arguments
		if t := strings.TrimSpace(tc.Arguments); strings.HasPrefix(t, "{") && json.Valid([]byte(t)) {
			args = json.RawMessage(t)
		}
		list[i] = map[string]any{"id": tc.ID, "type": "function", "function": map[string]any{"name": tc.Name, "arguments": args}}
	}
	return list
}

func (c *chatTemplate) failed(err error) error {
	if le, ok := errors.AsType[*jinja.LimitError](err); ok {
		raise := ""
		switch le.What {
		case "steps":
			raise = ", or raise --chat-template-max-steps if it is genuine"
		case "output bytes", "bytes of values":
			raise = ", or raise --chat-template-max-bytes if it is genuine"
		}
		return fmt.Errorf("the chat template (%s) exceeded its render budget of %d %s at line %s: "+
			"the template is broken or hostile; serve the model with another one (--chat-template FILE)%s",
			c.name, le.Limit, le.What, le.Pos, raise)
	}
	return fmt.Errorf("the chat template (%s) failed: %w", c.name, err)
}

// hermesMessages rewrites msgs for a template that renders no tools, in
// the Hermes format that toolFormat then reports: the tools are listed at
// the end of the first system message (a new one when there is none), an
// assistant's calls become <tool_call> blocks after its text, and each run
// of tool results becomes one user message of <tool_response> blocks.
func (c *chatTemplate) hermesMessages(msgs []chatMessage, tools []any) ([]chatMessage, error) {
	out := make([]chatMessage, 0, len(msgs)+1)
	if len(tools) > 0 {
		pre, err := hermesPreamble.Render(map[string]any{"tools": tools}, c.lim)
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 && (msgs[0].Role == "system" || msgs[0].Role == "developer") {
			m := msgs[0]
			m.Content += "\n\n" + pre
			out = append(out, m)
			msgs = msgs[1:]
		} else {
			out = append(out, chatMessage{Role: "system", Content: pre})
		}
	}
	for i, m := range msgs {
		switch {
		case m.Role == "tool":
			block := "<tool_response>\n" + m.Content + "\n</tool_response>"
			if i > 0 && msgs[i-1].Role == "tool" {
				out[len(out)-1].Content += "\n" + block
			} else {
				out = append(out, chatMessage{Role: "user", Content: block})
			}
		case len(m.ToolCalls) > 0:
			calls, err := hermesCalls.Render(map[string]any{"tool_calls": toolCallsValue(m.ToolCalls)}, c.lim)
			if err != nil {
				return nil, err
			}
			if m.Content != "" {
				calls = m.Content + "\n" + calls
			}
			m.Content, m.ToolCalls = calls, nil
			out = append(out, m)
		default:
			out = append(out, m)
		}
	}
	return out, nil
}

// tokens encodes a rendered prompt: special tokens written in it are parsed,
// and BOS is added only when the vocabulary wants one and the template did
// not write it.
func (c *chatTemplate) tokens(text string) []int32 {
	ids := c.tok.Encode(text, false, true)
	if c.tok.AddBOS() && (len(ids) == 0 || ids[0] != c.tok.BOS()) {
		ids = append([]int32{c.tok.BOS()}, ids...)
	}
	return ids
}
