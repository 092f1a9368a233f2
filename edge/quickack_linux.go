package edge

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to acknowledge the next segments of c at once
// instead of after the delayed-ACK timer (40 ms on Linux). A publisher
// that writes a request in pieces without TCP_NODELAY (ffmpeg: an RTSP
// request's header and body, the RTMP handshake and commands) has Nagle's
// algorithm hold each piece until the previous one is acknowledged, so
// every such round trip of the setup would cost the timer. The kernel
// drops back to delayed ACKs by itself, so it is set again before each
// read while the connection is being set up. Errors are ignored: it is an
// optimisation.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
