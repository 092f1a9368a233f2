package hlscache

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// fastReadSize is a connection's read buffer: net/http's as well. A request
// head that does not fit (large cookies) goes to net/http, which takes up to
// maxHeaderBytes.
const fastReadSize = 4 << 10

// fastBufs are a connection's buffers, pooled between connections.
type fastBufs struct {
	in  [fastReadSize]byte
	out []byte // the status line and headers of an answer
}

var fastBufPool = sync.Pool{New: func() any { return &fastBufs{out: make([]byte, 0, 1024)} }}

// fastConn is one viewer's connection served by the fast path. Only its own
// goroutine uses its fields, but for conn's deadlines (shutdown's poke).
type fastConn struct {
	s    *fastServer
	conn net.Conn // as accepted: closing it gives the per-IP slot back
	// raw is the innermost connection (the *net.TCPConn below the per-IP
	// cap's wrapper): reads, deadlines and the one writev go to it directly.
	raw        net.Conn
	bufs       *fastBufs
	r, w       int // the unread bytes are bufs.in[r:w]
	remoteAddr string
	iovArr     [2][]byte   // an answer's head and first body chunk
	iov        net.Buffers // iovArr, consumed by each answer's writev
}

func newFastConn(s *fastServer, conn net.Conn) *fastConn {
	return &fastConn{s: s, conn: conn, raw: innermost(conn)}
}

// wake ends a wait for the next request (shutdown).
func (fc *fastConn) wake() { _ = fc.raw.SetReadDeadline(time.Unix(1, 0)) }

// serve answers the connection's requests until it ends, or until one of
// them is net/http's: then the connection is handed over.
func (fc *fastConn) serve() {
	fc.bufs = fastBufPool.Get().(*fastBufs)
	handover := fc.run()
	if handover {
		// The unread bytes go first to net/http (and the buffer back to
		// the pool).
		pending := append([]byte(nil), fc.bufs.in[fc.r:fc.w]...)
		fc.release()
		fc.s.forget(fc)
		fc.s.handoff.give(newViewerConn(&replayConn{Conn: fc.conn, pending: pending}))
		return
	}
	fc.release()
	_ = fc.conn.Close()
	fc.s.forget(fc)
}

func (fc *fastConn) release() {
	fastBufPool.Put(fc.bufs)
	fc.bufs = nil
}

// run is serve's loop; true when the connection goes to net/http.
func (fc *fastConn) run() (handover bool) {
	s := fc.s
	c := s.c
	// The first request's head must arrive within the header timeout of
	// the accept, as with net/http.
	_ = fc.raw.SetReadDeadline(time.Now().Add(c.HeaderTimeout))
	headerDeadline := true
	for {
		if fc.r == fc.w {
			fc.r, fc.w = 0, 0
			if !headerDeadline {
				// Between requests: the idle timeout, until the next
				// request's first bytes.
				_ = fc.raw.SetReadDeadline(time.Now().Add(idleTimeout))
				if s.closing.Load() {
					return false
				}
			}
			if fc.fill() != nil {
				return false
			}
		}
		h, st := parseHead(fc.bufs.in[fc.r:fc.w])
		for st == headIncomplete {
			if fc.w-fc.r == len(fc.bufs.in) {
				return true // a head larger than the buffer: net/http's
			}
			if !headerDeadline {
				_ = fc.raw.SetReadDeadline(time.Now().Add(c.HeaderTimeout))
				headerDeadline = true
			}
			if fc.r > 0 {
				fc.w = copy(fc.bufs.in[:], fc.bufs.in[fc.r:fc.w])
				fc.r = 0
			}
			if err := fc.fill(); err != nil {
				// A timeout mid-head closes unanswered, as net/http does; a
				// head cut short by the client's end of stream is net/http's
				// to answer (its 400).
				return errors.Is(err, io.EOF)
			}
			h, st = parseHead(fc.bufs.in[fc.r:fc.w])
		}
		if st == headFallback || s.closing.Load() {
			return st == headFallback
		}
		served, ok := fc.answer(&h)
		if !served {
			return true
		}
		fc.r += h.size
		headerDeadline = false
		if !ok || h.wantsClose() || s.closing.Load() {
			return false
		}
	}
}

// fill reads into the buffer's free space; an error when nothing came (the
// client left, a deadline passed).
func (fc *fastConn) fill() error {
	n, err := fc.raw.Read(fc.bufs.in[fc.w:])
	fc.w += n
	if n > 0 {
		return nil
	}
	return err
}

