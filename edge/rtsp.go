package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/streamgrid/streamgrid/bus"
)

// rtspWriteQueueSize is the server's per-session packet queue: large enough
// for the RTCP and response traffic of a publisher with 4K keyframes.
const rtspWriteQueueSize = 4096

// statusConflict answers a second publisher on a live path. RTSP has no 409;
// clients show the code and the reason phrase.
const statusConflict base.StatusCode = 409

// rtspServer accepts RTSP publishers (ANNOUNCE/RECORD over TCP or UDP). It
// is the gortsplib server's handler. Readers are refused: playback is HLS.
// With tls set it is the RTSPS server: the same handler behind a TLS
// listener, TCP-interleaved transport only (gortsplib refuses plain UDP on
// RTSPS, since the media would travel in clear).
type rtspServer struct {
	e   *Edge
	tls *tls.Config
	srv *gortsplib.Server
}

// rtspSession is the state of a publishing session (its UserData).
type rtspSession struct {
	path   string
	remote string
	tracks []rtpTrack
	stream atomic.Pointer[stream]
}

// rtspConn is the state of a connection (its UserData).
type rtspConn struct {
	requests  atomic.Uint64
	recording atomic.Bool
	timedOut  atomic.Bool
	deadline  *time.Timer // closes a connection that has not reached RECORD
}

// maxSDPMedias bounds the media sections of an ANNOUNCE (gortsplib bounds
// the SDP to 128 KiB); a camera has two or three.
const maxSDPMedias = 16

func (r *rtspServer) start() error {
	e := r.e
	methods, err := rtspAuthMethods(e.RTSPAuthMethods)
	if err != nil {
		return err
	}
	address, rtpAddress, rtcpAddress := e.RTSPAddress, e.UDPRTPAddress, e.UDPRTCPAddress
	if r.tls != nil {
		address, rtpAddress, rtcpAddress = e.RTSPSAddress, "", ""
	}
	r.srv = &gortsplib.Server{
		AuthMethods:    methods,
		Handler:        r,
		RTSPAddress:    address,
		UDPRTPAddress:  rtpAddress,
		UDPRTCPAddress: rtcpAddress,
		ReadTimeout:    e.ReadTimeout,
		WriteTimeout:   e.ReadTimeout,
		IdleTimeout:    e.ReadTimeout,
		WriteQueueSize: rtspWriteQueueSize,
		TLSConfig:      r.tls,
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &sniffListener{Listener: ln, e: e}, nil
		},
		// The sniffer goes above TLS, on the decrypted request; its read
		// deadline also bounds the TLS handshake.
		TLSListen: func(network, address string, conf *tls.Config) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &sniffListener{Listener: tls.NewListener(ln, conf), e: e}, nil
		},
	}
	return r.srv.Start()
}

func (r *rtspServer) close() { r.srv.Close() }

// addr is the bound address; nil for a server that is not configured.
func (r *rtspServer) addr() net.Addr {
	if r == nil {
		return nil
	}
	return r.srv.NetListener().Addr()
}

func (r *rtspServer) reject(reason string) {
	r.e.m.rejected.WithLabelValues(ProtocolRTSP, reason).Inc()
}

// rejectPublisher counts a refused publication of path and reports it
// (Edge.OnEvent).
func (r *rtspServer) rejectPublisher(reason, path, remote string) {
	r.reject(reason)
	r.e.refused(ProtocolRTSP, reason, path, remote)
}

// refusal is the response and error for a refused request; the error makes
// gortsplib close the connection after writing the response.
func refusal(code base.StatusCode, msg string) (*base.Response, error) {
	return &base.Response{StatusCode: code, StatusMessage: msg}, fmt.Errorf("refused: %d %s", code, msg)
}

// OnConnOpen implements gortsplib.ServerHandlerOnConnOpen.
// A connection has ReadTimeout to get to RECORD: keepalives alone do not
// hold a socket forever.
func (r *rtspServer) OnConnOpen(ctx *gortsplib.ServerHandlerOnConnOpenCtx) {
	c := &rtspConn{}
	conn := ctx.Conn
	c.deadline = time.AfterFunc(r.e.ReadTimeout, func() {
		if c.recording.Load() {
			return
		}
		c.timedOut.Store(true)
		if c.requests.Load() == 0 {
			r.reject(rejectHandshake) // not a single request: not speaking RTSP
		} else {
			r.reject(rejectHandshakeTimeout)
		}
		r.e.log.Debug("rtsp connection closed: no RECORD within the read timeout", "remote", conn.NetConn().RemoteAddr().String())
		conn.Close()
	})
	conn.SetUserData(c)
}

