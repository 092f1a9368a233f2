package testmedia

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"
)

// cameraServerWriteQueue is the per-reader RTP queue of a CameraServer (a power
// of two): a whole IDR of the sample clip fits many times over.
const cameraServerWriteQueue = 1024

// CameraServer is a simulated IP camera: an RTSP server that answers DESCRIBE,
// SETUP and PLAY on one path and streams a Clip, looped in real time with
// continuous timestamps, to every reader (H264, plus AAC when the clip has
// it). Like a real camera it streams whether anyone watches or not, and all
// readers see the same live timeline. Edges pull from it in tests and in
// containers.
//
// Fill in the fields, call Start, then Close. Fields must not be changed after
// Start.
type CameraServer struct {
	// Address is the RTSP (TCP) listen address, e.g. "127.0.0.1:0" or ":8554".
	Address string
	// UDPRTPAddress and UDPRTCPAddress, when both set, also serve readers over
	// UDP (the RTP port must be even and the RTCP port the next one). Empty
	// serves TCP only.
	UDPRTPAddress, UDPRTCPAddress string
	// Path is the served path without slashes at the ends, e.g. "stream1" or
	// "cam/main". It defaults to "stream1". Other paths get 404.
	Path string
	// User and Pass, when User is set, are required from readers (basic and
	// digest authentication); requests without them get 401.
	User, Pass string
	// Clip to stream. It defaults to Load().
	Clip *Clip
	// NoAudio leaves the AAC track out.
	NoAudio bool
	// StampSEI puts an SEI send-time stamp (see MarshalSEITimestamp) in front of
	// the slices of every video access unit.
	StampSEI bool
	// Log receives start/stop messages and per-reader events at Debug. It
	// defaults to discarding.
	Log *slog.Logger

	server *gortsplib.Server
	stream *gortsplib.ServerStream
	// ready is stream once it is initialised: the server accepts readers as
	// soon as it listens, before Start has built the stream they are given.
	ready  atomic.Pointer[gortsplib.ServerStream]
	tracks *rtpTracks
	audio  bool

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once

	describes atomic.Int64
	sessions  atomic.Int64
}

// Describes counts the DESCRIBE requests received (on-demand tests check
// that nobody asked before a viewer did).
func (s *CameraServer) Describes() int64 { return s.describes.Load() }

// Sessions is the number of RTSP sessions open now.
func (s *CameraServer) Sessions() int64 { return s.sessions.Load() }

// Start listens and starts streaming. The listeners are open when it returns.
func (s *CameraServer) Start() error {
	if s.done != nil {
		return errors.New("camera server already started")
	}
	if err := sourceDefaults(&s.Log, &s.Clip); err != nil {
		return err
	}
	s.Path = strings.Trim(s.Path, "/")
	if s.Path == "" {
		s.Path = "stream1"
	}
	if (s.UDPRTPAddress == "") != (s.UDPRTCPAddress == "") {
		return errors.New("set both UDPRTPAddress and UDPRTCPAddress, or neither")
	}
	s.audio = !s.NoAudio && s.Clip.AudioConfig != nil && len(s.Clip.Audio) > 0
	var err error
	if s.tracks, err = newRTPTracks(s.Clip, s.audio); err != nil {
		return err
	}

	s.server = &gortsplib.Server{
		Handler:        &cameraServerHandler{s: s},
		RTSPAddress:    s.Address,
		UDPRTPAddress:  s.UDPRTPAddress,
		UDPRTCPAddress: s.UDPRTCPAddress,
		WriteQueueSize: cameraServerWriteQueue,
	}
	if err := s.server.Start(); err != nil {
		return fmt.Errorf("start RTSP server on %s: %w", s.Address, err)
	}
	s.stream = &gortsplib.ServerStream{Server: s.server, Desc: s.tracks.session()}
	if err := s.stream.Initialize(); err != nil {
		s.server.Close()
		return fmt.Errorf("initialize RTSP stream: %w", err)
	}
	s.ready.Store(s.stream)

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	s.Log.Info("camera server streaming", "url", s.redactedURL(), "audio", s.audio,
		"udp", s.UDPRTPAddress != "")
	go s.run(ctx)
	return nil
}

// Addr returns the RTSP listener's address (nil before Start).
func (s *CameraServer) Addr() net.Addr {
	if s.server == nil {
		return nil
	}
	return s.server.NetListener().Addr()
}

// URL returns the stream's URL, rtsp://[user:pass@]addr/path, with the
// listener's actual address.
func (s *CameraServer) URL() string {
	u := url.URL{Scheme: "rtsp", Path: "/" + s.Path}
	if a := s.Addr(); a != nil {
		u.Host = a.String()
	} else {
		u.Host = s.Address
	}
	if s.User != "" {
		u.User = url.UserPassword(s.User, s.Pass)
	}
	return u.String()
}

func (s *CameraServer) redactedURL() string {
	u, err := url.Parse(s.URL())
	if err != nil {
		return ""
	}
	return u.Redacted()
}

// Close stops streaming, disconnects every reader and closes the listeners.
// It may be called more than once.
func (s *CameraServer) Close() {
	if s.done == nil {
		return
	}
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		s.stream.Close()
		s.server.Close()
		s.Log.Info("camera server closed", "url", s.redactedURL())
	})
}

