package hlscache

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path: plain-HTTP viewers' connections are accepted and read
// here, and the hot requests (a GET or HEAD of an object the LRU holds,
// nothing about them the fast path does not implement) are answered here;
// any other request hands its connection, with the bytes already read
// replayed first, to the net/http server, for good.
//
// Why. A segment request through net/http cost the node about twice
// nginx's CPU (docs/benchmarks.md, "Headers and body in one write"): apart
// from the body's copy into the socket, which both pay, net/http reads
// every request twice (a background read per request, to notice a client
// leaving, stopped with a read deadline in the past), parks and wakes
// goroutines between requests, allocates a request, a context, a header
// map and its clone per request, and sets four deadlines. Here one
// goroutine per connection reads into a buffer of its own, parses the head
// without allocating (fasthead.go), and sends status line, headers and body
// in one writev.
//
// What the answer is does not change: the headers are net/http's, in its
// order (fastconn.go writes them as net/http's writeHeader would for the
// handler's header map; TestFastPathMatchesNetHTTP compares the bytes), the
// connection's keep-alive follows net/http's rules, the deadlines are the
// server's (ReadHeaderTimeout from the first byte of a request, IdleTimeout
// between requests, viewerWriteTimeout per body chunk), and the request
// counts where the handler counts it (viewers, request and byte counters).

// fastServer accepts the viewers' connections of a plain-HTTP cache.
//
// Invariants: a connection is served by one goroutine, in conns until it
// ends or is handed over; once closing is set no connection starts another
// request, and shutdown's deadline poke (a read deadline in the past)
// comes after closing is set, so a connection waiting for a request always
// sees one or the other.
type fastServer struct {
	c       *Cache
	ln      net.Listener     // the listener, behind the per-IP cap
	handoff *handoffListener // where net/http's server accepts what it answers

	// stop ends the upstream waits of the connections (fastConn.wait) when
	// shutdown gives up on them.
	stop    context.Context
	cancel  context.CancelFunc
	closing atomic.Bool
	served  atomic.Uint64 // requests answered here (for tests)
	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	wg      sync.WaitGroup // connections being served here
	once    sync.Once
}

func newFastServer(c *Cache, ln net.Listener) *fastServer {
	stop, cancel := context.WithCancel(context.Background())
	return &fastServer{c: c, ln: ln, handoff: newHandoffListener(ln.Addr()), conns: map[*fastConn]struct{}{},
		stop: stop, cancel: cancel}
}

// serve accepts connections until the listener is closed.
func (s *fastServer) serve() error {
	var delay time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// As net/http's Serve: out of descriptors, back off.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		fc := newFastConn(s, conn)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			_ = conn.Close()
			continue
		}
		s.conns[fc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go fc.serve()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// forget removes fc from the connections served here (it ended or went
// to net/http).
func (s *fastServer) forget(fc *fastConn) {
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown stops accepting, ends the connections waiting for a request and
// waits, until ctx ends, for the others to finish their answer; then it
// closes what is left. Calling it again waits again.
func (s *fastServer) shutdown(ctx context.Context) error {
	s.once.Do(func() {
		s.closing.Store(true)
		_ = s.ln.Close()
	})
	s.mu.Lock()
	for fc := range s.conns {
		fc.wake()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for fc := range s.conns {
		_ = fc.conn.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// handoffListener is the net.Listener net/http's server accepts from: it
// yields the connections the fast path hands over.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// give hands conn to the server's Accept; once the listener is closed it
// closes conn instead.
func (l *handoffListener) give(conn net.Conn) {
	select {
	case l.conns <- conn:
	case <-l.done:
		_ = conn.Close()
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case conn := <-l.conns:
		return conn, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