// OnRequest implements gortsplib.ServerHandlerOnRequest.
func (r *rtspServer) OnRequest(sc *gortsplib.ServerConn, _ *base.Request) {
	if c, ok := sc.UserData().(*rtspConn); ok {
		c.requests.Add(1)
	}
}

// OnConnClose implements gortsplib.ServerHandlerOnConnClose. A connection
// that failed before a single well-formed request was not speaking RTSP.
func (r *rtspServer) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	c, ok := ctx.Conn.UserData().(*rtspConn)
	if ok {
		c.deadline.Stop()
	}
	if !ok || c.timedOut.Load() || c.requests.Load() > 0 || ctx.Error == nil {
		return
	}
	var terminated liberrors.ErrServerTerminated
	if errors.As(ctx.Error, &terminated) || errors.Is(ctx.Error, io.EOF) || errors.Is(ctx.Error, net.ErrClosed) {
		return
	}
	r.reject(rejectHandshake)
	r.e.log.Debug("rtsp connection dropped", "remote", ctx.Conn.NetConn().RemoteAddr().String(), "err", ctx.Error)
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe: no RTSP playback.
func (r *rtspServer) OnDescribe(_ *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	r.reject(rejectPlay)
	return &base.Response{StatusCode: base.StatusNotFound, StatusMessage: "Not Found (playback is served over HLS)"}, nil, nil
}

// OnAnnounce implements gortsplib.ServerHandlerOnAnnounce: it checks the
// path and the tracks and refuses early when the path is live already.
func (r *rtspServer) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	e := r.e
	remote := ctx.Conn.NetConn().RemoteAddr().String()
	path := strings.Trim(ctx.Path, "/")
	if err := bus.ValidatePath(path); err != nil {
		r.rejectPublisher(rejectPath, path, remote)
		e.log.Warn("rtsp publish refused", "remote", remote, "path", fmt.Sprintf("%q", path), "err", err)
		return refusal(base.StatusBadRequest, "Bad Request (invalid stream path)")
	}
	if res, err := r.authenticate(ctx, path, remote); res != nil {
		return res, err
	}
	log := e.log.With("stream", path, "protocol", ProtocolRTSP, "remote", remote)
	if n := len(ctx.Description.Medias); n > maxSDPMedias {
		r.rejectPublisher(rejectSDP, path, remote)
		log.Warn("rtsp publish refused: too many media sections in the SDP", "medias", n)
		return refusal(base.StatusBadRequest, fmt.Sprintf("Bad Request (more than %d media sections)", maxSDPMedias))
	}
	if e.full() {
		r.rejectPublisher(rejectLimit, path, remote)
		log.Warn("rtsp publish refused: edge.max_publishers reached", "max", e.MaxPublishers)
		return refusal(base.StatusServiceUnavailable, "Service Unavailable (publisher limit of this edge reached)")
	}
	tracks, ignored := rtpTracks(ctx.Description)
	if len(ignored) > 0 {
		log.Info("ignoring unsupported tracks", "codecs", strings.Join(ignored, ","))
	}
	if len(tracks) == 0 {
		r.rejectPublisher(rejectNoTracks, path, remote)
		log.Warn("rtsp publish refused: no supported track (H264, H265, AAC, Opus)")
		return refusal(base.StatusUnsupportedMediaType, "Unsupported Media Type (no H264, H265, AAC or Opus track)")
	}
	if e.pathBusy(path) {
		r.rejectPublisher(rejectBusy, path, remote)
		log.Warn("rtsp publish refused: a publisher is already live on this path")
		return refusal(statusConflict, "Conflict (a publisher is already live on this path)")
	}
	ctx.Session.SetUserData(&rtspSession{path: path, remote: remote, tracks: tracks})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup: publishers only.
