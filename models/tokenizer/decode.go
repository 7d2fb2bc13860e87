package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Piece returns the bytes token id stands for, as llama.cpp's token_to_piece
// with special tokens rendered: SPM pieces with U+2581 turned back into
// spaces and byte tokens as their byte, BPE pieces mapped back from GPT-2's
// byte alphabet, control and user-defined tokens as their text. Unused and
// undefined tokens, and ids out of range, give nothing. A piece may end
// inside a UTF-8 sequence; StreamDecoder joins such pieces.
func (t *Tokenizer) Piece(id int32) []byte {
	return t.piece(id, true)
}

func (t *Tokenizer) piece(id int32, special bool) []byte {
	if id < 0 || int(id) >= len(t.tokens) {
		return nil
	}
	a, text := t.attrs[id], t.tokens[id]
	switch {
	case a&(attrUnknown|attrControl) != 0:
		if !special {
			return nil
		}
		return []byte(text)
	case a&attrUserDefined != 0:
		return []byte(text)
	case a&attrNormal != 0:
		if t.kind == kindSPM {
			return []byte(strings.ReplaceAll(text, spmSpace, " "))
		}
		return decodeByteLevel(text)
	case a&attrByte != 0:
		return []byte{hexByte(text)}
	}
	return nil
}

// hexByte reads the NN of a "<0xNN>" byte token.
func hexByte(s string) byte {
	var b byte
	for i := 3; i < 5 && i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return b
		}
		b = b<<4 | c
	}
	return b
}

// decodeByteLevel maps a BPE token back from GPT-2's byte alphabet. A
// character outside that alphabet (which only hand-added tokens contain) is
// written the way llama.cpp writes it, as "[UNK_BYTE_0x<its UTF-8 in hex><the
// whole token>]".
func decodeByteLevel(text string) []byte {
	out := make([]byte, 0, len(text))
	for _, c := range decodeCpts(text) {
		if b, ok := cptToByte[c]; ok {
			out = append(out, b)
			continue
		}
		out = append(out, "[UNK_BYTE_0x"...)
		for _, b := range appendCpt(nil, c) {
			out = fmt.Appendf(out, "%02x", b)
		}
		out = append(out, text...)
		out = append(out, ']')
	}
	return out
}

// Decode concatenates the pieces of ids, special tokens rendered as their
// text. It is the inverse of Encode without special tokens, except that an
// SPM vocabulary's Encode adds a space at the start of the text (see
// Detokenize).
func (t *Tokenizer) Decode(ids []int32) string {
	var b []byte
	for _, id := range ids {
		b = append(b, t.piece(id, true)...)
	}
	return string(b)
}

// Detokenize turns ids into text exactly as llama.cpp's llama_detokenize:
// with removeSpecial a leading BOS and trailing EOS that Encode would have
// added are dropped; control tokens are rendered only with unparseSpecial;
// the space SPM adds in front of the text is removed from the first token
// (but kept when a BOS was dropped before it, as llama.cpp does); and
// vocabularies that ask for it (most byte-level BPE ones) get the Hugging
// Face clean-up that removes the space before punctuation and some
// contractions.
func (t *Tokenizer) Detokenize(ids []int32, removeSpecial, unparseSpecial bool) string {
	removeSpace := t.addSpacePrefix
	if removeSpecial && t.addBOS && len(ids) > 0 && ids[0] == t.bos {
		removeSpace = false
		ids = ids[1:]
	}
	if removeSpecial && t.addEOS && len(ids) > 0 && ids[len(ids)-1] == t.eos {
		ids = ids[:len(ids)-1]
	}
	var b []byte
	for _, id := range ids {
		p := t.piece(id, unparseSpecial)
		if removeSpace && len(p) > 0 && p[0] == ' ' {
			p = p[1:]
		}
		removeSpace = false
		b = append(b, p...)
	}
	if t.cleanSpaces {
		b = cleanSpaces(b)
	}
	return string(b)
}

// cleanSpaces is llama.cpp's clean_up_tokenization_spaces, three in-place
// passes over the text whose exact (and in corner cases odd) results it
// keeps: " ?", " !", " .", " ," lose their space; a lone apostrophe between
// spaces loses both; " 's", " 'm", " 're", " 've" lose their space.
func cleanSpaces(text []byte) []byte {
	n := len(text)
	if n == 0 {
		return text
	}
	pass := func(n int, step func(i, total int) (total2, skip int)) int {
		total := 1
		for i := 1; i < n; i++ {
			x := text[i]
			var skip int
			total, skip = step(i, total)
			text[total] = x
			total++
			i += skip
		}
		return total
	}
	n = pass(n, func(i, total int) (int, int) {
		if text[i-1] == ' ' {
			switch text[i] {
			case '?', '!', '.', ',':
				total--
			}
		}
		return total, 0
	})
	n = pass(n, func(i, total int) (int, int) {
		if text[i] == '\'' && i+1 < n && text[i-1] == ' ' && text[i+1] == ' ' {
			// The space after the apostrophe is dropped by skipping it, and
			// blanked so that the next character does not see a space
			// before it.
			text[i+1] = 0
			return total - 1, 1
		}
		return total, 0
	})
	n = pass(n, func(i, total int) (int, int) {
		if text[i-1] != ' ' || text[i] != '\'' || i+1 >= n {
			return total, 0
		}
		switch x1 := text[i+1]; {
		case x1 == 't' || x1 == 'd':
		case x1 == 's' || x1 == 'm':
			total--
		case i+2 < n:
			x2 := text[i+2]
			if (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e') {
				total--
			}
		}
		return total, 0
	})
	return text[:n]
}

// StreamDecoder turns tokens into text one at a time without ever returning
// part of a UTF-8 sequence: bytes that may still be completed by the next
// token's piece are held back.
type StreamDecoder struct {
	t       *Tokenizer
	pending []byte
}

// NewStreamDecoder returns a decoder of this vocabulary's tokens.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder {
	return &StreamDecoder{t: t}
}

// Add takes the next token and returns the text that is now complete. Bytes
// that can never be part of a valid sequence come out as U+FFFD.
func (d *StreamDecoder) Add(id int32) string {
	d.pending = append(d.pending, d.t.Piece(id)...)
	var out []byte
	i := 0
	for i < len(d.pending) {
		rest := d.pending[i:]
		r, n := utf8.DecodeRune(rest)
		if r == utf8.RuneError && n <= 1 {
			if !utf8.FullRune(rest) {
				break // the start of a sequence: wait for the rest
			}
			out = utf8.AppendRune(out, utf8.RuneError)
			i++
			continue
		}
		out = append(out, rest[:n]...)
		i += n
	}
	d.pending = append(d.pending[:0], d.pending[i:]...)
	return string(out)
}

// Flush returns what is held back at the end of the stream: an unfinished
// sequence becomes one U+FFFD. The decoder can then be reused.
func (d *StreamDecoder) Flush() string {
	if len(d.pending) == 0 {
		return ""
	}
	d.pending = d.pending[:0]
	return string(utf8.RuneError)
}
