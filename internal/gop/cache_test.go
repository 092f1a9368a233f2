package gop

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/internal/media"
)

// The edge's GOP budget holds all caches together: the cache whose packet
// would pass it is emptied until its next keyframe, the others keep theirs,
// and what an emptied or ended cache held is given back.
func TestGOPBudgetSharedByStreams(t *testing.T) {
	shed := prometheus.NewCounter(prometheus.CounterOpts{Name: "shed"})
	b := &Budget{Limit: 1000, Shed: shed}
	video := func(n int, key bool) *media.Packet {
		p := &media.Packet{Codec: media.CodecH264, Payload: make([]byte, n)}
		if key {
			p.Flags = media.FlagKeyframe
		}
		return p
	}
	a, c := NewCache(0, 0, b), NewCache(0, 0, b)
	a.Add(video(400, true))
	a.Add(video(200, false))
	c.Add(video(300, true))
	if got := b.Bytes(); got != 900 {
		t.Fatalf("budget holds %d bytes, want 900", got)
	}
	c.Add(video(200, false)) // 1100 > 1000: c is emptied, a keeps its GOP
	if got, n := b.Bytes(), len(c.Snapshot()); got != 600 || n != 0 {
		t.Fatalf("after the overflow: budget %d bytes (want 600), c holds %d packets (want 0)", got, n)
	}
	if n := len(a.Snapshot()); n != 2 {
		t.Fatalf("a holds %d packets, want its 2", n)
	}
	if v := testutil.ToFloat64(shed); v != 1 {
		t.Fatalf("shed counted %v, want 1", v)
	}
	c.Add(video(100, false)) // no keyframe yet: stays empty
	if len(c.Snapshot()) != 0 {
		t.Fatal("an emptied cache took a packet before its next keyframe")
	}
	c.Add(video(300, true))
	if got := b.Bytes(); got != 900 || len(c.Snapshot()) != 1 {
		t.Fatalf("after c's keyframe: budget %d (want 900), c %d packets (want 1)", got, len(c.Snapshot()))
	}
	a.Reset() // the stream ends
	c.Reset()
	if got := b.Bytes(); got != 0 {
		t.Fatalf("ended streams left %d bytes in the budget", got)
	}
}

// An audio-only stream's cache (the last packets, no GOP) keeps the budget
// too, and gives back what it drops from its front.
func TestGOPBudgetAudioOnly(t *testing.T) {
	b := &Budget{Limit: 1 << 20, Shed: prometheus.NewCounter(prometheus.CounterOpts{Name: "shed"})}
	g := NewCache(-1, 0, b)
	for range audioOnlyGOPPackets + 10 {
		g.Add(&media.Packet{Codec: media.CodecAAC, Payload: make([]byte, 10)})
	}
	if got := b.Bytes(); got != audioOnlyGOPPackets*10 {
		t.Fatalf("budget holds %d bytes, want %d", got, audioOnlyGOPPackets*10)
	}
	g.Reset()
	if got := b.Bytes(); got != 0 {
		t.Fatalf("budget holds %d bytes after reset", got)
	}
}

// The cache keeps the complete GOP before the last one (an origin taking
// the stream over completes its first segment with it), gives it up first
// when the bytes run short, and never keeps it across a gap.
func TestGOPCacheKeepsThePreviousGOP(t *testing.T) {
	b := &Budget{Limit: 1000, Shed: prometheus.NewCounter(prometheus.CounterOpts{Name: "shed"})}
	g := NewCache(0, 0, b)
	seq := uint64(0)
	video := func(n int, key bool) *media.Packet {
		seq++
		p := &media.Packet{Codec: media.CodecH264, Seq: seq, Payload: make([]byte, n)}
		if key {
			p.Flags = media.FlagKeyframe
		}
		g.Add(p)
		return p
	}
	seqs := func() (out []uint64) {
		for _, p := range g.Snapshot() {
			out = append(out, p.Seq)
		}
		return out
	}
	video(100, true)
	video(100, false)
	video(100, true)
	video(100, false)
	if got := seqs(); len(got) != 4 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("two GOPs: %v, want [1 2 3 4]", got)
	}
	video(100, true) // a third GOP: the first goes
	if got := seqs(); len(got) != 3 || got[0] != 3 || got[2] != 5 {
		t.Fatalf("after a third keyframe: %v, want [3 4 5]", got)
	}
	video(800, false) // 300 + 800 > 1000: the older GOP is given up, the last one kept
	if got := seqs(); len(got) != 2 || got[0] != 5 || b.Bytes() != 900 {
		t.Fatalf("over the budget: %v holding %d bytes, want [5 6] and 900", got, b.Bytes())
	}
	video(300, false) // the last GOP alone passes it: emptied until the next keyframe
	video(100, true)
	if got := seqs(); len(got) != 1 || got[0] != 8 || b.Bytes() != 100 {
		t.Fatalf("after emptying: %v holding %d bytes, want [8] and 100 (no GOP across the gap)", got, b.Bytes())
	}
	g.Reset()
	if b.Bytes() != 0 || len(g.Snapshot()) != 0 {
		t.Fatal("reset left packets or bytes")
	}
}
