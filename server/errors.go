package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/godwit-ai/godwit/batcher"
)

// apiError is an error answered in OpenAI's shape:
// {"error":{"message","type","param","code"}}.
type apiError struct {
	Status  int    `json:"-"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   any    `json:"param"` // the offending field, or null
	Code    any    `json:"code"`  // a short machine-readable reason, or null
}

func (e *apiError) Error() string { return e.Message }

// The error types, by status.
const (
	typeInvalid     = "invalid_request_error" // 400, 404, 413
	typeAuth        = "authentication_error"  // 401
	typeRateLimit   = "rate_limit_error"      // 429
	typeServer      = "server_error"          // 500
	typeUnavailable = "service_unavailable"   // 503
)

// badRequest is a 400 naming param ("" for none).
func badRequest(param, format string, args ...any) *apiError {
	e := &apiError{Status: fasthttp.StatusBadRequest, Message: fmt.Sprintf(format, args...), Type: typeInvalid}
	if param != "" {
		e.Param = param
	}
	return e
}

func notFound(code, format string, args ...any) *apiError {
	return &apiError{Status: fasthttp.StatusNotFound, Message: fmt.Sprintf(format, args...), Type: typeInvalid, Code: code}
}

func unavailable(msg string) *apiError {
	return &apiError{Status: fasthttp.StatusServiceUnavailable, Message: msg, Type: typeUnavailable, Code: "service_unavailable"}
}

func tooLarge(limit int) *apiError {
	return &apiError{Status: fasthttp.StatusRequestEntityTooLarge, Type: typeInvalid, Code: "request_too_large",
		Message: fmt.Sprintf("the request body is larger than the server's limit of %d bytes (--max-body-size)", limit)}
}

func queueFull() *apiError {
	return &apiError{Status: fasthttp.StatusTooManyRequests, Type: typeRateLimit, Code: "queue_full",
		Message: "too many requests are waiting; retry later"}
}

func internalError(requestID string) *apiError {
	return &apiError{Status: fasthttp.StatusInternalServerError, Type: typeServer, Code: "internal_error",
		Message: "internal server error (request id " + requestID + ")"}
}

// statusClientClosed is nginx's status for a request whose client hung up
// before the answer; nobody reads it, but the request metrics count it.
const statusClientClosed = 499

// generationError maps an error of the batcher (from Submit, or ending a
// request's events) to its answer by its Kind. fields renames the request
// field at fault where the endpoint calls it otherwise.
func generationError(err error, fields map[string]string) *apiError {
	kind := batcher.KindInternal
	var be *batcher.Error
	switch {
	case errors.As(err, &be):
		kind = be.Kind
	case errors.Is(err, context.Canceled):
		kind = batcher.KindCancelled
	}
	switch kind {
	case batcher.KindInvalid, batcher.KindTooLong:
		if name, ok := fields[be.Param]; ok {
			return badRequest(name, "%s (the request's %s)", be.Error(), name)
		}
		return badRequest(be.Param, "%s", be.Error())
	case batcher.KindQueueFull:
		return queueFull()
	case batcher.KindClosed:
		return unavailable("the server is shutting down; retry on another instance or later")
	case batcher.KindCancelled:
		return &apiError{Status: statusClientClosed, Type: typeInvalid, Code: "client_closed", Message: "the client closed the connection"}
	}
	return &apiError{Status: fasthttp.StatusInternalServerError, Type: typeServer, Code: "generation_failed", Message: err.Error()}
}

// writeError answers ctx with e.
func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	if e.Status == fasthttp.StatusTooManyRequests {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	b, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	ctx.SetBody(b)
}

// decodeError turns a JSON decoding error into a 400 naming the field.
func decodeError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("", "malformed JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		field := strings.TrimPrefix(strings.TrimPrefix(typ.Field, "samplingFields."), "inert.")
		if field == "" {
			return badRequest("", "the request body must be a JSON object, not %s", typ.Value)
		}
		if num, ok := strings.CutPrefix(typ.Value, "number "); ok {
			// A number of the right kind that does not fit (1e400, 1e30 for an integer).
			return badRequest(field, "%s must be %s in range, got %s", field, jsonKind(typ.Type.Kind().String()), num)
		}
		return badRequest(field, "%s must be %s, not %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest(name, "the field %q is not supported by this server", name)
	case errors.Is(err, errEmptyBody):
		return badRequest("", "the request body is empty; send a JSON object")
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return badRequest("", "malformed JSON: %v", err)
}

var errEmptyBody = errors.New("empty body")

// jsonKind names a Go kind as JSON would.
func jsonKind(k string) string {
	switch k {
	case "int", "int32", "int64", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return "a " + k
}
