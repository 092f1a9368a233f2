package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/auth/authreq"
)

// rtmpAnalyzePeriod is how much media gortmplib's Reader reads to find the
// tracks before it returns, and the most rtmpProbe reads when it cannot
// tell that every track is known; the setup deadline allows for it.
const rtmpAnalyzePeriod = 2 * time.Second

// maxRTMPDecodeErrors ends a connection after this many undecodable messages in a row.
const maxRTMPDecodeErrors = 16

// rtmpServer accepts RTMP publishers: H264 and AAC, and enhanced RTMP (HEVC,
// Opus). Players are refused: playback is HLS.
type rtmpServer struct {
	e  *Edge
	ln net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	// For tests: slow keeps every publication off the fast path (rtmpIngest);
	// fastFrames counts the frames ended publications took on it.
	slow       atomic.Bool
	fastFrames atomic.Uint64
}

func (r *rtmpServer) start() {
	r.conns = make(map[net.Conn]struct{})
	r.wg.Add(1)
	go r.acceptLoop()
}

// close stops accepting, disconnects every client and waits for their handlers.
func (r *rtmpServer) close() {
	r.mu.Lock()
	r.closed = true
	_ = r.ln.Close() // unblocks Accept
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// addr is the bound address; nil for a server that is not configured.
func (r *rtmpServer) addr() net.Addr {
	if r == nil {
		return nil
	}
	return r.ln.Addr()
}

func (r *rtmpServer) reject(reason string) {
	r.e.m.rejected.WithLabelValues(ProtocolRTMP, reason).Inc()
}

// rejectPublisher counts a refused publication of path and reports it
// (Edge.OnEvent).
func (r *rtmpServer) rejectPublisher(reason, path, remote string) {
	r.reject(reason)
	r.e.refused(ProtocolRTMP, reason, path, remote)
}

func (r *rtmpServer) acceptLoop() {
	defer r.wg.Done()
	for {
		conn, err := r.e.accept(r.ln, "rtmp")
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = conn.Close()
			return
		}
		r.conns[conn] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go r.serve(conn)
	}
}

// serve runs one connection; a panic in it (a library bug on hostile input)
// ends that connection only.
func (r *rtmpServer) serve(conn net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, conn)
		r.mu.Unlock()
		_ = conn.Close()
	}()
	defer func() {
		if v := recover(); v != nil {
			r.reject(rejectPanic)
			r.e.log.Error("rtmp connection handler panicked", "remote", conn.RemoteAddr().String(),
				"err", fmt.Errorf("panic: %v", v), "stack", string(debug.Stack()))
		}
	}()
	r.handle(conn)
}

// rtmpReadBuffer is what one read from a publisher's socket may take in.
// gortmplib reads through a 4 KiB bufio.Reader, so a 10 KB frame would cost
// three read syscalls and a 100 KB keyframe twenty-five; with this buffer
// underneath, a frame costs one, whatever its size.
const rtmpReadBuffer = 64 << 10

// deadlineRefresh is how stale the idle read deadline may get before it is
// moved again: it moves at most once a second instead of on every read.
const deadlineRefresh = time.Second

// deadlineConn buffers a publisher's reads and keeps a read deadline on
// them, so a client that stalls is dropped; it sets a write deadline before
// every write; until setup is cleared it also enforces an overall deadline
// on the handshake.
type deadlineConn struct {
	net.Conn
	idle  time.Duration
	setup time.Time // zero once the publication runs
	// limit, when positive, bounds the bytes read so far (total): the
	// library buffers what it reads before the tracks are known.
	limit, total int64

	buf          []byte
	start, end   int       // unread bytes are buf[start:end]
	readDeadline time.Time // the deadline set on the socket
	// pace spaces the reads once the publication runs (Edge.ReadInterval).
	pace readPacer
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.start == c.end {
		if len(p) >= rtmpReadBuffer {
			// The reader above buffers itself (rtmpchunk, once the
			// handshake is read): the buffer the handshake's small reads
			// needed goes back to the heap.
			c.buf = nil
			return c.fill(p)
		}
		if c.buf == nil {
			c.buf = make([]byte, rtmpReadBuffer)
		}
		n, err := c.fill(c.buf)
		c.start, c.end = 0, n
		if n == 0 {
			return 0, err
		}
		// An error that came with data shows again on the next read.
	}
	n := copy(p, c.buf[c.start:c.end])
	c.start += n
	return n, nil
}

