package testmedia

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// received is what a test server got from a camera.
type received struct {
	mu         sync.Mutex
	path       string
	protocol   string
	video      []receivedAU
	audio      []time.Duration
	errs       []error
	lost       uint64
	audioClock int
	ended      chan struct{}
	endOnce    sync.Once
}

type receivedAU struct {
	pts time.Duration
	au  [][]byte
}

func newReceived() *received {
	return &received{ended: make(chan struct{})}
}

func (r *received) addVideo(pts time.Duration, au [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.video = append(r.video, receivedAU{pts: pts, au: au})
}

func (r *received) addAudio(pts time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.audio = append(r.audio, pts)
}

func (r *received) addErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *received) end() {
	r.endOnce.Do(func() { close(r.ended) })
}

// verify checks that every frame of loops passes over clip arrived, in order,
// evenly spaced and unchanged (apart from SEI stamps, which must be present and
// increasing when stamped is set).
func (r *received) verify(t *testing.T, clip *Clip, loops int, stamped, audio bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		t.Errorf("server error: %v", err)
	}
	if r.lost > 0 {
		t.Errorf("%d RTP packets lost", r.lost)
	}
	want := loops * len(clip.Video)
	if len(r.video) != want {
		t.Fatalf("received %d video frames, want %d", len(r.video), want)
	}
	interval := clip.FrameInterval()
	var lastSEI time.Time
	for i, got := range r.video {
		if d := got.pts - r.video[0].pts; d != time.Duration(i)*interval {
			t.Fatalf("frame %d: PTS %v after the first, want %v", i, d, time.Duration(i)*interval)
		}
		var plain [][]byte
		var sent time.Time
		var hasSEI bool
		for _, nalu := range got.au {
			if ts, ok := ParseSEITimestamp(nalu); ok {
				sent, hasSEI = ts, true
				continue
			}
			plain = append(plain, nalu)
		}
		if stamped != hasSEI {
			t.Fatalf("frame %d: SEI stamp present %v, want %v", i, hasSEI, stamped)
		}
		if hasSEI {
			if sent.Before(lastSEI) {
				t.Fatalf("frame %d: SEI %v before %v", i, sent, lastSEI)
			}
			lastSEI = sent
		}
		src := clip.Video[i%len(clip.Video)].NALUs
		if !equalAU(plain, src) {
			t.Fatalf("frame %d: access unit differs from the clip (%d vs %d NAL units)", i, len(plain), len(src))
		}
	}

	if !audio {
		if len(r.audio) != 0 {
			t.Fatalf("received %d audio frames, want none", len(r.audio))
		}
		return
	}
	if wantA := loops * len(clip.Audio); len(r.audio) != wantA {
		t.Fatalf("received %d audio frames, want %d", len(r.audio), wantA)
	}
	for i := 1; i < len(r.audio); i++ {
		if r.audio[i] <= r.audio[i-1] {
			t.Fatalf("audio frame %d: PTS %v not after %v", i, r.audio[i], r.audio[i-1])
		}
	}
}

