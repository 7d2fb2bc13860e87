package server

import (
	"errors"
	"fmt"

	"github.com/godwit-ai/godwit/internal/jinja"
	"github.com/godwit-ai/godwit/models/tokenizer"
)

// Built-in chat templates, for files without tokenizer.chat_template; the
// family is told by the special tokens the vocabulary has. ChatML is the
// fallback, as in llama.cpp.
const (
	templateChatML = `{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}`

	templateLlama3 = `{{- bos_token -}}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}`

	templateLlama2 = `{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}{%- set ns.system = '<<SYS>>\n' + message['content'] + '\n<</SYS>>\n\n' -%}
{%- elif message['role'] == 'user' -%}{{- '[INST] ' + ns.system + message['content'] | trim + ' [/INST]' -}}{%- set ns.system = '' -%}
{%- elif message['role'] == 'assistant' -%}{{- ' ' + message['content'] | trim + ' ' + eos_token -}}
{%- endif -%}
{%- endfor -%}`
)

// chatTemplate renders chat messages into a prompt.
type chatTemplate struct {
	name string // "gguf", a file's name or the built-in's name
	t    *jinja.Template
	lim  jinja.Limits
	tok  *tokenizer.Tokenizer
	bos  string
	eos  string
}

// newChatTemplate parses src, named name ("gguf" when empty), or picks a
// built-in template for tok's family when src is empty. Renders are
// bounded by lim.
func newChatTemplate(src, name string, tok *tokenizer.Tokenizer, lim jinja.Limits) (*chatTemplate, error) {
	if name == "" {
		name = "gguf"
	}
	if src == "" {
		name, src = builtinTemplate(tok)
	}
	t, err := jinja.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("chat template (%s): %w", name, err)
	}
	ct := &chatTemplate{name: name, t: t, lim: lim, tok: tok}
	if id := tok.BOS(); id >= 0 {
		ct.bos = tok.Token(id)
	}
	if id := tok.EOS(); id >= 0 {
		ct.eos = tok.Token(id)
	}
	return ct, nil
}

func builtinTemplate(tok *tokenizer.Tokenizer) (string, string) {
	has := map[string]bool{}
	for id := range tok.VocabSize() {
		switch s := tok.Token(int32(id)); s {
		case "<|start_header_id|>", "<|im_start|>", "[INST]":
			has[s] = true
		}
	}
	switch {
	case has["<|start_header_id|>"]:
		return "llama3", templateLlama3
	case has["<|im_start|>"]:
		return "chatml", templateChatML
	case has["[INST]"]:
		return "llama2", templateLlama2
	}
	return "chatml", templateChatML
}

// chatMessage is a message after its content parts are joined.
type chatMessage struct {
	Role, Content, Name string
}

// render returns the prompt text for messages, ending with the assistant's
// turn.
func (c *chatTemplate) render(msgs []chatMessage) (string, error) {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		v := map[string]any{"role": m.Role, "content": m.Content}
		if m.Name != "" {
			v["name"] = m.Name
		}
		list[i] = v
	}
	out, err := c.t.Render(map[string]any{
		"messages":              list,
		"add_generation_prompt": true,
		"bos_token":             c.bos,
		"eos_token":             c.eos,
	}, c.lim)
	if le, ok := errors.AsType[*jinja.LimitError](err); ok {
		raise := ""
		switch le.What {
		case "steps":
			raise = ", or raise --chat-template-max-steps if it is genuine"
		case "output bytes", "bytes of values":
			raise = ", or raise --chat-template-max-bytes if it is genuine"
		}
		return "", fmt.Errorf("the chat template (%s) exceeded its render budget of %d %s at line %s: "+
			"the template is broken or hostile; serve the model with another one (--chat-template FILE)%s",
			c.name, le.Limit, le.What, le.Pos, raise)
	}
	if err != nil {
		return "", fmt.Errorf("the chat template (%s) failed: %w", c.name, err)
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