// fill reads from the socket under the read deadline.
func (c *deadlineConn) fill(p []byte) (int, error) {
	now := time.Now()
	d := now.Add(c.idle)
	if !c.setup.IsZero() && c.setup.Before(d) {
		d = c.setup
	}
	if !c.setup.IsZero() || d.Sub(c.readDeadline) >= deadlineRefresh || d.Before(c.readDeadline) {
		if err := c.Conn.SetReadDeadline(d); err != nil {
			return 0, err
		}
		c.readDeadline = d
	}
	if c.limit > 0 && c.total >= c.limit {
		return 0, errSetupTooLarge
	}
	if !c.setup.IsZero() {
		quickAck(c.Conn)
	}
	c.pace.wait()
	n, err := c.Conn.Read(p)
	c.pace.done(n, len(p))
	c.total += int64(n)
	return n, err
}

// errSetupTooLarge ends an RTMP connection that sends more than its
// allowance before it is authenticated, or before its tracks are known.
var errSetupTooLarge = errors.New("too many bytes before the publication started")

// Allowances of an RTMP connection: until the publish command (handshake,
// connect, createStream, publish: a few kilobytes in practice), and until
// the tracks are known (gortmplib buffers up to 5000 messages of up to
// 10 MiB while it looks for them; a camera needs a keyframe or two).
const (
	rtmpHandshakeBytes = 1 << 20
	rtmpSetupBytes     = 16 << 20
)

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// rejectStatus tells an RTMP client why its publish or play was refused.
func rejectStatus(sc *gortmplib.ServerConn, code, description string) {
	_ = sc.Write(&message.CommandAMF0{ // the connection closes next anyway
		ChunkStreamID:   5,
		MessageStreamID: 0x1000000,
		Name:            "onStatus",
		Arguments: []any{
			nil,
			amf0.Object{
				{Key: "level", Value: "error"},
				{Key: "code", Value: code},
				{Key: "description", Value: description},
			},
		},
	})
}

// authenticate checks a publisher's credentials (the stream name's
// ?user=&pass= query); on refusal it tells the client and reports false.
func (r *rtmpServer) authenticate(sc *gortmplib.ServerConn, path string, conn net.Conn, log *slog.Logger) bool {
	e := r.e
	if e.Auth == nil {
		return true
	}
	user, pass := rtmpCredentials(sc.URL)
	err := e.Auth.Authenticate(e.ctx, authreq.Request{
		User: user, Pass: pass, IP: remoteIP(conn.RemoteAddr()), Action: authreq.ActionPublish,
		Path: path, Protocol: ProtocolRTMP, Query: sc.URL.RawQuery,
	})
	switch {
	case err == nil:
		return true
	case errors.Is(err, authreq.ErrUnauthorized):
		r.rejectPublisher(rejectUnauthorized, path, conn.RemoteAddr().String())
		log.Warn("rtmp publish refused: credentials missing or wrong (?user=...&pass=... on the stream name)", "user", user)
		rejectStatus(sc, "NetStream.Publish.Unauthorized", "authentication failed")
	default:
		r.rejectPublisher(rejectForbidden, path, conn.RemoteAddr().String())
		log.Warn("rtmp publish refused", "user", user, "err", err)
		rejectStatus(sc, "NetStream.Publish.Unauthorized", "no publish permission on this path")
	}
	return false
}

// handshake runs the TLS handshake of an RTMPS connection, then the RTMP
// one up to the publish (or play) command, all within ReadTimeout. It
// counts and logs a failure itself.
func (r *rtmpServer) handshake(conn net.Conn, remote string) (*gortmplib.ServerConn, *deadlineConn, *rtmpConn, bool) {
	e := r.e
	if tc, ok := conn.(*tls.Conn); ok { // RTMPS: the TLS handshake first, within the read timeout
		_ = tc.SetDeadline(time.Now().Add(e.ReadTimeout))
		if err := tc.Handshake(); err != nil {
			r.reject(rejectHandshake)
			e.log.Debug("rtmps TLS handshake failed", "remote", remote, "err", err)
			return nil, nil, nil, false
		}
	}
	dc := &deadlineConn{Conn: conn, idle: e.ReadTimeout, setup: time.Now().Add(e.ReadTimeout), limit: rtmpHandshakeBytes}
	rc := newRTMPConn(dc)
	sc := &gortmplib.ServerConn{RW: rc}
	err := sc.Initialize()
	if err == nil {
		rc.ack = acknowledger(sc)
		err = sc.AcceptConn()
	}
	if err != nil {
		if errors.Is(err, errSetupTooLarge) {
			r.reject(rejectSetupSize)
		} else {
			r.reject(rejectHandshake)
		}
		e.log.Debug("rtmp handshake failed", "remote", remote, "err", redactQueryPass(err))
		return nil, nil, nil, false
	}
	return sc, dc, rc, true
}