func equalAU(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// rtspRecorder is a gortsplib server handler that accepts one publisher and
// decodes what it records.
type rtspRecorder struct {
	rec *received
}

func (h *rtspRecorder) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	h.rec.mu.Lock()
	h.rec.path = ctx.Path
	h.rec.mu.Unlock()
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (h *rtspRecorder) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

func (h *rtspRecorder) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	desc := ctx.Session.AnnouncedDescription()
	if tr := ctx.Session.Transport(); tr != nil {
		h.rec.mu.Lock()
		h.rec.protocol = tr.Protocol.String()
		h.rec.mu.Unlock()
	}

	var vf *format.H264
	vm := desc.FindFormat(&vf)
	if vm == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, errors.New("no H264 media")
	}
	dec, err := vf.CreateDecoder()
	if err != nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, err
	}
	h.onDecoded(ctx.Session, vm, vf, "H264", dec.Decode, rtph264.ErrMorePacketsNeeded, func(pts int64, au [][]byte) {
		h.rec.addVideo(ticksToDuration(pts, 90000), au)
	})

	var af *format.MPEG4Audio
	if am := desc.FindFormat(&af); am != nil {
		adec, err := af.CreateDecoder()
		if err != nil {
			return &base.Response{StatusCode: base.StatusBadRequest}, err
		}
		rate := int64(af.ClockRate())
		h.onDecoded(ctx.Session, am, af, "AAC", adec.Decode, nil, func(pts int64, aus [][]byte) {
			for i := range aus {
				h.rec.addAudio(ticksToDuration(pts+int64(i)*mpeg4audio.SamplesPerAccessUnit, rate))
			}
		})
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// onDecoded hands every packet of format f on media m that has a PTS,
// decoded, to use. Decode errors are recorded, except wait (the decoder
// needs more packets), which is no error.
func (h *rtspRecorder) onDecoded(s *gortsplib.ServerSession, m *description.Media, f format.Format, codec string,
	decode func(*rtp.Packet) ([][]byte, error), wait error, use func(pts int64, au [][]byte),
) {
	s.OnPacketRTP(m, f, func(pkt *rtp.Packet) {
		pts, ok := s.PacketPTS(m, pkt)
		if !ok {
			return
		}
		au, err := decode(pkt)
		if err != nil {
			if wait == nil || !errors.Is(err, wait) {
				h.rec.addErr(fmt.Errorf("decode %s: %w", codec, err))
			}
			return
		}
		use(pts, au)
	})
}

func (h *rtspRecorder) OnSessionClose(*gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.rec.end()
}

func (h *rtspRecorder) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	h.rec.mu.Lock()
	h.rec.lost += ctx.Lost
	h.rec.mu.Unlock()
}

func (h *rtspRecorder) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	h.rec.addErr(ctx.Error)
}

// startRTSPServer starts a gortsplib server on loopback. With udp, it also
// listens for RTP/RTCP on a random even/odd port pair.
func startRTSPServer(t *testing.T, udp bool) (*received, string) {
	rec, s := startRTSPServer2(t, udp)
	return rec, s.NetListener().Addr().String()
}

