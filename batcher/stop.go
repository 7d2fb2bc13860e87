package batcher

import "strings"

// stopMatcher finds stop strings in a stream of text deltas, across token
// boundaries: text that could still become the start of a stop string is
// held back until it either completes one (the stream stops before it) or
// cannot any more (it is released).
type stopMatcher struct {
	stops []string
	held  string
}

// add takes the next delta and returns the text that can be emitted now and
// whether a stop string was completed (everything from it on is dropped).
func (m *stopMatcher) add(delta string) (string, bool) {
	if len(m.stops) == 0 {
		return delta, false
	}
	text := m.held + delta
	cut := -1
	for _, s := range m.stops {
		if i := strings.Index(text, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		m.held = ""
		return text[:cut], true
	}
	keep := 0
	for _, s := range m.stops {
		for k := min(len(s)-1, len(text)); k > keep; k-- {
			if strings.HasSuffix(text, s[:k]) {
				keep = k
				break
			}
		}
	}
	m.held = text[len(text)-keep:]
	return text[:len(text)-keep], false
}

// flush returns the held-back text at the end of a stream that did not stop
// on a stop string.
func (m *stopMatcher) flush() string {
	h := m.held
	m.held = ""
	return h
}
