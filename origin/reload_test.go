package origin

import (
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/transcode"
)

func TestSetLaddersAndHLS(t *testing.T) {
	ladder := ladder360p()
	o := unstartedOrigin()
	o.Transcode = TranscodeConfig{Encoder: transcode.EncoderAuto, Fallback: transcode.PolicyCPU}
	o.tr.caps = transcode.Capabilities{X264: true}

	// An origin started without ladders cannot start transcoding on a reload.
	if err := o.SetLadders([]LadderRule{{Match: "live/*", Ladder: ladder}}); err == nil {
		t.Fatal("ladders accepted on an origin that never probed its encoders")
	}
	o.tr.enabled = true
	if err := o.SetLadders([]LadderRule{{Match: "live/*", Ladder: ladder}}); err != nil {
		t.Fatal(err)
	}
	if p := o.planFor("live/a"); p == nil || p.encoder != transcode.EncoderX264 {
		t.Fatalf("plan after SetLadders: %+v", p)
	}
	if p := o.planFor("cams/a"); p != nil {
		t.Fatalf("cams/a matched %+v", p)
	}
	if err := o.SetLadders([]LadderRule{{Match: "cams/*", Ladder: ladder}}); err != nil {
		t.Fatal(err)
	}
	if o.planFor("live/a") != nil || o.planFor("cams/a") == nil {
		t.Fatal("the second SetLadders did not replace the first")
	}
	if err := o.SetLadders(nil); err == nil {
		t.Fatal("turning transcoding off was accepted")
	}

	cases := []struct {
		h  HLSConfig
		ok bool
	}{
		{HLSConfig{Variant: "mpegts", SegmentDuration: 2 * time.Second, PartDuration: 200 * time.Millisecond, SegmentCount: 3, IdleTimeout: time.Second}, true},
		{HLSConfig{Variant: "lowLatency", SegmentDuration: time.Second, PartDuration: 200 * time.Millisecond, SegmentCount: 3, IdleTimeout: time.Second}, false},
		{HLSConfig{Variant: "dash", SegmentDuration: time.Second, PartDuration: 200 * time.Millisecond, SegmentCount: 7, IdleTimeout: time.Second}, false},
	}
	for _, c := range cases {
		if err := o.SetHLS(c.h); (err == nil) != c.ok {
			t.Errorf("SetHLS(%+v): err %v", c.h, err)
		}
	}
	if h := o.hls.Load(); h == nil || h.cfg.Variant != "mpegts" || variantName(h.variant) != VariantMPEGTS {
		t.Fatalf("settings for new streams: %+v", h)
	}
	if err := o.SetCapacity(0); err == nil {
		t.Error("capacity 0 accepted")
	}
	if err := o.SetCapacity(3); err != nil || o.capacity() != 3 {
		t.Errorf("SetCapacity(3): %v, capacity %d", err, o.capacity())
	}
}
