package hlscache

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// Headers and body in one system call.
//
// net/http buffers a response's headers (in a 4 KiB bufio.Writer); a body
// larger than what is left of that buffer fills it, flushes it, and goes
// out in a second write. On loopback or a fast network the first write
// costs as much as a large one: the 4 KiB are pushed as a segment of their
// own, through the whole TCP send path and the receiver's, and the viewer
// is woken for them (a CPU profile of cache.sh put 11 % of the node in that
// flush). A viewerConn, asked to gather around a plain GET's body write
// (viewerWriter.serveBody), holds that first write back and sends it with
// the next one in one writev(2), as nginx sends headers and file in one
// TCP push (tcp_nopush). Plain HTTP only: under TLS net/http writes to the
// tls.Conn, which this does not see.

// gatherMax is the largest write a viewerConn holds back: net/http's
// buffer of a connection's writes.
const gatherMax = 4 << 10

// heldBufs keeps the buffers that hold a gathered write between its two
// Writes, so a kept-alive connection holds none while it waits.
var heldBufs = sync.Pool{New: func() any { return new([gatherMax]byte) }}

// viewerListener wraps the connections it accepts in viewerConns.
type viewerListener struct {
	net.Listener
}

func (l viewerListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newViewerConn(conn), nil
}

// viewerConn is a viewer's connection that can gather two writes into one
// (gather, release). Only the connection's serving goroutine writes to it
// (HTTP/1: the handler runs there), so its fields need no lock.
type viewerConn struct {
	net.Conn
	// out is where a gathered write goes: the innermost connection (a
	// *net.TCPConn, whose net.Buffers writes are one writev), below the
	// per-IP cap's wrapper, which does not write.
	out net.Conn

	gathering bool
	buf       *[gatherMax]byte // holds the held write (from heldBufs)
	held      []byte           // the write held back, in buf
	err       error            // the held write's error, returned by the next Write
	sends     int              // writes to the network (for tests)

	// looked is the upstream result of the first request of a connection
	// the fast path handed over after waiting for it (fastConn.wait); the
	// handler takes it (takeLookedUp) rather than fetch again.
	looked *lookedUp
}

func newViewerConn(conn net.Conn) *viewerConn {
	return &viewerConn{Conn: conn, out: innermost(conn)}
}

// innermost is the connection below conn's wrappers (the per-IP cap's, a
// replayed head's): the *net.TCPConn whose writev gathers buffers.
func innermost(conn net.Conn) net.Conn {
	for {
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return conn
		}
		conn = u.NetConn()
	}
}

// viewerConnKey is the request context's key of its viewerConn.
type viewerConnKey struct{}

// withViewerConn is the server's ConnContext: a request over a viewerConn
// finds it in its context (viewerConnOf).
func withViewerConn(ctx context.Context, c net.Conn) context.Context {
	if vc, ok := c.(*viewerConn); ok {
		return context.WithValue(ctx, viewerConnKey{}, vc)
	}
	return ctx
}

// viewerConnOf returns the viewerConn r came over, or nil (TLS, HTTP/2, a
// server without withViewerConn).
func viewerConnOf(r *http.Request) *viewerConn {
	vc, _ := r.Context().Value(viewerConnKey{}).(*viewerConn)
	return vc
}

// takeLookedUp returns, once, the result the fast path looked up for the
// first request of r's connection before it handed the connection over,
// when r asks for the same object (req from rt); else nil.
func takeLookedUp(r *http.Request, rt route, req *request) *lookedUp {
	vc := viewerConnOf(r)
	if vc == nil || vc.looked == nil {
		return nil
	}
	l := vc.looked
	vc.looked = nil
	if l.key != cacheKey(rt, req) {
		return nil
	}
	return l
}

// gather holds the next write back, when it is at most gatherMax bytes,
// to send it with the write after it. release ends it.
func (c *viewerConn) gather() {
	if c != nil {
		c.gathering = true
	}
}

// release ends gathering and sends what is still held.
func (c *viewerConn) release() {
	if c == nil {
		return
	}
	c.gathering = false
	if c.held != nil {
		c.sends++
		if _, err := c.Conn.Write(c.held); err != nil && c.err == nil {
			c.err = err
		}
		c.drop()
	}
}

func (c *viewerConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	switch {
	case c.held != nil:
		return c.writeHeld(p)
	case c.gathering && len(p) <= gatherMax:
		c.buf = heldBufs.Get().(*[gatherMax]byte)
		c.held = c.buf[:copy(c.buf[:], p)]
		return len(p), nil
	}
	c.gathering = false
	c.sends++
	return c.Conn.Write(p)
}

// writeHeld sends the held write and p in one writev and returns how much
// of p went out.
func (c *viewerConn) writeHeld(p []byte) (int, error) {
	c.gathering = false
	c.sends++
	held := len(c.held)
	bufs := net.Buffers{c.held, p}
	n, err := bufs.WriteTo(c.out)
	c.drop()
	return max(int(n)-held, 0), err
}

// drop gives the held write's buffer back.
func (c *viewerConn) drop() {
	heldBufs.Put(c.buf)
	c.buf, c.held = nil, nil
}