// readTracks accepts the publication and reads its first messages to learn
// its tracks (rtmpProbe: until their sequence headers are in, at most
// gortmplib's analyze period). It counts and logs a refusal itself.
func (r *rtmpServer) readTracks(sc *gortmplib.ServerConn, dc *deadlineConn, path, remote string, log *slog.Logger) (*gortmplib.Reader, *rtmpIngest, []bus.TrackInfo, bool) {
	dc.setup = time.Now().Add(r.e.ReadTimeout + rtmpAnalyzePeriod)
	dc.limit = dc.total + rtmpSetupBytes
	err := sc.AcceptAction()
	var rd *gortmplib.Reader
	var multitrack bool
	if err == nil {
		rd, multitrack, err = newRTMPReader(sc)
	}
	if err != nil {
		if errors.Is(err, errSetupTooLarge) {
			r.rejectPublisher(rejectSetupSize, path, remote)
			log.Warn("rtmp publish refused: too much data before the tracks were known", "limit_bytes", rtmpSetupBytes)
			return nil, nil, nil, false
		}
		r.rejectPublisher(rejectNoTracks, path, remote)
		log.Warn("rtmp publish failed before the tracks were known", "err", err)
		return nil, nil, nil, false
	}
	ing := &rtmpIngest{multitrack: multitrack}
	tracks, ignored, err := ing.tracks(rd)
	if len(ignored) > 0 {
		log.Info("ignoring unsupported tracks", "codecs", strings.Join(ignored, ","))
	}
	if err == nil && len(tracks) == 0 {
		err = errors.New("no supported track (H264, H265, AAC, Opus)")
	}
	if err != nil {
		r.rejectPublisher(rejectNoTracks, path, remote)
		log.Warn("rtmp publish refused", "err", err)
		return nil, nil, nil, false
	}
	return rd, ing, tracks, true
}

// handle runs one connection: the handshake, the checks on the publisher,
// its tracks, then the publication until it ends.
func (r *rtmpServer) handle(conn net.Conn) {
	e := r.e
	remote := conn.RemoteAddr().String()
	sc, dc, rc, ok := r.handshake(conn, remote)
	if !ok {
		return
	}
	if !sc.Publish {
		r.reject(rejectPlay)
		rejectStatus(sc, "NetStream.Play.Failed", "playback is served over HLS")
		return
	}
	path := strings.Trim(sc.URL.Path, "/") // "rtmp://h/live/cam1?k=v" publishes live/cam1
	if err := bus.ValidatePath(path); err != nil {
		r.rejectPublisher(rejectPath, path, remote)
		e.log.Warn("rtmp publish refused", "remote", remote, "path", fmt.Sprintf("%q", path), "err", err)
		rejectStatus(sc, "NetStream.Publish.BadName", "invalid stream path")
		return
	}
	log := e.log.With("stream", path, "protocol", ProtocolRTMP, "remote", remote)
	if !r.authenticate(sc, path, conn, log) {
		return
	}
	if e.full() {
		r.rejectPublisher(rejectLimit, path, remote)
		log.Warn("rtmp publish refused: edge.max_publishers reached", "max", e.MaxPublishers)
		rejectStatus(sc, "NetStream.Publish.Rejected", "publisher limit of this edge reached")
		return
	}
	if e.pathBusy(path) {
		r.rejectPublisher(rejectBusy, path, remote)
		log.Warn("rtmp publish refused: a publisher is already live on this path")
		rejectStatus(sc, "NetStream.Publish.BadName", "a publisher is already live on this path")
		return
	}

	rd, ing, tracks, ok := r.readTracks(sc, dc, path, remote, log)
	if !ok {
		return
	}

	s, err := e.openStream(streamRequest{
		path: path, protocol: ProtocolRTMP, remote: remote, tracks: tracks,
		kick: func() { _ = conn.Close() }, // unblocks the read loop
	})
	switch {
	case errors.Is(err, bus.ErrStreamBusy):
		r.rejectPublisher(rejectBusy, path, remote)
		log.Warn("rtmp publish refused: a publisher is already live on this path")
		return
	case errors.Is(err, errEdgeClosing):
		r.rejectPublisher(rejectClosing, path, remote)
		return
	case errors.Is(err, errTooManyPublishers):
		r.rejectPublisher(rejectLimit, path, remote)
		log.Warn("rtmp publish refused: edge.max_publishers reached", "max", e.MaxPublishers)
		return
	case err != nil:
		r.rejectPublisher(rejectRegistry, path, remote)
		log.Error("rtmp publish refused: stream registry unavailable", "err", err)
		return
	}
	ing.s = s
	dc.setup = time.Time{}
	dc.limit = 0
	dc.pace.interval = r.e.ReadInterval
	if r.slow.Load() {
		rc = nil
	}
	err = ing.readLoop(rd, rc)
	r.fastFrames.Add(ing.fastFrames)
	s.close(err)
}