// run paces the clip out until ctx ends: every frame leaves when the wall
// clock reaches its timestamp, pass after pass.
func (s *CameraServer) run(ctx context.Context) {
	defer close(s.done)
	err := s.runInner(ctx)
	if err != nil && ctx.Err() == nil {
		s.Log.Warn("camera server stopped streaming", "err", err)
	}
}

func (s *CameraServer) runInner(ctx context.Context) error {
	sched := (&Camera{Clip: s.Clip}).schedule(s.audio)
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for loop := 0; ; loop++ {
		offset := time.Duration(loop) * s.Clip.Duration
		for _, f := range sched {
			capture := start.Add(offset + f.at)
			if d := time.Until(capture); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			} else if ctx.Err() != nil {
				return nil
			}
			var err error
			if f.video != nil {
				err = s.writeVideo(f.video, offset, capture)
			} else {
				err = s.writeAudio(f.audio, offset, capture)
			}
			if err != nil {
				return err
			}
		}
	}
}

func (s *CameraServer) writeVideo(f *Frame, offset time.Duration, capture time.Time) error {
	au := f.NALUs
	if s.StampSEI {
		au = WithSEITimestamp(au, time.Now())
	}
	pkts, err := s.tracks.videoPackets(au, f.PTS+offset)
	if err != nil {
		return err
	}
	return s.writePackets(s.tracks.video, pkts, capture)
}

func (s *CameraServer) writeAudio(f *Frame, offset time.Duration, capture time.Time) error {
	pkts, err := s.tracks.audioPackets(f.Data, f.PTS+offset)
	if err != nil {
		return err
	}
	return s.writePackets(s.tracks.audio, pkts, capture)
}

// writePackets hands the packets to every reader's queue. The stream never
// blocks: a reader whose queue is full loses packets, which gortsplib reports
// through OnStreamWriteError.
func (s *CameraServer) writePackets(medi *description.Media, pkts []*rtp.Packet, ntp time.Time) error {
	for _, pkt := range pkts {
		if err := s.stream.WritePacketRTPWithNTP(medi, pkt, ntp); err != nil {
			return fmt.Errorf("write RTP: %w", err)
		}
	}
	return nil
}

// matches reports whether a request path (with its leading slash, as gortsplib
// hands it over) names the served stream.
func (s *CameraServer) matches(path string) bool {
	return strings.Trim(path, "/") == s.Path
}

// cameraServerHandler answers gortsplib's callbacks for a CameraServer.
type cameraServerHandler struct {
	s *CameraServer
}

// authorize checks the reader's credentials. Credentials are verified on both
// DESCRIBE and SETUP, since a client may SETUP without a DESCRIBE.
func (h *cameraServerHandler) authorize(conn *gortsplib.ServerConn, req *base.Request) (*base.Response, error) {
	if h.s.User == "" || conn.VerifyCredentials(req, h.s.User, h.s.Pass) {
		return nil, nil
	}
	// The first request without credentials gets 401 plus WWW-Authenticate;
	// wrong credentials close the connection.
	return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
}

func (h *cameraServerHandler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (
	*base.Response, *gortsplib.ServerStream, error,
) {
	if res, err := h.authorize(ctx.Conn, ctx.Request); res != nil {
		return res, nil, err
	}
	h.s.describes.Add(1)
	return h.s.streamAt(ctx.Path)
}

func (h *cameraServerHandler) OnSessionOpen(*gortsplib.ServerHandlerOnSessionOpenCtx) {
	h.s.sessions.Add(1)
}

func (h *cameraServerHandler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (
	*base.Response, *gortsplib.ServerStream, error,
) {
	if res, err := h.authorize(ctx.Conn, ctx.Request); res != nil {
		return res, nil, err
	}
	return h.s.streamAt(ctx.Path)
}

// streamAt answers a DESCRIBE or SETUP of path: the stream, 404 for another
// path, or 503 before Start has initialised the stream (a reader faster than
// Start).
func (s *CameraServer) streamAt(path string) (*base.Response, *gortsplib.ServerStream, error) {
	if !s.matches(path) {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	st := s.ready.Load()
	if st == nil {
		return &base.Response{StatusCode: base.StatusServiceUnavailable}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

func (h *cameraServerHandler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	h.s.Log.Debug("camera server reader playing", "remote", ctx.Conn.NetConn().RemoteAddr().String(),
		"transport", ctx.Session.Transport().Protocol.String())
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *cameraServerHandler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.s.sessions.Add(-1)
	h.s.Log.Debug("camera server session closed", "err", ctx.Error)
}

func (h *cameraServerHandler) OnStreamWriteError(ctx *gortsplib.ServerHandlerOnStreamWriteErrorCtx) {
	h.s.Log.Debug("camera server reader lost packets", "err", ctx.Error)
}

func (h *cameraServerHandler) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	h.s.Log.Debug("camera server decode error", "err", ctx.Error)
}

func (h *cameraServerHandler) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	h.s.Log.Debug("camera server packets lost", "lost", ctx.Lost)
}

// RunCameraServer runs a simulated IP camera streaming the sample clip, with
// SEI send-time stamps, at rtsp://addr/path until ctx ends. It is the
// container entry point (a hidden CLI command); it logs JSON to stderr.
func RunCameraServer(ctx context.Context, addr, path string) error {
	s := &CameraServer{
		Address:  addr,
		Path:     path,
		StampSEI: true,
		Log:      slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	}
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	s.Close()
	return nil
}
