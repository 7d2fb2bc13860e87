package tokenizer

import (
	"errors"

	"github.com/godwit-ai/godwit/models/gguf"
)

// FromGGUF builds the Tokenizer of a GGUF file from its tokenizer.ggml.*
// metadata, with llama.cpp's defaults for what the file leaves out.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	model, ok := f.String("tokenizer.ggml.model")
	if !ok {
		return nil, errors.New("tokenizer: no tokenizer.ggml.model in the file")
	}
	pre, _ := f.String("tokenizer.ggml.pre")
	v := DefaultVocab(model, pre)
	v.Name, _ = f.String("general.name")

	if v.Tokens, ok = f.Strings("tokenizer.ggml.tokens"); !ok {
		return nil, errors.New("tokenizer: no tokenizer.ggml.tokens string array in the file")
	}
	if _, present := f.Get("tokenizer.ggml.scores"); present {
		if v.Scores, ok = f.Float32s("tokenizer.ggml.scores"); !ok {
			ints, isInt := f.Int32s("tokenizer.ggml.scores")
			if !isInt {
				return nil, errors.New("tokenizer: tokenizer.ggml.scores is not a float32 or int32 array")
			}
			v.Scores = make([]float32, len(ints))
			for i, s := range ints {
				v.Scores[i] = float32(s)
			}
		}
	}
	if _, present := f.Get("tokenizer.ggml.token_type"); present {
		if v.Types, ok = f.Int32s("tokenizer.ggml.token_type"); !ok {
			return nil, errors.New("tokenizer: tokenizer.ggml.token_type is not an integer array")
		}
	}
	if model == "gpt2" {
		if v.Merges, ok = f.Strings("tokenizer.ggml.merges"); !ok {
			return nil, errors.New("tokenizer: no tokenizer.ggml.merges string array in the file")
		}
	}

	// An id the file gives outside the vocabulary leaves the default, as in
	// llama.cpp (stories260K stores -1 as 4294967295, for instance).
	n := int64(len(v.Tokens))
	for _, k := range []struct {
		key string
		id  *int32
	}{
		{"bos_token_id", &v.BOS}, {"eos_token_id", &v.EOS}, {"eot_token_id", &v.EOT},
		{"eom_token_id", &v.EOM}, {"unknown_token_id", &v.UNK}, {"padding_token_id", &v.PAD},
		{"fim_pre_token_id", &v.FIMPre}, {"fim_suf_token_id", &v.FIMSuf}, {"fim_mid_token_id", &v.FIMMid},
		{"fim_pad_token_id", &v.FIMPad}, {"fim_rep_token_id", &v.FIMRep}, {"fim_sep_token_id", &v.FIMSep},
		// Older names of the FIM ids, which win when both are present.
		{"prefix_token_id", &v.FIMPre}, {"suffix_token_id", &v.FIMSuf}, {"middle_token_id", &v.FIMMid},
	} {
		if id, ok := f.Int("tokenizer.ggml." + k.key); ok && id >= 0 && id < n {
			*k.id = int32(id)
		}
	}
	for _, k := range []struct {
		key  string
		flag *bool
	}{
		{"add_bos_token", &v.AddBOS}, {"add_eos_token", &v.AddEOS}, {"add_space_prefix", &v.AddSpacePrefix},
	} {
		if b, ok := f.Bool("tokenizer.ggml." + k.key); ok {
			*k.flag = b
		}
	}
	return New(v)
}
