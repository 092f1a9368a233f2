package origin

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/internal/testkit/testbus"
)

// TestStartUndoesOnFailure: a Start that fails at any step leaves nothing
// behind: no listener, no collector in the registry, no segment folder, no
// goroutine.
func TestStartUndoesOnFailure(t *testing.T) {
	taken := testkit.TakenAddr(t)
	for _, tc := range []struct {
		name string
		mod  func(t *testing.T, o *Origin, b *testBus)
		want string
	}{
		{"listen", func(_ *testing.T, o *Origin, _ *testBus) { o.HTTPAddress = taken }, "listen"},
		// The bus connection closed: the origin's own liveness cannot subscribe.
		{"liveness", func(_ *testing.T, o *Origin, _ *testBus) { o.NC.Close() }, "liveness"},
		// A shared liveness that works, but the registry's connection is closed.
		{"watch", func(t *testing.T, o *Origin, b *testBus) {
			live := &bus.Liveness{NC: testbus.Connect(t, b.srv), Node: o.Node, Log: testkit.Logger(t)}
			if err := live.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(live.Close)
			o.Live = live
			o.NC.Close()
		}, "watch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			b := startBus(t, 0)
			nc, reg := b.client()
			dir := t.TempDir()
			metrics := prometheus.NewRegistry()
			o := &Origin{Node: "o1", NC: nc, Registry: reg, HTTPAddress: "127.0.0.1:0",
				SegmentDir: dir, Metrics: metrics, Log: testkit.Logger(t)}
			tc.mod(t, o, b)
			err := testkit.StartRefused(t, o.Start, o.Close)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: %v, want an error about %q", err, tc.want)
			}
			if fams, err := metrics.Gather(); err != nil || len(fams) != 0 {
				t.Errorf("%d metric families left registered (%v)", len(fams), err)
			}
			if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
				t.Errorf("segment folder left behind: %v %v", ents, err)
			}
			if o.AdvertiseHTTP != "" && o.AdvertiseHTTP != taken {
				ln, err := net.Listen("tcp", o.AdvertiseHTTP)
				if err != nil {
					t.Fatalf("the listener is still open: %v", err)
				}
				ln.Close()
			}
		})
	}
}
