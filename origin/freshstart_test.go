package origin

import (
	"errors"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/media"
)

// TestDeclaredTarget: a remembered keyframe interval is declared up front,
// never below the segment duration; with none, or one past
// maxDeclaredTarget (a record not to trust), the segment duration is
// assumed (fresh_start: part), unless a muxer of the stream outgrew its
// target already or fresh_start is segment: then nothing is declared.
func TestDeclaredTarget(t *testing.T) {
	for _, c := range []struct {
		remembered int
		fresh      string
		learn      bool
		want       int
		assumed    bool
	}{
		{0, FreshStartPart, false, 2, true}, {-3, FreshStartPart, false, 2, true},
		{0, FreshStartSegment, false, 0, false}, {0, FreshStartPart, true, 0, false},
		{1, FreshStartPart, false, 2, false}, {4, FreshStartSegment, true, 4, false},
		{maxDeclaredTarget, FreshStartPart, false, maxDeclaredTarget, false},
		{maxDeclaredTarget + 1, FreshStartSegment, false, 0, false},
		{maxDeclaredTarget + 1, FreshStartPart, false, 2, true}, {1 << 30, FreshStartPart, true, 0, false},
	} {
		s := &stream{hls: HLSConfig{SegmentDuration: 2 * time.Second, FreshStart: c.fresh}}
		s.learnTarget = c.learn
		s.target.Store(int64(c.remembered))
		if got, assumed := s.declaredTarget(); got != c.want || assumed != c.assumed {
			t.Errorf("remembered %d s, %s, learn %v: declared %d (assumed %v), want %d (%v)",
				c.remembered, c.fresh, c.learn, got, assumed, c.want, c.assumed)
		}
	}
}

// TestKeepForReplay: a muxer with an assumed target keeps what it is fed
// until its first segment measures the interval or the kept bytes pass
// maxFirstGOPBytes; then it keeps nothing more and a restart replays
// nothing (the new muxer starts at the next keyframe).
func TestKeepForReplay(t *testing.T) {
	pkt := func(n int) *media.Packet { return &media.Packet{Payload: make([]byte, n)} }
	for _, tc := range []struct {
		name     string
		feed     []int // payload sizes
		measured bool  // the first segment completed before the last packet
		want     int   // packets a restart replays
	}{
		{"kept", []int{100, 200, 300}, false, 3},
		{"measured", []int{100, 200, 300}, true, 0},
		{"over the bound", []int{maxFirstGOPBytes - 10, 5, 20}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &stream{}
			s.cur = &instance{assumed: true}
			for i, n := range tc.feed {
				if tc.measured && i == len(tc.feed)-1 {
					s.target.Store(1)
				}
				s.keepForReplay(pkt(n))
			}
			if got := len(s.takeFirstGOP()); got != tc.want {
				t.Fatalf("a restart replays %d packets, want %d", got, tc.want)
			}
			if s.first.pkts != nil || s.first.bytes != 0 {
				t.Fatalf("still kept after the take: %d packets, %d bytes", len(s.first.pkts), s.first.bytes)
			}
		})
	}
	// A muxer whose target was not assumed keeps nothing.
	s := &stream{}
	s.cur = &instance{}
	s.keepForReplay(pkt(10))
	if got := s.takeFirstGOP(); got != nil {
		t.Fatalf("kept %d packets for a muxer with a known target", len(got))
	}
}

// TestFreshStartValidate: HLSConfig.Validate (Start, SetHLS) refuses an
// unknown fresh_start, naming the field.
func TestFreshStartValidate(t *testing.T) {
	var fe *FieldError
	if err := (HLSConfig{FreshStart: "first"}).Validate(); !errors.As(err, &fe) || fe.Field != "FreshStart" {
		t.Fatalf("Validate: %v, want a FieldError for FreshStart", err)
	}
	for _, v := range []string{"", FreshStartPart, FreshStartSegment} {
		if err := (HLSConfig{FreshStart: v, SegmentDuration: time.Second, PartDuration: 200 * time.Millisecond, SegmentCount: 7}).Validate(); err != nil {
			t.Fatalf("FreshStart %q: %v", v, err)
		}
	}
}
