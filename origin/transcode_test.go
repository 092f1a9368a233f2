package origin

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/transcode"
)

func TestPlanForAndAdmission(t *testing.T) {
	ladder := ladder360p()
	o := unstartedOrigin()
	o.tr.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"reason"})
	cpu := &ladderPlan{rule: LadderRule{Match: "live/*", Ladder: ladder}, encoder: transcode.EncoderX264}
	gpu := &ladderPlan{rule: LadderRule{Match: "gpu/*", Ladder: ladder}, encoder: transcode.EncoderNVENC}
	refused := &ladderPlan{rule: LadderRule{Match: "hw/*", Ladder: ladder}, reason: refuseNoGPU, refuse: "no GPU encoder and fallback is refuse"}
	pass := &ladderPlan{rule: LadderRule{Match: "pass/*", Ladder: transcode.Ladder{Passthrough: true}}}
	plans := []*ladderPlan{cpu, gpu, refused, pass}
	o.tr.plans.Store(&plans)
	o.tr.cpuSlots, o.tr.gpuSlots = 1, 0

	for path, want := range map[string]*ladderPlan{
		"live/a": cpu, "live/a/b": nil, "gpu/x": gpu, "hw/1": refused, "pass/1": nil, "other": nil,
	} {
		if got := o.planFor(path); got != want {
			t.Errorf("planFor(%q) = %v, want %v", path, got, want)
		}
	}

	if r, _ := o.admitLocked(nil); r != "" {
		t.Errorf("passthrough refused: %s", r)
	}
	if r, _ := o.admitLocked(cpu); r != "" {
		t.Errorf("first CPU stream refused: %s", r)
	}
	o.streams["live/a"] = &stream{path: "live/a", plan: cpu}
	if r, msg := o.admitLocked(cpu); r != refuseNoSlot {
		t.Errorf("second CPU stream: %q %q, want no_slot", r, msg)
	}
	if r, _ := o.admitLocked(gpu); r != refuseNoSlot {
		t.Errorf("GPU stream without GPU sessions: %q, want no_slot", r)
	}
	if r, msg := o.admitLocked(refused); r != refuseNoGPU || msg == "" {
		t.Errorf("refused ladder: %q %q", r, msg)
	}

	o.noteRefusedLocked("hw/1", refuseNoGPU, "no GPU")
	o.noteRefusedLocked("hw/1", refuseNoGPU, "no GPU")
	if n := len(o.refused); n != 1 {
		t.Fatalf("refused entries: %d", n)
	}
	var st []StreamStatus
	for p, why := range o.refused {
		st = append(st, StreamStatus{Path: p, Refused: why})
	}
	if st[0].Path != "hw/1" || st[0].Refused != "no GPU" {
		t.Fatalf("refused status: %+v", st)
	}
	o.clearRefused("hw/1")
	if len(o.refused) != 0 {
		t.Fatal("refusal not cleared")
	}
}

func TestResolveName(t *testing.T) {
	s := &stream{transcodeRun: transcodeRun{rends: []*rendState{{name: "a", prefix: "ra_"}, {name: "a_b", prefix: "ra_b_"}}}}
	cases := []struct {
		name   string
		rend   int
		inner  string
		prefix string
	}{
		{"video1_stream.m3u8", 0, "video1_stream.m3u8", ""},
		{"ra_video1_stream.m3u8", 1, "video1_stream.m3u8", "ra_"},
		{"ra_b_audio2_stream.m3u8", 2, "audio2_stream.m3u8", "ra_b_"},
	}
	for _, c := range cases {
		rend, inner, prefix := s.resolveName(c.name)
		if rend != c.rend || inner != c.inner || prefix != c.prefix {
			t.Errorf("resolveName(%q) = %d %q %q", c.name, rend, inner, prefix)
		}
	}
}

func TestNoteKeyframeFollowsTheSegmenter(t *testing.T) {
	o := &Origin{HLS: HLSConfig{SegmentDuration: 1e9}}
	s := &stream{o: o, hls: o.HLS, packager: packager{cur: &instance{firstID: llFirstSegmentID}}}
	// 0.5 s GOP: gohlslib cuts every second keyframe.
	var cuts []bool
	for k := int64(0); k < 5; k++ {
		cuts = append(cuts, s.noteKeyframe(k*45000, time.Unix(k, 0)))
	}
	want := []bool{true, false, true, false, true}
	for k := range want {
		if cuts[k] != want[k] {
			t.Fatalf("cuts %v, want %v", cuts, want)
		}
	}
	if last := s.cuts[len(s.cuts)-1]; last.id != llFirstSegmentID+2 || last.pts != 180000 || last.ntp.Unix() != 4 {
		t.Fatalf("last cut %+v", last)
	}
	// Rendition dates follow the cut at or before them.
	if got := s.ntpFor(180000 + 9000); !got.Equal(time.Unix(4, 0).Add(100 * time.Millisecond)) {
		t.Fatalf("ntpFor: %v", got)
	}
}
