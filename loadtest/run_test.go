package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	hlscodecs "github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

func TestMain(m *testing.M) {
	if os.Getenv(testBusNodeEnv) == "1" {
		os.Exit(runTestBusNode(os.Args[1:])) // a child bus node of TestControlPlane
	}
	goleak.VerifyTestMain(m)
}

// standIn is a minimal stand-in for a streamgrid deployment: an RTSP server
// that takes publishers on any path and feeds each one to a Low-Latency HLS
// muxer, served over HTTP at /<path>/index.m3u8.
type standIn struct {
	// variant and segmentCount configure the muxers (LL-HLS, 7 by default).
	variant      gohlslib.MuxerVariant
	segmentCount int

	rtsp    *gortsplib.Server
	http    *httptest.Server
	metrics http.Handler

	mu       sync.Mutex
	streams  map[string]*standInStream // by path
	sessions map[*gortsplib.ServerSession]*standInStream
}

type standInStream struct {
	path  string
	muxer *gohlslib.Muxer
	video *gohlslib.Track
	audio *gohlslib.Track
}

func startStandIn(t *testing.T) *standIn {
	t.Helper()
	return startStandInVariant(t, gohlslib.MuxerVariantLowLatency, 7)
}

func startStandInVariant(t *testing.T, variant gohlslib.MuxerVariant, segmentCount int) *standIn {
	t.Helper()
	s := &standIn{
		variant:      variant,
		segmentCount: segmentCount,
		streams:      map[string]*standInStream{},
		sessions:     map[*gortsplib.ServerSession]*standInStream{},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	s.rtsp = &gortsplib.Server{Handler: s, RTSPAddress: "127.0.0.1:0", WriteQueueSize: 4096}
	if err := s.rtsp.Start(); err != nil {
		t.Fatal(err)
	}
	s.http = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// close stops publishing first, so that blocked LL-HLS requests are released
// (the muxers close) before the HTTP server waits for them.
func (s *standIn) close() {
	s.rtsp.Close()
	s.mu.Lock()
	streams := s.streams
	s.streams = map[string]*standInStream{}
	s.mu.Unlock()
	for _, st := range streams {
		st.muxer.Close()
	}
	s.http.Close()
}

func (s *standIn) publishURL() string {
	return "rtsp://" + s.rtsp.NetListener().Addr().String() + "/load"
}

// playURL is where the stand-in serves the stream published at publishURL.
func (s *standIn) playURL() string { return s.http.URL + "/load" }

// run runs the load test with cfg, publishing to the stand-in and, unless cfg
// says where, playing from it; a failed Run fails the test.
func (s *standIn) run(t *testing.T, cfg Config) *Report {
	t.Helper()
	cfg.Publish = s.publishURL()
	if cfg.Play == nil {
		cfg.Play = []string{s.playURL()}
	}
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (s *standIn) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		s.metrics.ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	st := s.streams[strings.Trim(path.Dir(r.URL.Path), "/")]
	s.mu.Unlock()
	if st == nil {
		http.NotFound(w, r)
		return
	}
	st.muxer.Handle(w, r)
}

func (s *standIn) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	var vf *format.H264
	if ctx.Description.FindFormat(&vf) == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, nil
	}
	st := &standInStream{
		path:  strings.Trim(ctx.Path, "/"),
		video: &gohlslib.Track{Codec: &hlscodecs.H264{SPS: vf.SPS, PPS: vf.PPS}, ClockRate: 90000},
	}
	tracks := []*gohlslib.Track{st.video}
	var af *format.MPEG4Audio
	if ctx.Description.FindFormat(&af) != nil {
		st.audio = &gohlslib.Track{Codec: &hlscodecs.MPEG4Audio{Config: *af.Config}, ClockRate: af.ClockRate()}
		tracks = append(tracks, st.audio)
	}
	st.muxer = &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            s.variant,
		SegmentCount:       s.segmentCount,
		SegmentMinDuration: time.Second,
		OnEncodeError:      func(error) {},
	}
	if err := st.muxer.Start(); err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.streams[st.path]; old != nil {
		old.muxer.Close()
	}
	s.streams[st.path] = st
	s.sessions[ctx.Session] = st
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (s *standIn) OnSetup(*gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

func (s *standIn) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	s.mu.Lock()
	st := s.sessions[ctx.Session]
	s.mu.Unlock()
	desc := ctx.Session.AnnouncedDescription()

	var vf *format.H264
	vm := desc.FindFormat(&vf)
	err := onAccessUnit(ctx.Session, vm, vf, vf.CreateDecoder, func(pts int64, au [][]byte) {
		_ = st.muxer.WriteH264(st.video, time.Now(), pts, au)
	})
	if err == nil && st.audio != nil {
		var af *format.MPEG4Audio
		am := desc.FindFormat(&af)
		err = onAccessUnit(ctx.Session, am, af, af.CreateDecoder, func(pts int64, aus [][]byte) {
			_ = st.muxer.WriteMPEG4Audio(st.audio, time.Now(), pts, aus)
		})
	}
	if err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, err
	}
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// onAccessUnit hands every RTP packet of format f on media m, decoded (by a
// decoder from newDecoder) into access units or audio frames, with its PTS to
// write.
func onAccessUnit[D interface {
	Decode(*rtp.Packet) ([][]byte, error)
}](sess *gortsplib.ServerSession, m *description.Media, f format.Format,
	newDecoder func() (D, error), write func(pts int64, au [][]byte),
) error {
	dec, err := newDecoder()
	if err != nil {
		return err
	}
	sess.OnPacketRTP(m, f, func(pkt *rtp.Packet) {
		pts, ok := sess.PacketPTS(m, pkt)
		au, err := dec.Decode(pkt)
		if err != nil || !ok {
			return
		}
		write(pts, au)
	})
	return nil
}

