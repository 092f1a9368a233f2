package edge

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestRTMPFastPathSamePackets publishes each clip twice, once read on the
// fast path (rtmpchunk) and once through gortmplib's Reader alone: the
// packets on the bus must be the same.
func TestRTMPFastPathSamePackets(t *testing.T) {
	b, e := startBusEdge(t, nil)
	for _, name := range []string{"h264_aac.ts", "h265.ts"} {
		t.Run(name, func(t *testing.T) {
			c := loadClip(t, name)
			run := func(path string, slow bool) *collector {
				e.rtmp.slow.Store(slow)
				before := e.rtmp.fastFrames.Load()
				col := collect(t, b.nc, path)
				cl, err := publishRTMP(t, e.RTMPAddr(), path, c)
				if err != nil {
					t.Fatal(err)
				}
				testkit.WaitFor(t, 10*time.Second, "all frames", func() bool { return videoCount(col.packets()) >= len(c.video) })
				cl.Close()
				testkit.WaitFor(t, 5*time.Second, "record removed", recordGone(b, path))
				fast := e.rtmp.fastFrames.Load() - before
				if slow && fast != 0 || !slow && fast < uint64(len(c.video)) {
					t.Fatalf("slow %v: %d frames on the fast path (%d video frames)", slow, fast, len(c.video))
				}
				return col
			}
			fast := run("rtmp/fast", false)
			slow := run("rtmp/slow", true)
			testkit.WaitFor(t, 5*time.Second, "as many packets", func() bool { return len(fast.packets()) == len(slow.packets()) })
			fp, sp := fast.packets(), slow.packets()
			for i := range sp {
				f, s := fp[i], sp[i]
				if f.Track != s.Track || f.Codec != s.Codec || f.Flags != s.Flags || f.PTS != s.PTS || f.DTS != s.DTS ||
					!bytes.Equal(f.Payload, s.Payload) {
					t.Fatalf("packet %d: fast path %v track %d pts %d dts %d %d bytes, gortmplib %v track %d pts %d dts %d %d bytes",
						i, f.Codec, f.Track, f.PTS, f.DTS, len(f.Payload), s.Codec, s.Track, s.PTS, s.DTS, len(s.Payload))
				}
			}
			audio := 0
			for _, p := range fp {
				if p.Codec == media.CodecAAC {
					audio++
				}
			}
			if name == "h264_aac.ts" && audio == 0 {
				t.Fatal("no audio packets")
			}
		})
	}
}

// startRTMPPublication starts an edge and publishes h264_aac.ts to it on
// path over RTMP, leaving the connection open.
func startRTMPPublication(t *testing.T, path string) (*Edge, *clip, *gortmplib.Client) {
	t.Helper()
	_, e := startBusEdge(t, nil)
	c := loadClip(t, "h264_aac.ts")
	cl, err := publishRTMP(t, e.RTMPAddr(), path, c)
	if err != nil {
		t.Fatal(err)
	}
	return e, c, cl
}

// TestRTMPAcknowledgements: the publisher sets a window of 2.5 MB (as
// gortmplib's client and OBS do); after more than that, the edge must
// acknowledge the bytes it received on the real connection, or a client
// that waits for acknowledgements stalls.
func TestRTMPAcknowledgements(t *testing.T) {
	_, c, cl := startRTMPPublication(t, "live/ack")
	// 3 MB more in 100 kB frames, on the fast path.
	nalu := make([]byte, 100_000)
	nalu[0] = 0x01 // a non-IDR slice
	au, err := h264.AVCC([][]byte{nalu}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Duration(c.video[len(c.video)-1].dts) * time.Second / 90000
	for i := range 30 {
		dts := start + time.Duration(i+1)*40*time.Millisecond
		if err := cl.Write(&message.Video{ChunkStreamID: message.VideoChunkStreamID, MessageStreamID: 0x1000000,
			Codec: message.CodecH264, Type: message.VideoTypeAU, DTS: dts, AU: au}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan uint32, 1)
	go func() {
		for {
			msg, err := cl.Read()
			if err != nil {
				close(got)
				return
			}
			if a, ok := msg.(*message.Acknowledge); ok {
				got <- a.Value
				return
			}
		}
	}()
	select {
	case v, ok := <-got:
		if !ok || v <= 2_500_000 {
			t.Fatalf("acknowledgement %d (ok %v), want one past the 2.5 MB window", v, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no acknowledgement after 3 MB")
	}
}

// TestRTMPProtocolErrorEnds: a chunk stream broken past repair (a fmt 1
// chunk on a chunk stream that never had a fmt 0) ends the publication at
// once, counted as one undecodable message, not as a run of them.
func TestRTMPProtocolErrorEnds(t *testing.T) {
	e, _, cl := startRTMPPublication(t, "live/broken")
	if _, err := cl.NetConn().Write([]byte{1<<6 | 40, 0, 0, 0, 0, 0, 1, 9}); err != nil {
		t.Fatal(err)
	}
	decodeErrors := func() float64 {
		return testkit.MetricSum(t, e.Metrics.(prometheus.Gatherer), "streamgrid_edge_decode_errors_total", map[string]string{"protocol": "rtmp"})
	}
	testkit.WaitFor(t, 5*time.Second, "the publication to end", func() bool {
		_ = cl.NetConn().SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := cl.Read()
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	})
	if n := decodeErrors(); n != 1 {
		t.Fatalf("%v undecodable messages counted for one broken chunk, want 1", n)
	}
}
