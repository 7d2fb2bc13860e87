package batcher

import "fmt"

// Kind classifies why a request failed, so that an API layer maps failures
// to answers (HTTP status codes) without reading message text.
type Kind uint8

const (
	// KindInvalid: a parameter is out of range; the request cannot run as
	// it is (HTTP 400).
	KindInvalid Kind = iota + 1
	// KindTooLong: the prompt, with what is asked of it, does not fit the
	// model's context or the KV pool (HTTP 400).
	KindTooLong
	// KindQueueFull: the waiting queue is full; waiting may help (HTTP 429).
	KindQueueFull
	// KindCancelled: the request's context ended (its client went away).
	KindCancelled
	// KindClosed: the batcher is shutting down (HTTP 503).
	KindClosed
	// KindInternal: a step failed; the request is lost (HTTP 500).
	KindInternal
)

var kindNames = [...]string{KindInvalid: "invalid", KindTooLong: "too long", KindQueueFull: "queue full",
	KindCancelled: "cancelled", KindClosed: "closed", KindInternal: "internal"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Error is every error the batcher returns from Submit or ends a stream
// with. errors.Is(err, ErrQueueFull) (and the other sentinels) matches any
// Error of the same Kind.
type Error struct {
	Kind  Kind
	Param string // the request field at fault (OpenAI's name), or ""
	Msg   string // what happened and what to do, for the client
	Err   error  // the cause, if any
}

func (e *Error) Error() string {
	if e.Msg == "" && e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes the sentinels below match every Error of their Kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind
}

// Sentinels for errors.Is; each matches every Error of its Kind.
var (
	ErrInvalid   = &Error{Kind: KindInvalid, Msg: "invalid request"}
	ErrTooLong   = &Error{Kind: KindTooLong, Msg: "the request does not fit"}
	ErrQueueFull = &Error{Kind: KindQueueFull, Msg: "too many requests waiting; retry later"}
	ErrCancelled = &Error{Kind: KindCancelled, Msg: "the request was cancelled"}
	ErrClosed    = &Error{Kind: KindClosed, Msg: "the server is shutting down"}
	ErrInternal  = &Error{Kind: KindInternal, Msg: "generation failed"}
)

// invalid is a KindInvalid error naming param.
func invalid(param, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Param: param, Msg: fmt.Sprintf(format, args...)}
}
