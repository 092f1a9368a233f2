package origin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testkit/testbus"
	"github.com/streamgrid/streamgrid/internal/testmedia"
	"github.com/streamgrid/streamgrid/internal/transcode"
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

// ladder360p is a one-rendition ladder, for tests that plan transcoding
// without running it.
func ladder360p() transcode.Ladder {
	return transcode.Ladder{Renditions: []transcode.Rendition{{Name: "360p", Width: 640, Height: 360, Bitrate: 600_000}}}
}

// unstartedOrigin is an Origin that was never started, with the maps and
// channels its planning and settings methods use.
func unstartedOrigin() *Origin {
	return &Origin{Node: "o1", Log: slog.New(slog.DiscardHandler), streams: map[string]*stream{}, refused: map[string]string{},
		rescan: make(chan struct{}, 1), metaChanged: make(chan struct{}, 1)}
}

type testBus struct {
	t        *testing.T
	srv      *bus.Server
	leaseTTL time.Duration
}

func startBus(t *testing.T, leaseTTL time.Duration) *testBus {
	t.Helper()
	return &testBus{t: t, srv: testbus.StartServer(t, nil), leaseTTL: leaseTTL}
}

// client opens a connection with its own started registry.
func (b *testBus) client() (*nats.Conn, *bus.Registry) {
	b.t.Helper()
	nc := testbus.Connect(b.t, b.srv)
	return nc, testbus.StartRegistry(b.t, nc, b.leaseTTL)
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

// clip is testmedia's sample clip (H264 + AAC) as the edge would publish it.
type clip struct {
	sps, pps   []byte
	asc        []byte
	sampleRate int
	channels   int
	packets    []*media.Packet // decode order; track 0 video (90 kHz), track 1 AAC (sample rate)
	duration   time.Duration
}

func (c *clip) tracks() []bus.TrackInfo {
	return []bus.TrackInfo{
		{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: c.sps, PPS: c.pps},
		{ID: 1, Codec: media.CodecAAC, ClockRate: c.sampleRate, AudioConfig: c.asc, Channels: c.channels},
	}
}

// at is a packet's media time.
func (c *clip) at(p *media.Packet) time.Duration {
	if p.Track == 0 {
		return time.Duration(p.PTS) * time.Second / 90000
	}
	return time.Duration(p.PTS) * time.Second / time.Duration(c.sampleRate)
}

// loadClip returns the sample clip (testmedia.Load), converted once per test binary.
func loadClip(t *testing.T) *clip {
	t.Helper()
	c, err := sampleClip()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var sampleClip = sync.OnceValues(func() (*clip, error) {
	src, err := testmedia.Load()
	if err != nil {
		return nil, err
	}
	if src.AudioConfig == nil {
		return nil, errors.New("the sample clip has no audio")
	}
	asc, err := src.AudioConfig.Marshal()
	if err != nil {
		return nil, err
	}
	c := &clip{sps: src.SPS, pps: src.PPS, asc: asc, sampleRate: src.AudioConfig.SampleRate,
		channels: src.AudioConfig.ChannelCount, duration: src.Duration}
	ticks := func(d time.Duration, rate int) int64 { return int64(d) * int64(rate) / int64(time.Second) }
	for _, f := range src.Video {
		payload, err := h264.AVCC(f.NALUs).Marshal()
		if err != nil {
			return nil, err
		}
		p := &media.Packet{Codec: media.CodecH264, Payload: payload, PTS: ticks(f.PTS, 90000), DTS: ticks(f.DTS, 90000)}
		if f.Keyframe {
			p.Flags = media.FlagKeyframe
		}
		c.packets = append(c.packets, p)
	}
	for _, f := range src.Audio {
		pts := ticks(f.PTS, c.sampleRate)
		c.packets = append(c.packets, &media.Packet{Track: 1, Codec: media.CodecAAC, Payload: f.Data, PTS: pts, DTS: pts})
	}
	sort.SliceStable(c.packets, func(i, j int) bool { return c.at(c.packets[i]) < c.at(c.packets[j]) })
	return c, nil
})

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
	rev, err := reg.ClaimStream(ctx, p.info(), nil)
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
	rev, err := p.reg.UpdateStream(ctx, p.info(), p.rev)
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

// startLive registers camPath with a publisher of c (generation 1), waits
// for o to serve it, plays the first 1.5 s at once and the rest up to total
// in real time, and waits for o's first segment.
func startLive(t *testing.T, b *testBus, o *Origin, c *clip, total time.Duration) *publisher {
	t.Helper()
	p := newPublisher(t, b, c, camPath, 1)
	testkit.WaitFor(t, 5*time.Second, "claim", serving(o, camPath))
	p.background(1500*time.Millisecond, total)
	testkit.WaitFor(t, 10*time.Second, "first segment", hasSegment(o, camPath))
	return p
}

// hasSegment is true once o lists a completed segment of path that is not
// a gap: Ready alone holds as soon as a playlist is served, which for a
// Low-Latency stream is with the first segment's first part, listed after
// the gap segments that stand for the hold-back.
func hasSegment(o *Origin, path string) func() bool {
	return func() bool {
		s, ok := streamStatus(o, path)
		return ok && s.Ready && s.Segments > 0
	}
}

// claimVideo claims path (generation 1, one H264 track) on reg, as an edge
// does when a publisher connects, without sending any media.
func claimVideo(t *testing.T, ctx context.Context, reg *bus.Registry, path string) *bus.StreamInfo {
	t.Helper()
	info := &bus.StreamInfo{Path: path, Generation: 1, Tracks: []bus.TrackInfo{{ID: 0, Codec: media.CodecH264, ClockRate: 90000}}}
	if _, err := reg.ClaimStream(ctx, info, nil); err != nil {
		t.Fatal(err)
	}
	return info
}

// claimServed claims camPath (one H264 track, no media) through a new
// client of b and waits for o to serve it. It returns the client's registry
// and a context for the test's registry calls.
func claimServed(t *testing.T, b *testBus, o *Origin) (*bus.Registry, context.Context) {
	t.Helper()
	_, reg := b.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	claimVideo(t, ctx, reg, camPath)
	testkit.WaitFor(t, 5*time.Second, "claim", serving(o, camPath))
	return reg, ctx
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
