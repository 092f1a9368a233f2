package origin

import (
	"context"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"

	"github.com/streamgrid/streamgrid/internal/hlscheck"
	"github.com/streamgrid/streamgrid/internal/llhls"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestMuxersConform follows a live Low-Latency stream through the origin
// with the conformance checker, packaged by the builtin muxer (the default)
// and by gohlslib's (origin.hls.muxer: gohlslib), and checks which one
// packaged it.
func TestMuxersConform(t *testing.T) {
	testkit.Slow(t)
	for _, muxer := range []string{"", MuxerGohlslib} {
		t.Run("muxer="+muxer, func(t *testing.T) {
			checkLeaks(t)
			c := loadClip(t)
			b := startBus(t, time.Second)
			o := b.origin("o1", func(o *Origin) { o.HLS.Muxer = muxer })
			startLive(t, b, o, c, 30*time.Second)
			var kinds []string
			o.mu.RLock()
			for _, s := range o.streams {
				s.mu.Lock()
				for _, i := range s.instances {
					switch i.muxer.(type) {
					case *llhls.Muxer:
						kinds = append(kinds, MuxerBuiltin)
					case *gohlslib.Muxer:
						kinds = append(kinds, MuxerGohlslib)
					}
				}
				s.mu.Unlock()
			}
			o.mu.RUnlock()
			want := muxer
			if want == "" {
				want = MuxerBuiltin
			}
			if len(kinds) != 1 || kinds[0] != want {
				t.Fatalf("packaged by %v, want %s", kinds, want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			rep, err := (&hlscheck.Checker{URL: base(o, camPath) + "index.m3u8", Duration: 8 * time.Second}).Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Segments == 0 || rep.Parts == 0 {
				t.Fatalf("checker saw %d segments and %d parts", rep.Segments, rep.Parts)
			}
			for _, v := range rep.Violations {
				t.Errorf("%s %s: %s", v.Rule, v.Playlist, v.Detail)
			}
		})
	}
}