func (s *standIn) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	s.mu.Lock()
	st := s.sessions[ctx.Session]
	delete(s.sessions, ctx.Session)
	if st != nil && s.streams[st.path] == st {
		delete(s.streams, st.path)
	} else {
		st = nil
	}
	s.mu.Unlock()
	if st != nil {
		st.muxer.Close()
	}
}

func (s *standIn) OnPacketsLost(*gortsplib.ServerHandlerOnPacketsLostCtx) {}

func (s *standIn) OnDecodeError(*gortsplib.ServerHandlerOnDecodeErrorCtx) {}

func TestRunAgainstStandIn(t *testing.T) {
	testkit.Slow(t)
	s := startStandIn(t)
	defer s.close()

	var progress testkit.Buffer
	rep := s.run(t, Config{
		Cameras:     2,
		Viewers:     3,
		Duration:    8 * time.Second,
		Warmup:      time.Second,
		PIDs:        []int{os.Getpid()},
		MetricsURLs: []string{s.http.URL + "/metrics"},
		Progress:    &progress,
		Log:         testLog(t),
	})
	table := reportTable(rep)
	t.Logf("report:\n%s", table.String())

	if rep.CamerasOK != 2 || rep.ViewersOK != 3 || !rep.OK() {
		t.Errorf("cameras ok %d/2, viewers ok %d/3", rep.CamerasOK, rep.ViewersOK)
	}
	if rep.LatencyMS.P50 <= 0 || rep.LatencyMS.Count == 0 || rep.StartupMS.Count != 3 {
		t.Errorf("latency %+v, startup %+v", rep.LatencyMS, rep.StartupMS)
	}
	if rep.FramesSent == 0 || rep.FramesReceived == 0 {
		t.Errorf("frames sent %d, received %d", rep.FramesSent, rep.FramesReceived)
	}
	if len(rep.Servers) != 2 {
		t.Fatalf("servers %+v", rep.Servers)
	}
	for _, srv := range rep.Servers {
		if srv.Samples == 0 || srv.SampleErrors != 0 || srv.RSSMB <= 0 || srv.CPUPercent <= 0 {
			t.Errorf("server %+v", srv)
		}
	}
	if !strings.Contains(progress.String(), "cameras 2/2 up") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

// TestRunYoungTraditionalStream starts a viewer while the MPEG-TS playlist
// still lists a single segment: gohlslib's client never returns on that (see
// firstFrameRetry), so the viewer must start its player over and play.
func TestRunYoungTraditionalStream(t *testing.T) {
	testkit.Slow(t)
	s := startStandInVariant(t, gohlslib.MuxerVariantMPEGTS, 3)
	defer s.close()
	rep := s.run(t, Config{
		Cameras:     1,
		Viewers:     1,
		Duration:    9 * time.Second,
		Ramp:        time.Millisecond,
		Warmup:      time.Second,
		ViewerDelay: 1500 * time.Millisecond,
		NoAudio:     true,
		Log:         testLog(t),
	})
	if rep.ViewersOK != 1 || rep.FramesReceived == 0 || rep.Errors != 0 {
		t.Errorf("the viewer did not play:\n%s", reportTable(rep).String())
	}
}

func TestRunInterrupted(t *testing.T) {
	testkit.Slow(t)
	s := startStandIn(t)
	defer s.close()
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	rep, err := Run(ctx, Config{
		Publish:  s.publishURL(),
		Play:     []string{s.playURL()},
		Cameras:  1,
		Viewers:  1,
		Duration: time.Minute,
	})
	if !errors.Is(err, context.DeadlineExceeded) || rep == nil || !rep.Interrupted || rep.OK() {
		t.Fatalf("err %v, report %+v", err, rep)
	}
	if rep.DurationS > 30 {
		t.Errorf("ran %v s after the interruption", rep.DurationS)
	}
}

func TestMainCameraFailure(t *testing.T) {
	testkit.Slow(t)
	// nothing listens there: every camera start fails and is retried
	ln := httptest.NewServer(http.NotFoundHandler())
	addr := ln.Listener.Addr().String()
	ln.Close()
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	code := Main([]string{
		"--publish", "rtsp://" + addr + "/load", "--cameras", "1", "--duration", "2500ms",
		"--warmup", "1s", "--json", jsonPath,
	}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "FAIL") || !strings.Contains(stderr.String(), "load test error") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Cameras != 1 || rep.CamerasOK != 0 || rep.Errors < 2 || rep.CameraRestarts < 1 || len(rep.ErrorSamples) == 0 {
		t.Errorf("report %+v", rep)
	}
}

// testLog logs Warn and above to t.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
