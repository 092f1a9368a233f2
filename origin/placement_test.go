package origin

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/transcode"
)

func TestPlacementDecision(t *testing.T) {
	gpuFree := &gossip.Transcode{Encoders: gossip.NVENCH264 | gossip.NVENCHEVC | gossip.X264 | gossip.NVDEC, GPU: 4, GPUFree: 2, CPU: 2, CPUFree: 2}
	gpuFull := &gossip.Transcode{Encoders: gossip.NVENCH264 | gossip.NVENCHEVC | gossip.X264, GPU: 4, CPU: 2, CPUFree: 2}
	gpuH264 := &gossip.Transcode{Encoders: gossip.NVENCH264 | gossip.X264, GPU: 4, GPUFree: 4}
	cpu := &gossip.Transcode{Encoders: gossip.X264 | gossip.X265, CPU: 2, CPUFree: 2}
	on := func(name string, tc *gossip.Transcode) site { return site{name: name, tc: tc, load: 1, capacity: 10} }
	h264 := placeNeed{ladder: true, nvenc: gossip.NVENCH264}
	h265 := placeNeed{ladder: true, nvenc: gossip.NVENCHEVC}
	pass := placeNeed{}
	full := on("gpu2", gpuFree)
	full.load = 10
	draining := on("gpu2", gpuFree)
	draining.draining = true

	for _, tc := range []struct {
		name  string
		need  placeNeed
		self  site
		peers []site
		want  string
	}{
		{"ladder on a GPU origin with a free slot", h264, on("gpu1", gpuFree), []site{on("gpu2", gpuFree), on("cpu1", cpu)}, ""},
		{"ladder on a CPU origin beside a free GPU", h264, on("cpu1", cpu), []site{on("gpu1", gpuFree)}, "gpu1"},
		{"ladder on a CPU origin, the GPU slots all taken", h264, on("cpu1", cpu), []site{on("gpu1", gpuFull)}, ""},
		{"ladder on a CPU origin, the GPU origin at capacity", h264, on("cpu1", cpu), []site{full}, ""},
		{"ladder on a CPU origin, the GPU origin draining", h264, on("cpu1", cpu), []site{draining}, ""},
		{"h265 ladder, the GPU has no HEVC encoder", h265, on("cpu1", cpu), []site{on("gpu1", gpuH264)}, ""},
		{"h265 ladder, a GPU with HEVC", h265, on("cpu1", cpu), []site{on("gpu0", gpuH264), on("gpu1", gpuFree)}, "gpu1"},
		{"ladder on a full GPU origin beside a free one", h264, on("gpu1", gpuFull), []site{on("gpu2", gpuFree)}, "gpu2"},
		{"ladder, no peers", h264, on("cpu1", cpu), nil, ""},
		{"ladder, the only first choice is this origin's own record", h264, on("cpu1", cpu), []site{on("cpu1", gpuFree)}, ""},
		{"passthrough on a CPU origin", pass, on("cpu1", cpu), []site{on("gpu1", gpuFree)}, ""},
		{"passthrough on an origin without ladders", pass, on("o1", nil), []site{on("gpu1", gpuFree)}, ""},
		{"passthrough on a GPU origin beside a CPU origin", pass, on("gpu1", gpuFree), []site{on("gpu2", gpuFree), on("cpu1", cpu)}, "cpu1"},
		{"passthrough on a GPU origin beside one without ladders", pass, on("gpu1", gpuFree), []site{on("o1", nil)}, "o1"},
		{"passthrough on a GPU origin, the CPU origin full", pass, on("gpu1", gpuFree), []site{{name: "cpu1", tc: cpu, load: 5, capacity: 5}}, ""},
		{"passthrough on a GPU origin, only GPU peers", pass, on("gpu1", gpuFree), []site{on("gpu2", gpuFull)}, ""},
	} {
		if got := deferTo(tc.need, tc.self, tc.peers); got != tc.want {
			t.Errorf("%s: defer to %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPlacementNeedAndRecord(t *testing.T) {
	r := func(codec string) transcode.Rendition {
		return transcode.Rendition{Name: "r" + codec, Width: 640, Height: 360, Bitrate: 600_000, Codec: codec}
	}
	for _, tc := range []struct {
		pl   *ladderPlan
		want placeNeed
	}{
		{nil, placeNeed{}},
		{&ladderPlan{rule: LadderRule{Ladder: transcode.Ladder{Renditions: []transcode.Rendition{r("")}}}}, placeNeed{true, gossip.NVENCH264}},
		{&ladderPlan{rule: LadderRule{Ladder: transcode.Ladder{Renditions: []transcode.Rendition{r("h265"), r("h264")}}}},
			placeNeed{true, gossip.NVENCH264 | gossip.NVENCHEVC}},
	} {
		if got := needOf(tc.pl); got != tc.want {
			t.Errorf("needOf: %+v, want %+v", got, tc.want)
		}
	}

	gpu := transcode.Capabilities{X264: true, NVENCH264: true, NVENCHEVC: true, CUDA: true, ScaleCUDA: true}
	for _, tc := range []struct {
		name string
		enc  transcode.Encoder
		caps transcode.Capabilities
		want gossip.Transcode
	}{
		{"GPU origin", transcode.EncoderAuto, gpu,
			gossip.Transcode{Encoders: gossip.NVENCH264 | gossip.NVENCHEVC | gossip.X264 | gossip.NVDEC, GPU: 3, GPUFree: 2, CPU: 2, CPUFree: 1}},
		{"GPU origin told to use x264", transcode.EncoderX264, gpu,
			gossip.Transcode{Encoders: gossip.X264 | gossip.NVDEC, CPU: 2, CPUFree: 1}},
		{"CPU origin", transcode.EncoderAuto, transcode.Capabilities{X264: true, X265: true},
			gossip.Transcode{Encoders: gossip.X264 | gossip.X265, CPU: 2, CPUFree: 1}},
	} {
		o := &Origin{Node: "o1", Transcode: TranscodeConfig{Encoder: tc.enc}, streams: map[string]*stream{}}
		o.tr.enabled, o.tr.caps, o.tr.cpuSlots = true, tc.caps, 2
		if tc.caps.NVENCH264 {
			o.tr.gpuSlots = 3
		}
		o.streams["a"] = &stream{path: "a", plan: &ladderPlan{encoder: transcode.EncoderNVENC}}
		o.streams["b"] = &stream{path: "b", plan: &ladderPlan{encoder: transcode.EncoderX264}}
		o.streams["c"] = &stream{path: "c"}
		if got := o.transcodeRecord(); got == nil || *got != tc.want {
			t.Errorf("%s: record %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if (&Origin{}).transcodeRecord() != nil {
		t.Error("an origin without ladders announces transcoding")
	}
}

// placementCluster is a mixed cluster of origins with capabilities set by
// the test, joined by gossip, on one bus.
type placementCluster struct {
	t      *testing.T
	b      *testBus
	reg    *bus.Registry
	seeds  []string
	gossip map[string]*gossip.Node

	mu   sync.Mutex
	revs map[string]uint64 // stream records kept alive by renew
}

var (
	testGPU = transcode.Capabilities{FFmpeg: "test", X264: true, X265: true, NVENCH264: true, NVENCHEVC: true,
		CUDA: true, ScaleCUDA: true, GPUs: 1}
	testCPU = transcode.Capabilities{FFmpeg: "test", X264: true, X265: true}
)

// placementLadders: lad/* may overflow to the CPU, gpu/* may not.
func placementLadders() []LadderRule {
	l := ladder360p()
	return []LadderRule{
		{Match: "lad/*", Fallback: transcode.PolicyCPU, Ladder: l},
		{Match: "gpu/*", Fallback: transcode.PolicyRefuse, Ladder: l},
	}
}

func (c *placementCluster) origin(name string, caps transcode.Capabilities, gpuSessions int) *Origin {
	c.t.Helper()
	g := &gossip.Node{Name: name, BindAddr: "127.0.0.1", Seeds: c.seeds, Meta: gossip.Meta{Role: "origin"},
		Log: slog.New(slog.DiscardHandler)}
	if err := g.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(g.Close) // after the origin's Close (cleanups run last first)
	c.seeds = append(c.seeds, g.Addr())
	c.gossip[name] = g
	return c.b.origin(name, func(o *Origin) {
		o.Gossip = g
		o.Transcode = TranscodeConfig{GPUSessions: gpuSessions, CPUSlots: 2, Ladders: placementLadders(), Capabilities: &caps}
	})
}

// publish announces a live stream (no media: placement needs none) and
// keeps its record alive until the test ends.
func (c *placementCluster) publish(path string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rev, err := c.reg.ClaimStream(ctx, &bus.StreamInfo{Path: path, Generation: 1,
		Tracks: []bus.TrackInfo{{ID: 0, Codec: media.CodecH264, ClockRate: 90000}}}, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.revs[path] = rev
	c.mu.Unlock()
}

func (c *placementCluster) renew(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		for path, rev := range c.revs {
			info := &bus.StreamInfo{Path: path, Generation: 1, Tracks: []bus.TrackInfo{{ID: 0, Codec: media.CodecH264, ClockRate: 90000}}}
			if r, err := c.reg.UpdateStream(ctx, info, rev); err == nil {
				c.revs[path] = r
			}
		}
		c.mu.Unlock()
	}
}

// owner is the node holding path's lease; "" when none.
func (c *placementCluster) owner(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o, err := c.reg.OwnerOf(ctx, path)
	if err != nil || o == nil {
		return ""
	}
	return o.Node
}

func (c *placementCluster) ownedBy(path, node string) func() bool {
	return func() bool { return c.owner(path) == node }
}

// sees reports whether every origin's gossip shows name's record with the
// given free GPU slots.
func (c *placementCluster) sees(name string, gpuFree int) func() bool {
	return func() bool {
		for _, g := range c.gossip {
			m, ok := g.Member(name)
			if !ok || m.Meta.Transcode == nil || m.Meta.Transcode.GPUFree != gpuFree {
				return false
			}
		}
		return true
	}
}

func refusedHere(o *Origin, path string) string {
	for _, s := range o.Streams() {
		if s.Path == path {
			return s.Refused
		}
	}
	return ""
}

// TestPlacementCluster: in a cluster of GPU and CPU origins, ladder streams
// land on a GPU origin and passthrough streams on the CPU origin; a full GPU
// origin overflows to the CPU only where the ladder's fallback is cpu; a
// stream nobody can take is reported and picked up when a GPU origin joins;
// a dead GPU origin's ladders move to another GPU origin, a drained one's to
// the CPU origin (fallback cpu) or nowhere (fallback refuse).
func TestPlacementCluster(t *testing.T) {
	testkit.Slow(t) // a cluster of origins
	b := startBus(t, 2*time.Second)
	_, reg := b.client()
	c := &placementCluster{t: t, b: b, reg: reg, gossip: map[string]*gossip.Node{}, revs: map[string]uint64{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.renew(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	gpu1 := c.origin("gpu1", testGPU, 1)
	cpu1 := c.origin("cpu1", testCPU, 0)
	testkit.WaitFor(t, 10*time.Second, "gpu1's free GPU slot in gossip", c.sees("gpu1", 1))
	testkit.WaitFor(t, 10*time.Second, "cpu1's record in gossip", c.sees("cpu1", 0))

	// Passthrough goes to the CPU origin, a ladder to the GPU origin.
	c.publish("pass/a")
	c.publish("lad/a")
	testkit.WaitFor(t, 10*time.Second, "pass/a on cpu1", c.ownedBy("pass/a", "cpu1"))
	testkit.WaitFor(t, 10*time.Second, "lad/a on gpu1", c.ownedBy("lad/a", "gpu1"))

	// gpu1 is full: a fallback-cpu ladder overflows to cpu1, a
	// fallback-refuse one stays unclaimed, and says so.
	testkit.WaitFor(t, 10*time.Second, "gpu1 full in gossip", c.sees("gpu1", 0))
	c.publish("lad/b")
	c.publish("gpu/a")
	testkit.WaitFor(t, 10*time.Second, "lad/b on cpu1", c.ownedBy("lad/b", "cpu1"))
	testkit.WaitFor(t, 10*time.Second, "gpu/a refused by both", func() bool {
		return strings.Contains(refusedHere(cpu1, "gpu/a"), "fallback is refuse") &&
			strings.Contains(refusedHere(gpu1, "gpu/a"), "slots are taken")
	})
	if o := c.owner("gpu/a"); o != "" {
		t.Fatalf("gpu/a (fallback refuse) claimed by %s", o)
	}
	if v := testutil.ToFloat64(cpu1.unclaimedGaugeFor(t)); v != 1 {
		t.Fatalf("cpu1 streamgrid_origin_streams_refused = %v, want 1", v)
	}

	// A second GPU origin with two sessions picks the waiting stream up.
	gpu2 := c.origin("gpu2", testGPU, 2)
	testkit.WaitFor(t, 10*time.Second, "gpu/a on gpu2", c.ownedBy("gpu/a", "gpu2"))
	testkit.WaitFor(t, 10*time.Second, "gpu/a no longer refused", func() bool {
		return refusedHere(cpu1, "gpu/a") == "" && refusedHere(gpu1, "gpu/a") == ""
	})
	testkit.WaitFor(t, 10*time.Second, "gpu2's free GPU slot in gossip", c.sees("gpu2", 1))

	// gpu1 crashes: its ladder moves to gpu2, which has a GPU slot free,
	// not to cpu1, which has a CPU slot free.
	c.gossip["gpu1"].Shutdown()
	gpu1.shutdown(stopAbandon)
	testkit.WaitFor(t, 15*time.Second, "lad/a on gpu2", c.ownedBy("lad/a", "gpu2"))
	if o := c.owner("pass/a"); o != "cpu1" {
		t.Fatalf("pass/a moved to %q", o)
	}

	// gpu2 drains: the fallback-cpu ladder moves to cpu1, the
	// fallback-refuse one has nowhere to go.
	gpu2.Drain(ctx)
	testkit.WaitFor(t, 10*time.Second, "lad/a on cpu1", c.ownedBy("lad/a", "cpu1"))
	testkit.WaitFor(t, 10*time.Second, "gpu/a refused by cpu1", func() bool { return refusedHere(cpu1, "gpu/a") != "" })
	if o := c.owner("gpu/a"); o != "" {
		t.Fatalf("gpu/a (fallback refuse) claimed by %s after the drain", o)
	}
}

// unclaimedGaugeFor finds the origin's streams_refused gauge in its registry.
func (o *Origin) unclaimedGaugeFor(t *testing.T) prometheus.Collector {
	t.Helper()
	for _, c := range o.m.collectors {
		desc := make(chan *prometheus.Desc, 4)
		c.Describe(desc)
		close(desc)
		for d := range desc {
			if strings.Contains(d.String(), "streamgrid_origin_streams_refused") {
				return c
			}
		}
	}
	t.Fatal("no streamgrid_origin_streams_refused gauge")
	return nil
}
