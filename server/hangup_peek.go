//go:build unix && !aix

package server

import (
	"errors"
	"net"
	"syscall"
)

// peerGone returns a probe that reports whether the peer of c has closed
// or reset the connection, or nil where c has no socket to look at. The
// probe peeks (MSG_PEEK, without blocking), so what the client sent stays
// unread. When the client has sent more (a pipelined request), the peek
// sees those bytes and cannot tell whether a close follows them: the probe
// then reports the client as present.
func peerGone(c net.Conn) func() bool {
	sc, ok := socket(c).(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() bool {
		var b [1]byte
		gone := false
		err := rc.Control(func(fd uintptr) {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == nil:
				gone = n == 0 // end of stream: the client closed
			case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
			default:
				gone = true // reset, or another failure: nothing will reach it
			}
		})
		return gone || err != nil // Control fails once the connection is closed
	}
}
