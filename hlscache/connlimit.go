package hlscache

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// tooManyConns is written to a plain-HTTP connection refused at accept: the
// client learns why instead of seeing a reset.
var tooManyConns = []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Retry-After: 1\r\nConnection: close\r\nContent-Length: 33\r\n\r\ntoo many connections from your IP\n")

// limitListener caps the open connections per client IP. A connection over
// the cap is answered 429 (plain HTTP only; under TLS it is just closed) and
// closed at once, counted by onRefuse; the others never notice.
type limitListener struct {
	net.Listener
	max      int
	plain    bool // write the 429 before closing (no TLS above)
	onRefuse func()

	mu    sync.Mutex
	count map[netip.Addr]int
}

func newLimitListener(ln net.Listener, max int, plain bool, onRefuse func()) *limitListener {
	return &limitListener{Listener: ln, max: max, plain: plain, onRefuse: onRefuse, count: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(conn)
		l.mu.Lock()
		over := l.count[ip] >= l.max
		if !over {
			l.count[ip]++
		}
		l.mu.Unlock()
		if !over {
			return &limitedConn{Conn: conn, l: l, ip: ip}, nil
		}
		l.onRefuse()
		if l.plain {
			// A fresh socket's send buffer is empty: this does not block,
			// and the deadline makes sure of it.
			_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = conn.Write(tooManyConns)
		}
		_ = conn.Close()
	}
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	if n := l.count[ip] - 1; n > 0 {
		l.count[ip] = n
	} else {
		delete(l.count, ip)
	}
	l.mu.Unlock()
}

// open returns the connections open from ip (for tests).
func (l *limitListener) open(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[ip]
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// limitedConn gives its slot back when closed (once).
type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   netip.Addr
	once sync.Once
}

// NetConn returns the connection beneath (as tls.Conn's does), for the
// writes that viewerConn gathers: it needs the *net.TCPConn for writev.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
