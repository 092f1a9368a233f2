package origin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// checkLeaks registers a goroutine-leak check that runs after every other
// cleanup of the test. Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, opt)
	})
}

type testBus struct {
	t        *testing.T
	srv      *bus.Server
	leaseTTL time.Duration
}

func startBus(t *testing.T, leaseTTL time.Duration) *testBus {
	t.Helper()
	s := &bus.Server{Host: "127.0.0.1", Port: -1, Log: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &testBus{t: t, srv: s, leaseTTL: leaseTTL}
}

// client opens a connection with its own started registry.
func (b *testBus) client() (*nats.Conn, *bus.Registry) {
	b.t.Helper()
	nc, err := bus.Connect(bus.ConnOptions{URLs: []string{b.srv.ClientURL()}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.t.Fatal(err)
	}
	reg := &bus.Registry{JS: js, LeaseTTL: b.leaseTTL, StreamTTL: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Start(ctx); err != nil {
		b.t.Fatal(err)
	}
	return nc, reg
}

func (b *testBus) origin(node string, mod func(*Origin)) *Origin {
	b.t.Helper()
	nc, reg := b.client()
	o := &Origin{
		Node:        node,
		NC:          nc,
		Registry:    reg,
		HTTPAddress: "127.0.0.1:0",
		Log:         testkit.Logger(b.t).With("node", node),
		HLS:         HLSConfig{IdleTimeout: 5 * time.Second},
	}
	if mod != nil {
		mod(o)
	}
	if err := o.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(o.Close)
	return o
}

// clip is a short H264+AAC recording, as the edge would publish it.
type clip struct {
	sps, pps   []byte
	asc        []byte
	sampleRate int
	packets    []*media.Packet // decode order; track 0 video (90 kHz), track 1 AAC (sample rate)
	duration   time.Duration
}

func (c *clip) tracks() []bus.TrackInfo {
	return []bus.TrackInfo{
		{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: c.sps, PPS: c.pps},
		{ID: 1, Codec: media.CodecAAC, ClockRate: c.sampleRate, AudioConfig: c.asc, Channels: 1},
	}
}

// at is a packet's media time.
func (c *clip) at(p *media.Packet) time.Duration {
	if p.Track == 0 {
		return time.Duration(p.PTS) * time.Second / 90000
	}
	return time.Duration(p.PTS) * time.Second / time.Duration(c.sampleRate)
}

var (
	clipOnce sync.Once
	theClip  *clip
	clipErr  error
)

// loadClip generates the test clip with ffmpeg once per test binary.
func loadClip(t *testing.T) *clip {
	t.Helper()
	testkit.RequireFFmpeg(t)
	clipOnce.Do(func() { theClip, clipErr = makeClip() })
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return theClip
}

func makeClip() (*clip, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "25",
		"-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", "1",
		"-t", "6", "-f", "mpegts", "pipe:1")
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	r := &mpegts.Reader{R: bytes.NewReader(out)}
	if err := r.Initialize(); err != nil {
		return nil, err
	}
	c := &clip{}
	type raw struct {
		video bool
		pts   int64 // 90 kHz
		au    [][]byte
	}
	var units []raw
	for _, tr := range r.Tracks() {
		switch codec := tr.Codec.(type) {
		case *tscodecs.H264:
			r.OnDataH264(tr, func(pts, _ int64, au [][]byte) error {
				units = append(units, raw{video: true, pts: pts, au: au})
				return nil
			})
		case *tscodecs.MPEG4Audio:
			cfg := codec.Config
			c.sampleRate = cfg.SampleRate
			b, err := cfg.Marshal()
			if err != nil {
				return nil, err
			}
			c.asc = b
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					p := pts + int64(i)*mpeg4audio.SamplesPerAccessUnit*90000/int64(cfg.SampleRate)
					units = append(units, raw{pts: p, au: [][]byte{au}})
				}
				return nil
			})
		}
	}
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	if c.sampleRate == 0 || len(units) == 0 {
		return nil, errors.New("clip: no audio or no video")
	}
	base := units[0].pts
	for _, u := range units {
		base = min(base, u.pts)
	}
	for _, u := range units {
		p := &media.Packet{PTS: u.pts - base}
		if u.video {
			for _, n := range u.au {
				switch h264.NALUType(n[0] & 0x1f) {
				case h264.NALUTypeSPS:
					c.sps = n
				case h264.NALUTypePPS:
					c.pps = n
				}
			}
			payload, err := h264.AVCC(u.au).Marshal()
			if err != nil {
				return nil, err
			}
			p.Codec, p.Payload, p.DTS = media.CodecH264, payload, p.PTS
			if h264.IsRandomAccess(u.au) {
				p.Flags = media.FlagKeyframe
			}
		} else {
			p.Track, p.Codec, p.Payload = 1, media.CodecAAC, u.au[0]
			p.PTS = p.PTS * int64(c.sampleRate) / 90000
			p.DTS = p.PTS
		}
		c.packets = append(c.packets, p)
	}
	sort.SliceStable(c.packets, func(i, j int) bool { return c.at(c.packets[i]) < c.at(c.packets[j]) })
	// Cut at the last keyframe so the clip loops on a GOP boundary.
	for k := len(c.packets) - 1; k > 0; k-- {
		if c.packets[k].Track == 0 && c.packets[k].Keyframe() {
			c.duration = c.at(c.packets[k])
			c.packets = c.packets[:k]
			break
		}
	}
	return c, nil
}

