package edge

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testkit/testbus"
)

// clipFrame is one video access unit of a test clip, in decode order.
type clipFrame struct {
	pts, dts int64 // 90 kHz, first DTS at 0
	au       [][]byte
}

// clipAudio is one AAC frame of a test clip.
type clipAudio struct {
	pts   int64 // 90 kHz, on the video's timeline
	frame []byte
}

// clip is a short test recording (testdata/*.ts, made with ffmpeg: 64x64,
// 25 fps, 3 s, one keyframe a second, two B-frames).
type clip struct {
	h265  bool
	video []clipFrame
	audio []clipAudio
	asc   *mpeg4audio.AudioSpecificConfig
}

func loadClip(t testing.TB, name string) *clip {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &mpegts.Reader{R: f}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	c := &clip{}
	for _, tr := range r.Tracks() {
		switch codec := tr.Codec.(type) {
		case *mpegts.CodecH264:
			r.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
				c.video = append(c.video, clipFrame{pts: pts, dts: dts, au: cloneAU(au)})
				return nil
			})
		case *mpegts.CodecH265:
			c.h265 = true
			r.OnDataH265(tr, func(pts, dts int64, au [][]byte) error {
				c.video = append(c.video, clipFrame{pts: pts, dts: dts, au: cloneAU(au)})
				return nil
			})
		case *mpegts.CodecMPEG4Audio:
			conf := codec.Config
			c.asc = &conf
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					c.audio = append(c.audio, clipAudio{
						pts:   pts + int64(i)*mpeg4audio.SamplesPerAccessUnit*90000/int64(conf.SampleRate),
						frame: slices.Clone(au),
					})
				}
				return nil
			})
		}
	}
	testkit.ReadToEOF(t, r.Read)
	if len(c.video) == 0 {
		t.Fatal("clip has no video")
	}
	base := c.video[0].dts
	for i := range c.video {
		c.video[i].pts -= base
		c.video[i].dts -= base
	}
	for i := range c.audio {
		c.audio[i].pts -= base
	}
	return c
}

func cloneAU(au [][]byte) [][]byte {
	out := make([][]byte, len(au))
	for i, n := range au {
		out[i] = slices.Clone(n)
	}
	return out
}

// params returns the clip's parameter sets (VPS, SPS, PPS) from its first keyframe.
func (c *clip) params() (vps, sps, pps []byte) {
	codec := media.CodecH264
	if c.h265 {
		codec = media.CodecH265
	}
	for _, nalu := range c.video[0].au {
		switch classify(codec, nalu) {
		case nalVPS:
			vps = nalu
		case nalSPS:
			sps = nalu
		case nalPPS:
			pps = nalu
		}
	}
	return vps, sps, pps
}

// writeClipRTMP publishes c through gortmplib's Writer on conn: the
// tracks (the clip's video, and its AAC unless noAudio), then every frame
// in time order, its timestamps moved by offset. Audio from before the
// first video frame, or before audioFrom into the clip, is left out.
func writeClipRTMP(conn gortmplib.Conn, c *clip, offset time.Duration, noAudio bool, audioFrom time.Duration) error {
	vps, sps, pps := c.params()
	vt := &gortmplib.Track{Codec: &rtmpcodecs.H264{SPS: sps, PPS: pps}}
	if c.h265 {
		vt = &gortmplib.Track{Codec: &rtmpcodecs.H265{VPS: vps, SPS: sps, PPS: pps}}
	}
	tracks := []*gortmplib.Track{vt}
	var at *gortmplib.Track
	if c.asc != nil && !noAudio {
		at = &gortmplib.Track{Codec: &rtmpcodecs.MPEG4Audio{Config: c.asc}}
		tracks = append(tracks, at)
	}
	w := &gortmplib.Writer{Conn: conn, Tracks: tracks}
	if err := w.Initialize(); err != nil {
		return err
	}
	dur := func(ts int64) time.Duration { return time.Duration(ts) * time.Second / 90000 }
	ai := 0
	for _, f := range c.video {
		for at != nil && ai < len(c.audio) && c.audio[ai].pts <= f.dts {
			if pts := dur(c.audio[ai].pts); pts >= 0 && pts >= audioFrom {
				if err := w.WriteMPEG4Audio(at, offset+pts, c.audio[ai].frame); err != nil {
					return err
				}
			}
			ai++
		}
		var err error
		if c.h265 {
			err = w.WriteH265(vt, offset+dur(f.pts), offset+dur(f.dts), f.au)
		} else {
			err = w.WriteH264(vt, offset+dur(f.pts), offset+dur(f.dts), f.au)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// testBus is an embedded NATS server with a registry.
type testBus struct {
	srv *bus.Server
	nc  *nats.Conn
	reg *bus.Registry
}

func startBus(t *testing.T) *testBus {
	t.Helper()
	s := testbus.StartServer(t, nil)
	nc := testbus.Connect(t, s)
	return &testBus{srv: s, nc: nc, reg: testbus.StartRegistry(t, nc, time.Second)}
}

// newEdge builds an edge on random loopback ports with RTSP (TCP and UDP) and RTMP.
func newEdge(t *testing.T, b *testBus, node string, logOut io.Writer) *Edge {
	t.Helper()
	if logOut == nil {
		logOut = io.Discard
	}
	rtp, rtcp := testkit.FreeUDPPair(t)
	return &Edge{
		Node:           node,
		NC:             b.nc,
		Registry:       b.reg,
		RTSPAddress:    "127.0.0.1:0",
		UDPRTPAddress:  "127.0.0.1:" + strconv.Itoa(rtp),
		UDPRTCPAddress: "127.0.0.1:" + strconv.Itoa(rtcp),
		RTMPAddress:    "127.0.0.1:0",
		ReadTimeout:    3 * time.Second,
		Log:            slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:        prometheus.NewRegistry(),
	}
}

// startBusEdge starts a bus and edge-1 on it (newEdge's); mod, when not nil,
// adjusts the edge before Start.
func startBusEdge(t *testing.T, mod func(*Edge)) (*testBus, *Edge) {
	t.Helper()
	b := startBus(t)
	e := newEdge(t, b, "edge-1", nil)
	if mod != nil {
		mod(e)
	}
	startEdge(t, e)
	return b, e
}

func startEdge(t *testing.T, e *Edge) {
	t.Helper()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
}

// collector gathers a stream's packets from the bus.
type collector struct {
	mu   sync.Mutex
	pkts []*media.Packet
	sub  *bus.Subscription
}

func collect(t *testing.T, nc *nats.Conn, path string) *collector {
	t.Helper()
	c := &collector{}
	sub, err := bus.SubscribeMedia(nc, path, func(p *media.Packet) {
		c.mu.Lock()
		c.pkts = append(c.pkts, p)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c.sub = sub
	t.Cleanup(sub.Close)
	return c
}

func (c *collector) packets() []*media.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pkts)
}

// dialRTMP connects an RTMP client to rawURL, as a publisher or a player,
// within 5 s; the caller closes it.
func dialRTMP(t testing.TB, rawURL string, publish bool, tlsConf *tls.Config) (*gortmplib.Client, error) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	cl := &gortmplib.Client{URL: u, Publish: publish, TLSConfig: tlsConf}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Initialize(ctx); err != nil {
		return nil, err
	}
	return cl, nil
}
