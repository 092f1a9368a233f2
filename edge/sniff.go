package edge

import (
	"errors"
	"net"
	"time"
)

// sniffListener hardens the RTSP listener. gortsplib skips bytes it does not
// understand while it looks for a request, so a client sending garbage would
// hold its connection until the idle timeout; here a connection whose first
// bytes are not a request line (an upper-case method and a space) is dropped
// at once. gortsplib also reads the first bytes without a deadline, so a
// client that connects and sends nothing would stay forever: until the
// method is read, reads time out after ReadTimeout. Accept also rides out
// transient errors (out of file descriptors), which would otherwise stop the
// gortsplib server for good.
type sniffListener struct {
	net.Listener
	e *Edge
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.e.accept(l.Listener, "rtsp")
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, timeout: l.e.ReadTimeout, interval: l.e.ReadInterval}, nil
}

// errNotRTSP ends a connection that does not start with an RTSP request.
var errNotRTSP = errors.New("not an RTSP request")

// sniffConn checks the first request line's method as it is read.
type sniffConn struct {
	net.Conn
	timeout   time.Duration
	methodLen int
	checked   bool
	reads     int
	// interval paces the reads after the first setupReads (Edge.ReadInterval):
	// the requests up to RECORD are read as they come.
	interval time.Duration
	pace     readPacer
}

// setupReads is how many first reads of an RTSP connection ask for quick
// acknowledgements (quickAck): a publisher's requests up to RECORD (OPTIONS,
// ANNOUNCE, a SETUP per track) with room to spare.
const setupReads = 32

// maxMethodLen covers GET_PARAMETER and SET_PARAMETER.
const maxMethodLen = 16

func (c *sniffConn) Read(p []byte) (int, error) {
	if !c.checked {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
	}
	if c.reads < setupReads {
		c.reads++
		quickAck(c.Conn)
		if c.reads == setupReads {
			c.pace.interval = c.interval
		}
	}
	c.pace.wait()
	n, err := c.Conn.Read(p)
	c.pace.done(n, len(p))
	for i := 0; i < n && !c.checked; i++ {
		switch b := p[i]; {
		case b == ' ' && c.methodLen > 0:
			c.checked = true
		case (b >= 'A' && b <= 'Z') || b == '_':
			c.methodLen++
			if c.methodLen > maxMethodLen {
				return 0, errNotRTSP
			}
		default:
			return 0, errNotRTSP
		}
	}
	return n, err
}