func startRTSPServer2(t *testing.T, udp bool) (*received, *gortsplib.Server) {
	t.Helper()
	rec := newReceived()
	for attempt := 0; ; attempt++ {
		s := &gortsplib.Server{
			Handler:     &rtspRecorder{rec: rec},
			RTSPAddress: "127.0.0.1:0",
		}
		if udp {
			rtpPort := 20000 + 2*rand.IntN(15000)
			s.UDPRTPAddress = "127.0.0.1:" + strconv.Itoa(rtpPort)
			s.UDPRTCPAddress = "127.0.0.1:" + strconv.Itoa(rtpPort+1)
		}
		err := s.Start()
		if err != nil {
			if udp && attempt < 20 {
				continue // port pair taken
			}
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return rec, s
	}
}

// startRTMPServer accepts one RTMP publisher on loopback and decodes its
// stream until the connection ends.
func startRTMPServer(t *testing.T) (*received, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := newReceived()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer rec.end()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if err := serveRTMP(conn, rec); err != nil {
			rec.addErr(err)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return rec, ln.Addr().String()
}

func serveRTMP(conn net.Conn, rec *received) error {
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	sc := &gortmplib.ServerConn{RW: conn}
	if err := sc.Initialize(); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if err := sc.AcceptConn(); err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	if !sc.Publish {
		return errors.New("client does not publish")
	}
	rec.mu.Lock()
	rec.path = sc.URL.Path
	rec.mu.Unlock()

	r := &gortmplib.Reader{Conn: sc}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("read tracks: %w", err)
	}
	for _, track := range r.Tracks() {
		switch track.Codec.(type) {
		case *rtmpcodecs.H264:
			r.OnDataH264(track, func(pts, _ time.Duration, au [][]byte) {
				// the first callback is the sequence header alone
				for _, nalu := range au {
					if typ := h264.NALUType(nalu[0] & 0x1f); typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR {
						rec.addVideo(pts, au)
						return
					}
				}
			})
		case *rtmpcodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(track, func(pts time.Duration, _ []byte) {
				rec.addAudio(pts)
			})
		default:
			return fmt.Errorf("unexpected track %T", track.Codec)
		}
	}
	for {
		if err := r.Read(); err != nil {
			return nil // the publisher hung up
		}
	}
}

func waitEnded(t *testing.T, rec *received) {
	t.Helper()
	select {
	case <-rec.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("server did not see the session end")
	}
}

func TestCameraPublishes(t *testing.T) {
	t.Parallel()
	full := mustLoad(t)
	clip := full.Head(1) // 1 s: keep the real-time test short

	for _, tc := range []struct {
		name      string
		scheme    string
		transport string
		loops     int
		stamp     bool
		noAudio   bool
		slow      bool // skipped under -short: the others cover the publisher there
	}{
		{name: "rtsp tcp", scheme: "rtsp", loops: 2, stamp: true},
		{name: "rtsp udp", scheme: "rtsp", transport: "udp", loops: 2, slow: true},
		{name: "rtsp no audio", scheme: "rtsp", loops: 1, noAudio: true},
		// gortmplib's reader analyses 2 s of media before it returns tracks
		{name: "rtmp", scheme: "rtmp", loops: 3, stamp: true, slow: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.slow {
				testkit.Slow(t)
			}
			t.Parallel()
			var rec *received
			var addr string
			if tc.scheme == "rtsp" {
				rec, addr = startRTSPServer(t, tc.transport == "udp")
			} else {
				rec, addr = startRTMPServer(t)
			}

			var mu sync.Mutex
			var stats []Stats
			cam := &Camera{
				URL:       tc.scheme + "://" + addr + "/live/cam1",
				Transport: tc.transport,
				Clip:      clip,
				Loops:     tc.loops,
				NoAudio:   tc.noAudio,
				StampSEI:  tc.stamp,
				OnStats: func(s Stats) {
					mu.Lock()
					stats = append(stats, s)
					mu.Unlock()
				},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := cam.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer cam.Close()
			if err := cam.Wait(); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			cam.Close()
			cam.Close() // idempotent
			waitEnded(t, rec)

			if rec.path != "/live/cam1" && rec.path != "live/cam1" {
				t.Errorf("server saw path %q", rec.path)
			}
			if tc.scheme == "rtsp" {
				want := "TCP"
				if tc.transport == "udp" {
					want = "UDP"
				}
				if rec.protocol != want {
					t.Errorf("RTSP transport %q, want %q", rec.protocol, want)
				}
			}
			rec.verify(t, clip, tc.loops, tc.stamp, !tc.noAudio)

			wantFrames := uint64(tc.loops * len(clip.Video))
			if cam.FramesSent() != wantFrames {
				t.Errorf("FramesSent %d, want %d", cam.FramesSent(), wantFrames)
			}
			st := cam.Stats()
			if st.Loops != tc.loops || st.VideoFrames != wantFrames || st.Bytes == 0 || st.DroppedPackets != 0 {
				t.Errorf("stats %+v", st)
			}
			if !tc.noAudio && st.AudioFrames != uint64(tc.loops*len(clip.Audio)) {
				t.Errorf("AudioFrames %d, want %d", st.AudioFrames, tc.loops*len(clip.Audio))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(stats) != tc.loops+1 {
				t.Errorf("OnStats called %d times, want %d", len(stats), tc.loops+1)
			}
		})
	}
}

func TestCameraCloseWhilePublishing(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{"rtsp", "rtmp"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			var rec *received
			var addr string
			if scheme == "rtsp" {
				rec, addr = startRTSPServer(t, false)
			} else {
				rec, addr = startRTMPServer(t)
			}
			cam := &Camera{URL: scheme + "://" + addr + "/live/cam2"} // full sample, loops forever
			if err := cam.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for cam.FramesSent() < 5 {
				if time.Now().After(deadline) {
					t.Fatal("camera sent nothing")
				}
				time.Sleep(10 * time.Millisecond)
			}
			cam.Close()
			if err := cam.Wait(); err != nil {
				t.Fatalf("Wait after Close: %v", err)
			}
			if scheme == "rtsp" {
				waitEnded(t, rec)
			}
		})
	}
}