// publisher plays a clip on the bus as an edge would: it registers the
// stream, publishes packets (looping the clip), and answers GOP requests.
type publisher struct {
	t    *testing.T
	nc   *nats.Conn
	reg  *bus.Registry
	clip *clip
	path string

	pub *bus.Publisher
	rev uint64
	gen uint64
	seq uint64

	mu  sync.Mutex
	gop []*media.Packet
}

// newPublisher registers path and answers GOP requests. A test that bursts
// media right after the claim should use newPublisherNoGOP: an origin that
// fetches the GOP after the whole burst was sent rightly skips the older
// live packets still queued, and keeps only the last GOP.
func newPublisher(t *testing.T, b *testBus, c *clip, path string, gen uint64) *publisher {
	t.Helper()
	return startPublisher(t, b, c, path, gen, true)
}

func newPublisherNoGOP(t *testing.T, b *testBus, c *clip, path string, gen uint64) *publisher {
	t.Helper()
	return startPublisher(t, b, c, path, gen, false)
}

func startPublisher(t *testing.T, b *testBus, c *clip, path string, gen uint64, serveGOP bool) *publisher {
	t.Helper()
	nc, reg := b.client()
	p := &publisher{t: t, nc: nc, reg: reg, clip: c, path: path, gen: gen, pub: bus.NewPublisher(nc, path)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := reg.ClaimStream(ctx, p.info())
	if err != nil {
		t.Fatal(err)
	}
	p.rev = rev
	if !serveGOP {
		return p
	}
	sub, err := bus.ServeGOP(nc, path, func() []*media.Packet {
		p.mu.Lock()
		defer p.mu.Unlock()
		return append([]*media.Packet(nil), p.gop...)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return p
}

func (p *publisher) info() *bus.StreamInfo {
	return &bus.StreamInfo{Path: p.path, Generation: p.gen, Edge: "test-edge", Protocol: "test",
		Tracks: p.clip.tracks(), Started: time.Now()}
}

// newGeneration simulates the publisher reconnecting: a new generation,
// sequence numbers and timestamps starting over.
func (p *publisher) newGeneration() {
	p.t.Helper()
	p.gen++
	p.seq = 0
	p.mu.Lock()
	p.gop = nil
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := p.reg.RenewStream(ctx, p.info(), p.rev)
	if err != nil {
		p.t.Fatal(err)
	}
	p.rev = rev
}

// play publishes media time [0, total): the first burst at once, the rest
// paced in real time. It returns early when ctx ends.
func (p *publisher) play(ctx context.Context, burst, total time.Duration) {
	start := time.Now()
	for loop := 0; ; loop++ {
		shift := time.Duration(loop) * p.clip.duration
		for _, src := range p.clip.packets {
			at := shift + p.clip.at(src)
			if at >= total {
				return
			}
			if at > burst {
				wait := time.Until(start.Add(at - burst))
				if wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
			}
			if ctx.Err() != nil {
				return
			}
			pkt := *src
			rate := int64(90000)
			if pkt.Track == 1 {
				rate = int64(p.clip.sampleRate)
			}
			off := int64(shift) * rate / int64(time.Second)
			pkt.PTS += off
			pkt.DTS += off
			pkt.Generation = p.gen
			pkt.Seq = p.seq
			pkt.WallClock = time.Now().UnixNano()
			p.seq++
			p.mu.Lock()
			if pkt.Track == 0 && pkt.Keyframe() {
				p.gop = p.gop[:0]
			}
			p.gop = append(p.gop, &pkt)
			p.mu.Unlock()
			if err := p.pub.Publish(&pkt); err != nil {
				p.t.Error(err)
				return
			}
		}
	}
}

// background runs play in a goroutine stopped at cleanup.
func (p *publisher) background(burst, total time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.play(ctx, burst, total)
	}()
	p.t.Cleanup(func() {
		cancel()
		<-done
	})
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func get(t *testing.T, url string) response {
	t.Helper()
	c := &http.Client{Timeout: 15 * time.Second}
	defer c.CloseIdleConnections()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: res.StatusCode, header: res.Header, body: b}
}

func base(o *Origin, path string) string {
	return "http://" + o.HTTPAddr().String() + "/" + path + "/"
}

// mediaPlaylist fetches and parses a media playlist, failing on anything but 200.
func mediaPlaylist(t *testing.T, url string) (*playlist.Media, string) {
	t.Helper()
	r := get(t, url)
	if r.code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, r.code, r.body)
	}
	pl, err := playlist.Unmarshal(r.body)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, r.body)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		t.Fatalf("GET %s: not a media playlist", url)
	}
	return m, string(r.body)
}

// streamStatus returns the origin's status of path.
func streamStatus(o *Origin, path string) (StreamStatus, bool) {
	for _, s := range o.Streams() {
		if s.Path == path {
			return s, true
		}
	}
	return StreamStatus{}, false
}

func ready(o *Origin, path string) func() bool {
	return func() bool {
		s, ok := streamStatus(o, path)
		return ok && s.Ready
	}
}