// answer answers h when it asks for an object the LRU holds under a
// routable owner and that the fast path serves: served false leaves the
// request (not consumed, not counted) to net/http. ok false: writing the
// answer failed.
func (fc *fastConn) answer(h *fastHead) (served, ok bool) {
	c := fc.s.c
	if c.verifier != nil || c.Authorize != nil && !c.AuthorizeAll() {
		return false, false // access is checked by the handler alone
	}
	if !c.handlers.enter() {
		return false, false
	}
	defer c.handlers.leave()
	req, err := parseRequest(string(h.path), string(h.query))
	if err != nil || req.kind == kindPage || req.file == multivariantName || req.hls.Blocking() {
		// Errors, the player page and the content negotiation of
		// index.m3u8 are the handler's; blocking reloads wait upstream.
		return false, false
	}
	now := time.Now()
	rt, _, state, _ := c.routes.resolve(req.stream, now)
	if state != routeOK {
		return false, false
	}
	obj := c.stored(rt, req, cacheKey(rt, req), now)
	if obj == nil || obj.status != http.StatusOK {
		return false, false
	}
	if c.demand != nil {
		c.demand.seen(req.stream)
	}
	playlist := req.kind == kindPlaylist
	var ua string
	if playlist { // seen reads the User-Agent of playlist requests only
		ua = string(h.userAgent)
		if fc.remoteAddr == "" {
			fc.remoteAddr = fc.conn.RemoteAddr().String()
		}
	}
	c.viewers.seen(req.stream, fc.remoteAddr, ua, playlist, now)
	n, err := fc.write(h, obj)
	fc.s.served.Add(1)
	c.m.requestsBy[req.kind][outcomeHit].Inc()
	c.m.servedBy[req.kind].Add(float64(n))
	return true, err == nil
}

// write sends obj's 200 (its body but for a HEAD) and returns the body
// bytes written.
func (fc *fastConn) write(h *fastHead, obj *object) (int, error) {
	out := fc.appendHeader(fc.bufs.out[:0], h, obj)
	fc.bufs.out = out
	body := obj.body
	if h.head {
		body = nil
	}
	first := body[:min(len(body), viewerWriteChunk)]
	fc.iovArr = [2][]byte{out, first}
	fc.iov = fc.iovArr[:]
	_ = fc.raw.SetWriteDeadline(time.Now().Add(viewerWriteTimeout))
	n64, err := fc.iov.WriteTo(fc.raw)
	n := max(int(n64)-len(out), 0)
	for err == nil && n < len(body) {
		// A body over one chunk: a deadline per chunk, as viewerWriter.
		_ = fc.raw.SetWriteDeadline(time.Now().Add(viewerWriteTimeout))
		var m int
		m, err = fc.raw.Write(body[n:min(len(body), n+viewerWriteChunk)])
		n += m
	}
	fc.iovArr = [2][]byte{} // an idle connection keeps no body alive
	return n, err
}

// appendHeader appends the status line and headers net/http sends for the
// handler's answer with obj (writeObject, serveBody; http.ServeContent for
// a HEAD): the handler's header map in net/http's order (sorted by key),
// then Date, then the Connection header net/http adds.
func (fc *fastConn) appendHeader(b []byte, h *fastHead, obj *object) []byte {
	c := fc.s.c
	if h.http11 {
		b = append(b, "HTTP/1.1 200 OK\r\n"...)
	} else {
		b = append(b, "HTTP/1.0 200 OK\r\n"...)
	}
	oh := &obj.header
	b = append(b, "Accept-Ranges: bytes\r\n"...)
	b = append(b, c.fastCORS...)
	b = appendHeaderLine(b, "Cache-Control", oh.cacheControl)
	b = appendHeaderLine(b, "Content-Length", oh.contentLength)
	b = appendHeaderLine(b, "Content-Type", oh.contentType)
	b = appendHeaderLine(b, "Etag", oh.etag)
	if !obj.modTime.IsZero() {
		b = appendHeaderLine(b, "Last-Modified", oh.lastModified)
	}
	b = append(b, "X-Cache: HIT\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	switch {
	case h.http11 && (h.close || fc.s.closing.Load()):
		// A server shutting down closes after the answer and says so, as
		// net/http does (its doKeepAlives); an HTTP/1.0 keep-alive answer
		// keeps its header there too.
		b = append(b, "\r\nConnection: close"...)
	case !h.http11 && h.keepAlive:
		b = append(b, "\r\nConnection: keep-alive"...)
	}
	return append(b, "\r\n\r\n"...)
}

// appendHeaderLine appends "key: value\r\n" for each value, cleaned as
// net/http's Header.Write cleans it (line breaks to spaces, surrounding
// white space trimmed).
func appendHeaderLine(b []byte, key string, values []string) []byte {
	for _, v := range values {
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
		v = strings.Trim(v, " \t\r\n")
		b = append(b, key...)
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	return b
}

// fastCORSHeader is the CORS part of the fast path's answers: c.cors as
// header lines sorted by key, as net/http writes them.
func fastCORSHeader(cors []headerValue) []byte {
	sorted := append([]headerValue(nil), cors...)
	for i := range sorted { // a handful: insertion sort
		for j := i; j > 0 && sorted[j].key < sorted[j-1].key; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	var b []byte
	for _, h := range sorted {
		b = appendHeaderLine(b, h.key, h.value)
	}
	return b
}

// replayConn is a connection handed to net/http: it reads the bytes the
// fast path had read first.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the connection beneath, for viewerConn's writev.
func (c *replayConn) NetConn() net.Conn { return c.Conn }