func TestCameraContextEnds(t *testing.T) {
	_, addr := startRTSPServer(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	cam := &Camera{URL: "rtsp://" + addr + "/live/cam3"}
	if err := cam.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := cam.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	cam.Close()
}

func TestCameraRTSPServerGoesAway(t *testing.T) {
	_, s := startRTSPServer2(t, false)
	cam := &Camera{URL: "rtsp://" + s.NetListener().Addr().String() + "/live/cam5"}
	if err := cam.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	s.Close()

	waitServerGone(t, cam)
}

// waitServerGone waits for cam to notice that its server went away: Wait
// returns an error.
func waitServerGone(t *testing.T, cam *Camera) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cam.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Wait returned nil after the server went away")
		}
		t.Logf("Wait: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("camera did not notice the server went away")
	}
}

func TestCameraRTMPServerGoesAway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		sc := &gortmplib.ServerConn{RW: conn}
		if sc.Initialize() == nil && sc.AcceptConn() == nil {
			_ = sc.AcceptAction()
		}
		accepted <- conn
	}()
	defer ln.Close()

	cam := &Camera{URL: "rtmp://" + ln.Addr().String() + "/live/cam4", Timeout: 2 * time.Second}
	if err := cam.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cam.Close()
	conn := <-accepted
	if conn == nil {
		t.Fatal("no connection")
	}
	// reset the connection: the camera's next writes must fail
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()

	waitServerGone(t, cam)
}

func TestCameraStartErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		cam  *Camera
	}{
		{"bad scheme", &Camera{URL: "http://127.0.0.1:1/x"}},
		{"bad transport", &Camera{URL: "rtsp://127.0.0.1:1/x", Transport: "sctp"}},
		{"negative loops", &Camera{URL: "rtsp://127.0.0.1:1/x", Loops: -1}},
		{"rtsp refused", &Camera{URL: "rtsp://" + closedAddr + "/x", Timeout: 2 * time.Second}},
		{"rtmp refused", &Camera{URL: "rtmp://" + closedAddr + "/live/x", Timeout: 2 * time.Second}},
		{"empty clip", &Camera{URL: "rtsp://127.0.0.1:1/x", Clip: &Clip{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cam := tc.cam
			if err := cam.Start(context.Background()); err == nil {
				cam.Close()
				t.Fatal("Start succeeded")
			}
			if err := cam.Wait(); !errors.Is(err, ErrNotStarted) {
				t.Fatalf("Wait: %v", err)
			}
			cam.Close()
		})
	}
}

func TestRTMPClientURL(t *testing.T) {
	for in, want := range map[string]string{
		"rtmp://h:1935/live/cam1":         "rtmp://h:1935/live#cam1",
		"rtmp://u:p@h/live/a/b":           "rtmp://u:p@h/live#a/b",
		"rtmp://h/live/cam1?key=secret":   "rtmp://h/live#cam1?key=secret",
		"rtmp://h/live":                   "rtmp://h/live",
		"rtmp://h/app#stream":             "rtmp://h/app#stream",
		"rtmps://h:443/live/cam1":         "rtmps://h:443/live#cam1",
		"rtmp://h/live/cam%201":           "rtmp://h/live#cam%201",
		"rtmp://[::1]:1935/live/cam.2_x~": "rtmp://[::1]:1935/live#cam.2_x~",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := rtmpClientURL(u).String(); got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}
