package hlscache

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
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
	// left: the viewer closed the connection while its request waited
	// (watchLeaving). looked: the wait's result the handler answers from,
	// handed over with the connection.
	left   bool
	looked *lookedUp

	// idleUntil and writeUntil are the idle read deadline and the write
	// deadline last set (zero: another read deadline is in force). A
	// deadline within deadlineSlack of the one a request would set is
	// kept: re-arming a timer for every request cost about 1.5 % of the
	// node's CPU under wrk.
	idleUntil, writeUntil time.Time
	// date is the Date header value of dateSec (formatted once a second).
	dateSec int64
	date    [len(http.TimeFormat)]byte
}

// deadlineSlack is how much earlier than its timeout a kept idle or write
// deadline may fire: the idle timeout between requests, and a body chunk's
// write timeout, are those within a second.
const deadlineSlack = time.Second

// armIdle sets the idle read deadline between requests, unless the one in
// force ends within deadlineSlack of it.
func (fc *fastConn) armIdle(now time.Time) {
	until := now.Add(idleTimeout)
	if !fc.idleUntil.IsZero() && until.Sub(fc.idleUntil) < deadlineSlack {
		return
	}
	fc.idleUntil = until
	_ = fc.raw.SetReadDeadline(until)
}

// setReadDeadline sets a read deadline other than the idle one.
func (fc *fastConn) setReadDeadline(t time.Time) {
	fc.idleUntil = time.Time{}
	_ = fc.raw.SetReadDeadline(t)
}

// armWrite sets the write deadline for the next body chunk, unless the one
// in force ends within deadlineSlack of it.
func (fc *fastConn) armWrite(now time.Time) {
	until := now.Add(viewerWriteTimeout)
	if until.Sub(fc.writeUntil) < deadlineSlack {
		return
	}
	fc.writeUntil = until
	_ = fc.raw.SetWriteDeadline(until)
}

