//go:build !unix || aix

package server

import "net"

// peerGone has no way to peek at a socket here (Windows; AIX, whose
// syscall package lacks MSG_DONTWAIT): a hang-up during a non-streamed
// request goes unnoticed until its answer is written.
func peerGone(net.Conn) func() bool { return nil }