func (r *rtspServer) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() != gortsplib.ServerSessionStatePreRecord {
		r.reject(rejectPlay)
		return &base.Response{StatusCode: base.StatusNotFound, StatusMessage: "Not Found (playback is served over HLS)"}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

// OnRecord implements gortsplib.ServerHandlerOnRecord: it claims the path
// with the tracks the client set up and starts publishing.
func (r *rtspServer) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	e := r.e
	rs, ok := ctx.Session.UserData().(*rtspSession)
	if !ok {
		return refusal(base.StatusBadRequest, "Bad Request")
	}
	log := e.log.With("stream", rs.path, "protocol", ProtocolRTSP, "remote", rs.remote)
	setup := ctx.Session.Medias()
	var tracks []rtpTrack
	for _, tr := range rs.tracks {
		if slices.Contains(setup, tr.media) {
			tr.info.ID = uint8(len(tracks))
			tracks = append(tracks, tr)
		}
	}
	if len(tracks) == 0 {
		r.rejectPublisher(rejectNoTracks, rs.path, rs.remote)
		log.Warn("rtsp publish refused: no supported track was set up")
		return refusal(base.StatusUnsupportedMediaType, "Unsupported Media Type (no supported track set up)")
	}
	session := ctx.Session
	s, err := e.openStream(streamRequest{
		path: rs.path, protocol: ProtocolRTSP, remote: rs.remote,
		tracks: trackInfos(tracks),
		kick:   session.Close,
	})
	switch {
	case errors.Is(err, bus.ErrStreamBusy):
		r.rejectPublisher(rejectBusy, rs.path, rs.remote)
		log.Warn("rtsp publish refused: a publisher is already live on this path")
		return refusal(statusConflict, "Conflict (a publisher is already live on this path)")
	case errors.Is(err, errEdgeClosing):
		r.rejectPublisher(rejectClosing, rs.path, rs.remote)
		return refusal(base.StatusServiceUnavailable, "Service Unavailable (edge shutting down)")
	case errors.Is(err, errTooManyPublishers):
		r.rejectPublisher(rejectLimit, rs.path, rs.remote)
		log.Warn("rtsp publish refused: edge.max_publishers reached", "max", e.MaxPublishers)
		return refusal(base.StatusServiceUnavailable, "Service Unavailable (publisher limit of this edge reached)")
	case err != nil:
		r.rejectPublisher(rejectRegistry, rs.path, rs.remote)
		log.Error("rtsp publish refused: stream registry unavailable", "err", err)
		return refusal(base.StatusServiceUnavailable, "Service Unavailable (stream registry unavailable)")
	}
	for i, tr := range tracks {
		if err := tr.attach(session, s, i); err != nil {
			s.close(err)
			log.Error("rtsp publish refused", "err", err)
			return refusal(base.StatusInternalServerError, "Internal Server Error")
		}
	}
	rs.stream.Store(s)
	if c, ok := ctx.Conn.UserData().(*rtspConn); ok {
		c.recording.Store(true)
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose.
func (r *rtspServer) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	rs, ok := ctx.Session.UserData().(*rtspSession)
	if !ok {
		return
	}
	if s := rs.stream.Load(); s != nil {
		s.close(sessionEndReason(ctx.Error))
	}
}

// sessionEndReason maps a normal end of session (TEARDOWN, shutdown) to nil.
func sessionEndReason(err error) error {
	var torn liberrors.ErrServerSessionTornDown
	var terminated liberrors.ErrServerTerminated
	var notInUse liberrors.ErrServerSessionNotInUse
	if err == nil || errors.As(err, &torn) || errors.As(err, &terminated) || errors.As(err, &notInUse) {
		return nil
	}
	return err
}

// OnPacketsLost implements gortsplib.ServerHandlerOnPacketsLost.
func (r *rtspServer) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	if rs, ok := ctx.Session.UserData().(*rtspSession); ok {
		if s := rs.stream.Load(); s != nil {
			s.lost(ctx.Lost)
			return
		}
	}
	r.e.m.packetsLost.WithLabelValues(ProtocolRTSP).Add(float64(ctx.Lost))
}

// OnDecodeError implements gortsplib.ServerHandlerOnDecodeError.
func (r *rtspServer) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	if rs, ok := ctx.Session.UserData().(*rtspSession); ok {
		if s := rs.stream.Load(); s != nil {
			s.decodeError()
			s.log.Debug("rtsp decode error", "err", ctx.Error)
			return
		}
	}
	r.e.m.decodeErrors.WithLabelValues(ProtocolRTSP).Inc()
}

// OnStreamWriteError implements gortsplib.ServerHandlerOnStreamWriteError.
// The edge serves no RTSP readers, so there is nothing to write; the method
// exists to keep gortsplib from logging on its own.
func (r *rtspServer) OnStreamWriteError(*gortsplib.ServerHandlerOnStreamWriteErrorCtx) {}