// appendDate appends now as an HTTP Date, formatted once a second.
func (fc *fastConn) appendDate(b []byte, now time.Time) []byte {
	if sec := now.Unix(); sec != fc.dateSec || fc.date[0] == 0 {
		fc.dateSec = sec
		now.UTC().AppendFormat(fc.date[:0], http.TimeFormat)
	}
	return append(b, fc.date[:]...)
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
		fc.s.c.m.handedOver.Inc()
		vc := newViewerConn(&replayConn{Conn: fc.conn, pending: pending})
		vc.looked = fc.looked
		fc.s.handoff.give(vc)
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
	fc.setReadDeadline(time.Now().Add(c.HeaderTimeout))
	headerDeadline := true
	for {
		if fc.r == fc.w {
			fc.r, fc.w = 0, 0
			if !headerDeadline {
				// Between requests: the idle timeout, until the next
				// request's first bytes.
				fc.armIdle(time.Now())
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
				fc.setReadDeadline(time.Now().Add(c.HeaderTimeout))
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

// answer answers h when it asks for an object of a stream with a routable
// owner and the object is a 200: from the LRU, or after waiting for the
// upstream fetch it shares with the other requests for it (a miss, an
// LL-HLS blocking reload), as the handler waits. served false leaves the
// request (not consumed, not counted) to net/http: anything but a 200 (an
// error, a 404, a failover's stale copy) is the handler's to answer, from
// the fetch's result when there was one (fc.looked). ok false: the
// connection ends (the answer could not be written, the viewer left).
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
	if err != nil {
		// A path the cache refuses (a 404 for a file name it never serves,
		// as EXT-X-GAP's placeholder that ffmpeg asks for, or a 400) is
		// answered here as the handler answers it, for a GET.
		var re *requestError
		if h.head || !errors.As(err, &re) {
			return false, false
		}
		fc.s.served.Add(1)
		c.m.badRequests.Inc()
		return true, fc.writeText(h, re.status, re.msg) == nil
	}
	if req.kind == kindPage {
		return fc.writePage(h, req.stream)
	}
	negotiated := req.file == multivariantName
	if negotiated && wantsCompatFor(string(h.userAgent), string(h.fetchDest)) {
		req.file = compatMultivariantName // negotiate's choice
	}
	now := time.Now()
	rt, prev, state, changed := c.routes.resolve(req.stream, now)
	if state != routeOK {
		return false, false
	}
	key := cacheKey(rt, req)
	var obj *object
	res := resultHit
	if !req.hls.Blocking() {
		obj = c.stored(rt, req, key, now)
	}
	var a fastAnswer
	gone, fetched := false, obj == nil
	if fetched {
		var err error
		obj, res, err = fc.wait(rt, changed, req)
		switch {
		case fc.left:
			gone = true
		case errors.Is(err, errRouteMoved):
			c.m.rerouted.Inc()
			return false, false
		case err != nil:
			fc.looked = &lookedUp{key: key, obj: obj, res: res, err: err}
			return false, false
		}
	}
	if !gone {
		var ok bool
		if a, ok = fc.shape(h, obj, res, prev); !ok {
			if fetched { // the handler answers from this result: no second fetch
				fc.looked = &lookedUp{key: key, obj: obj, res: res}
			}
			return false, false
		}
		a.vary = negotiated
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
	fc.s.served.Add(1)
	if gone {
		c.m.requestsBy[req.kind][outcomeGone].Inc()
		return true, false
	}
	var n int
	if obj.status == http.StatusOK {
		n, err = fc.write(h, &a)
	} else {
		n, err = fc.writeError(h, &a)
	}
	c.m.requestsBy[req.kind][fetchOutcome(res)].Inc()
	c.m.servedBy[req.kind].Add(float64(n))
	return true, err == nil
}

// fastAnswer is what the fast path sends for a request: obj as found
// (res), the part of its body asked for, and whether it is index.m3u8's
// negotiated answer (its Vary header).
type fastAnswer struct {
	obj  *object
	res  fetchResult
	span bodySpan
	vary bool
}

// bodySpan is the part of a body an answer sends: all of it, or one byte
// range of it (a 206).
type bodySpan struct {
	start, length int64
	ranged        bool
}

// shape reports whether the fast path answers h with obj, and how: a 200,
// or a 206 for a range of it that is satisfiable (else the handler's 416);
// or, to a GET over HTTP/1.1, an origin's refusal (a 404 of a file it does
// not have: writeError), unless the stream changed owners lately (the
// handler may answer with the previous owner's copy then).
func (fc *fastConn) shape(h *fastHead, obj *object, res fetchResult, prev route) (fastAnswer, bool) {
	a := fastAnswer{obj: obj, res: res, span: bodySpan{length: int64(len(obj.body))}}
	if obj.status != http.StatusOK {
		return a, !h.head && h.http11 && prev.node == ""
	}
	if h.rng == nil {
		return a, true
	}
	start, length, ok := parseRange(h.rng, int64(len(obj.body)))
	a.span = bodySpan{start: start, length: length, ranged: true}
	return a, ok
}

// lookedUp is the result of a fast-path request's upstream wait that the
// handler answers (it is not a 200): it goes with the connection to
// net/http, whose handler takes it for that request instead of asking the
// upstream again (takeLookedUp).
type lookedUp struct {
	key string
	obj *object
	res fetchResult
	err error
}

// wait looks req up from rt as the handler does (lookupStaying): the LRU,
// else the upstream fetch it shares with the other requests for the object
// (a blocking reload waits there for its part). Meanwhile the connection is
// read, as net/http's background read does, to notice the viewer leaving
// (fc.left, and the wait ends).
func (fc *fastConn) wait(rt route, changed <-chan struct{}, req *request) (*object, fetchResult, error) {
	ctx, cancel := context.WithCancel(fc.s.stop)
	defer cancel()
	defer fc.watchLeaving(cancel)()
	return fc.s.c.lookupStaying(ctx, rt, req, &changed, nil)
}

// watchLeaving reads the connection in the background until the returned
// function stops it: bytes that come (a request pipelined after this one)
// are kept in the buffer; the connection's end sets fc.left and calls
// leave. The read deadline is left in the past: the next read sets its own.
func (fc *fastConn) watchLeaving(leave func()) (stop func()) {
	if fc.w == len(fc.bufs.in) {
		return func() {} // a full buffer: nothing to read into
	}
	fc.setReadDeadline(time.Time{})
	var n int
	var err error
	free := fc.bufs.in[fc.w:]
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err = fc.raw.Read(free)
		if n == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
			leave()
		}
	}()
	return func() {
		fc.setReadDeadline(time.Unix(1, 0))
		<-done
		fc.w += n
		fc.left = n == 0 && !errors.Is(err, os.ErrDeadlineExceeded)
	}
}

// write sends obj's 200, or its 206 for h's range (the body or the range
// but for a HEAD), and returns the body bytes written.
func (fc *fastConn) write(h *fastHead, a *fastAnswer) (int, error) {
	out := fc.appendHeader(fc.bufs.out[:0], h, a)
	fc.bufs.out = out
	body := a.obj.body[a.span.start : a.span.start+a.span.length]
	if h.head {
		body = nil
	}
	first := body[:min(len(body), viewerWriteChunk)]
	fc.iovArr = [2][]byte{out, first}
	fc.iov = fc.iovArr[:]
	fc.armWrite(time.Now())
	n64, err := fc.iov.WriteTo(fc.raw)
	n := max(int(n64)-len(out), 0)
	for err == nil && n < len(body) {
		// A body over one chunk: a deadline per chunk, as viewerWriter.
		fc.armWrite(time.Now())
		var m int
		m, err = fc.raw.Write(body[n:min(len(body), n+viewerWriteChunk)])
		n += m
	}
	fc.iovArr = [2][]byte{} // an idle connection keeps no body alive
	return n, err
}

// writeText sends the handler's writeText answer to a GET: the status,
// CORS, the text headers, then net/http's Date and Content-Length, and msg
// on a line.
func (fc *fastConn) writeText(h *fastHead, status int, msg string) error {
	b := appendStatusLine(fc.bufs.out[:0], h.http11, status)
	b = append(b, fc.s.c.fastCORS...)
	b = append(b, "Cache-Control: no-cache\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	b = fc.appendDate(b, time.Now())
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(msg)+1), 10)
	b = fc.appendConnection(b, h)
	b = append(b, "\r\n\r\n"...)
	b = append(b, msg...)
	b = append(b, '\n')
	fc.bufs.out = b
	fc.armWrite(time.Now())
	_, err := fc.raw.Write(b)
	return err
}

// writePage answers the player page of stream as the handler does
// (servePlayerPage): the same headers in net/http's order, then Date, the
// Connection header net/http adds and, to a GET, the page. A page that
// cannot be rendered is the handler's to answer (its 500).
func (fc *fastConn) writePage(h *fastHead, stream string) (served, ok bool) {
	page, err := renderPlayerPage(stream)
	if err != nil {
		return false, false
	}
	c := fc.s.c
	now := time.Now()
	c.viewers.seen(stream, fc.remoteAddr, "", false, now)
	fc.s.served.Add(1)
	b := appendStatusLine(fc.bufs.out[:0], h.http11, http.StatusOK)
	b = append(b, c.fastCORS...) // Access-Control-*: before the page's own
	b = appendPageHeader(b, len(page))
	b = append(b, "Date: "...)
	b = fc.appendDate(b, now)
	b = fc.appendConnection(b, h)
	b = append(b, "\r\n\r\n"...)
	fc.bufs.out = b
	if h.head {
		page = nil
	}
	fc.iovArr = [2][]byte{b, page}
	fc.iov = fc.iovArr[:]
	fc.armWrite(now)
	_, err = fc.iov.WriteTo(fc.raw)
	fc.iovArr = [2][]byte{}
	c.m.requestsBy[kindPage][outcomeHit].Inc()
	return true, err == nil
}

// writeError sends the handler's answer with an origin's refusal (its 4xx
// kept as obj: writeObject, writeText), as net/http sends it over HTTP/1.1:
// chunked, since the handler flushes before it returns (viewerWriter's
// finish). It returns the body bytes written.
func (fc *fastConn) writeError(h *fastHead, a *fastAnswer) (int, error) {
	obj := a.obj
	b := appendStatusLine(fc.bufs.out[:0], true, obj.status)
	b = append(b, fc.s.c.fastCORS...)
	b = append(b, "Cache-Control: no-cache\r\nContent-Type: text/plain; charset=utf-8\r\nX-Cache: "...)
	b = append(b, a.res.String()...)
	b = append(b, "\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	b = fc.appendDate(b, time.Now())
	b = fc.appendConnection(b, h)
	b = append(b, "\r\nTransfer-Encoding: chunked\r\n\r\n"...)
	n := len(obj.body) + 1
	b = strconv.AppendInt(b, int64(n), 16)
	b = append(b, "\r\n"...)
	b = append(b, obj.body...)
	b = append(b, "\n\r\n0\r\n\r\n"...)
	fc.bufs.out = b
	fc.armWrite(time.Now())
	if _, err := fc.raw.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// appendConnection appends the Connection header net/http adds to an
// answer (with its leading line end), if any.
func (fc *fastConn) appendConnection(b []byte, h *fastHead) []byte {
	switch {
	case h.http11 && (h.close || fc.s.closing.Load()):
		// A server shutting down closes after the answer and says so, as
		// net/http does (its doKeepAlives); an HTTP/1.0 keep-alive answer
		// keeps its header there too.
		return append(b, "\r\nConnection: close"...)
	case !h.http11 && h.keepAlive:
		return append(b, "\r\nConnection: keep-alive"...)
	}
	return b
}

// appendHeader appends the status line and headers net/http sends for the
// handler's answer a (writeObject, serveBody; http.ServeContent for a HEAD
// or a range): the handler's header map in net/http's order (sorted by key),
// then Date, then the Connection header net/http adds.
func (fc *fastConn) appendHeader(b []byte, h *fastHead, a *fastAnswer) []byte {
	c, obj, span := fc.s.c, a.obj, a.span
	if span.ranged {
		b = appendStatusLine(b, h.http11, http.StatusPartialContent)
	} else {
		b = appendStatusLine(b, h.http11, http.StatusOK)
	}
	oh := &obj.header
	b = append(b, "Accept-Ranges: bytes\r\n"...)
	b = append(b, c.fastCORS...)
	b = appendHeaderLine(b, "Cache-Control", oh.cacheControl)
	if span.ranged {
		// http.ServeContent's single-range answer.
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, span.length, 10)
		b = append(b, "\r\nContent-Range: bytes "...)
		b = strconv.AppendInt(b, span.start, 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, span.start+span.length-1, 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(len(obj.body)), 10)
		b = append(b, "\r\n"...)
	} else {
		b = appendHeaderLine(b, "Content-Length", oh.contentLength)
	}
	b = appendHeaderLine(b, "Content-Type", oh.contentType)
	b = appendHeaderLine(b, "Etag", oh.etag)
	if !obj.modTime.IsZero() {
		b = appendHeaderLine(b, "Last-Modified", oh.lastModified)
	}
	if a.vary {
		b = append(b, "Vary: "+varyNegotiated+"\r\n"...) // negotiate's
	}
	b = append(b, "X-Cache: "...)
	b = append(b, a.res.String()...)
	b = append(b, "\r\nDate: "...)
	b = fc.appendDate(b, time.Now())
	b = fc.appendConnection(b, h)
	return append(b, "\r\n\r\n"...)
}

// appendStatusLine appends an HTTP/1.1 (or 1.0) status line.
func appendStatusLine(b []byte, http11 bool, status int) []byte {
	if http11 {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	return append(b, "\r\n"...)
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
