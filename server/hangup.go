package server

import (
	"context"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// hangUpPoll is how often a request that writes nothing until its answer
// is whole looks whether its client is still connected.
const hangUpPoll = 100 * time.Millisecond

// clientContext returns a context that ends when the client of ctx closes
// or resets its connection, found by peeking at the socket every
// hangUpPoll (see peerGone), or when cancel is called.
//
// fasthttp reads the connection only between requests, so a hang-up during
// a long non-streamed generation would otherwise go unnoticed until the
// answer is written. Peeking consumes nothing, so a pipelined next request
// stays for fasthttp to read and keep-alive is untouched. A client that
// half-closes its side after the request counts as gone, as in net/http.
// On a connection that is no socket (or off Unix) the context only ends
// with cancel.
func clientContext(ctx *fasthttp.RequestCtx) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.Background())
	gone := peerGone(ctx.Conn())
	if gone == nil {
		return c, cancel
	}
	go func() {
		t := time.NewTicker(hangUpPoll)
		defer t.Stop()
		for {
			select {
			case <-c.Done():
				return
			case <-t.C:
				if gone() {
					cancel()
					return
				}
			}
		}
	}()
	return c, cancel
}

// socket unwraps c to the connection that holds the socket: a TLS
// connection's underlying one.
func socket(c net.Conn) net.Conn {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		return u.NetConn()
	}
	return c
}
