package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testcert"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// Audio tracks clipDesc can describe.
const (
	audioAAC  = "aac"  // the clip's AAC, RFC 3640
	audioLATM = "latm" // the clip's AAC, LATM (RFC 6416)
	audioOpus = "opus" // fake Opus packets
	audioNone = ""
)

// clipDesc is the session description of a clip: its video track (with the
// parameter sets in the SDP) and an audio track.
func clipDesc(c *clip, audio string) *description.Session {
	vps, sps, pps := c.params()
	var video format.Format = &format.H264{PayloadTyp: 96, SPS: sps, PPS: pps, PacketizationMode: 1}
	if c.h265 {
		video = &format.H265{PayloadTyp: 96, VPS: vps, SPS: sps, PPS: pps}
	}
	desc := &description.Session{Medias: []*description.Media{
		{Type: description.MediaTypeVideo, Formats: []format.Format{video}},
	}}
	var af format.Format
	switch audio {
	case audioOpus:
		af = &format.Opus{PayloadTyp: 97, ChannelCount: 2}
	case audioAAC:
		af = &format.MPEG4Audio{PayloadTyp: 97, Config: c.asc, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
	case audioLATM:
		af = &format.MPEG4AudioLATM{PayloadTyp: 97, StreamMuxConfig: &mpeg4audio.StreamMuxConfig{
			Programs: []*mpeg4audio.StreamMuxConfigProgram{{Layers: []*mpeg4audio.StreamMuxConfigLayer{{
				AudioSpecificConfig: c.asc, LatmBufferFullness: 255,
			}}}},
		}}
	}
	if af != nil {
		desc.Medias = append(desc.Medias, &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{af}})
	}
	return desc
}

// rtpWriter sends a clip as RTP: the video track in decode order with its
// presentation timestamps, audio interleaved by time.
type rtpWriter struct {
	c     *clip
	desc  *description.Session
	write func(*description.Media, *rtp.Packet) error
	base  int64 // 90 kHz added to every timestamp
}

func (w *rtpWriter) send() error {
	vm := w.desc.Medias[0]
	var encodeVideo func([][]byte) ([]*rtp.Packet, error)
	switch f := vm.Formats[0].(type) {
	case *format.H264:
		enc, err := f.CreateEncoder()
		if err != nil {
			return err
		}
		encodeVideo = enc.Encode
	case *format.H265:
		enc, err := f.CreateEncoder()
		if err != nil {
			return err
		}
		encodeVideo = enc.Encode
	}
	var encodeAudio func(frame []byte) ([]*rtp.Packet, error)
	audioRate := int64(48000)
	if len(w.desc.Medias) > 1 {
		switch f := w.desc.Medias[1].Formats[0].(type) {
		case *format.MPEG4Audio:
			enc, err := f.CreateEncoder()
			if err != nil {
				return err
			}
			audioRate = int64(f.ClockRate())
			encodeAudio = func(frame []byte) ([]*rtp.Packet, error) { return enc.Encode([][]byte{frame}) }
		case *format.MPEG4AudioLATM:
			enc, err := f.CreateEncoder()
			if err != nil {
				return err
			}
			audioRate = int64(f.ClockRate())
			encodeAudio = func(frame []byte) ([]*rtp.Packet, error) {
				el, err := mpeg4audio.AudioMuxElement{
					StreamMuxConfig: f.StreamMuxConfig,
					Payloads:        [][][][]byte{{{frame}}},
				}.Marshal()
				if err != nil {
					return nil, err
				}
				return enc.Encode(el)
			}
		case *format.Opus:
			enc, err := f.CreateEncoder()
			if err != nil {
				return err
			}
			encodeAudio = func(frame []byte) ([]*rtp.Packet, error) {
				p, err := enc.Encode(frame)
				return []*rtp.Packet{p}, err
			}
		}
	}
	audio := w.c.audio
	if _, ok := w.desc.Medias[len(w.desc.Medias)-1].Formats[0].(*format.Opus); ok {
		// 20 ms Opus packets (a silent-frame TOC byte and filler) over the clip.
		audio = nil
		for pts := int64(0); pts < w.c.video[len(w.c.video)-1].pts; pts += 1800 {
			audio = append(audio, clipAudio{pts: pts, frame: []byte{0xfc, 0xff, 0xfe}})
		}
	}
	ai := 0
	for _, f := range w.c.video {
		for encodeAudio != nil && ai < len(audio) && audio[ai].pts <= f.dts {
			pkts, err := encodeAudio(audio[ai].frame)
			if err != nil {
				return err
			}
			for _, p := range pkts {
				p.Timestamp += uint32((w.base + audio[ai].pts) * audioRate / 90000)
				if err := w.write(w.desc.Medias[1], p); err != nil {
					return err
				}
			}
			ai++
		}
		pkts, err := encodeVideo(f.au)
		if err != nil {
			return err
		}
		for _, p := range pkts {
			p.Timestamp += uint32(w.base + f.pts)
			if err := w.write(vm, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// publishRTSP publishes a clip over RTSP and leaves the session open.
func publishRTSP(t *testing.T, addr net.Addr, path string, proto gortsplib.Protocol, c *clip, audio string) (*gortsplib.Client, error) {
	t.Helper()
	desc := clipDesc(c, audio)
	client := &gortsplib.Client{Protocol: &proto, WriteQueueSize: 4096}
	if err := client.StartRecording("rtsp://"+addr.String()+"/"+path, desc); err != nil {
		return nil, err
	}
	t.Cleanup(client.Close)
	w := &rtpWriter{c: c, desc: desc, write: client.WritePacketRTP, base: 12345}
	if err := w.send(); err != nil {
		t.Fatal(err)
	}
	return client, nil
}

// publishRTMP publishes a clip over RTMP and leaves the connection open.
func publishRTMP(t *testing.T, addr net.Addr, path string, c *clip) (*gortmplib.Client, error) {
	t.Helper()
	return publishRTMPAt(t, addr, path, c, 0)
}

// publishRTMPAt publishes a clip over RTMP with every timestamp shifted by
// offset (the RTMP writer sends them modulo 2^32 ms).
func publishRTMPAt(t *testing.T, addr net.Addr, path string, c *clip, offset time.Duration) (*gortmplib.Client, error) {
	t.Helper()
	return publishRTMPURL(t, "rtmp://"+addr.String()+"/"+path, nil, c, offset)
}

// publishRTMPURL publishes a clip to an rtmp:// or rtmps:// URL (over TLS
// with tlsConf) and leaves the connection open.
func publishRTMPURL(t *testing.T, rawURL string, tlsConf *tls.Config, c *clip, offset time.Duration) (*gortmplib.Client, error) {
	t.Helper()
	cl, err := dialRTMP(t, rawURL, true, tlsConf)
	if err != nil {
		return nil, err
	}
	t.Cleanup(cl.Close)
	if err := writeClipRTMP(cl, c, offset, false, 0); err != nil {
		return nil, err
	}
	return cl, nil
}

func videoCount(pkts []*media.Packet) int {
	n := 0
	for _, p := range pkts {
		if p.Codec.IsVideo() {
			n++
		}
	}
	return n
}

// rejected reads the edge's count of publishers refused on protocol for reason.
func rejected(t *testing.T, e *Edge, protocol, reason string) float64 {
	t.Helper()
	return testkit.MetricSum(t, e.Metrics.(prometheus.Gatherer), "streamgrid_edge_rejected_total",
		map[string]string{"protocol": protocol, "reason": reason})
}

func recordGone(b *testBus, path string) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := b.reg.Stream(ctx, path)
		return errors.Is(err, bus.ErrNotFound)
	}
}

func TestRTSPPublish(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	b, e := startBusEdge(t, nil)

	for _, proto := range []gortsplib.Protocol{gortsplib.ProtocolTCP, gortsplib.ProtocolUDP} {
		t.Run(proto.String(), func(t *testing.T) {
			path := "live/cam-" + strings.ToLower(proto.String())
			col := collect(t, b.nc, path)
			client, err := publishRTSP(t, e.RTSPAddr(), path, proto, c, audioAAC)
			if err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, "all frames on the bus", func() bool { return videoCount(col.packets()) >= len(c.video) })
			pkts := col.packets()
			checkPackets(t, pkts, media.CodecH264, len(c.video))
			audio := len(pkts) - len(c.video)
			if audio < len(c.audio)/2 {
				t.Fatalf("only %d of %d audio frames", audio, len(c.audio))
			}

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			info, err := b.reg.Stream(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Generation != pkts[0].Generation || info.Edge != "edge-1" || info.Protocol != ProtocolRTSP ||
				len(info.Tracks) != 2 || info.Tracks[0].Codec != media.CodecH264 || len(info.Tracks[0].SPS) == 0 ||
				info.Tracks[1].Codec != media.CodecAAC || info.Tracks[1].ClockRate != c.asc.SampleRate ||
				len(info.Tracks[1].AudioConfig) == 0 || info.Tracks[1].Channels != 1 {
				t.Fatalf("registry record %+v", info)
			}

			gop, err := bus.FetchGOP(ctx, b.nc, path)
			if err != nil {
				t.Fatal(err)
			}
			if len(gop) == 0 || !gop[0].Keyframe() || !gop[0].Codec.IsVideo() || gop[0].Generation != info.Generation {
				t.Fatalf("GOP of %d packets, first %+v", len(gop), gop[0])
			}

			st := e.Streams()
			if len(st) != 1 || st[0].Path != path || st[0].Packets != uint64(len(pkts)) || st[0].Bytes == 0 ||
				st[0].Tracks[0].Width != 64 || st[0].Tracks[0].Height != 64 {
				t.Fatalf("status %+v", st)
			}

			// A second publisher on the live path is refused with a reason.
			_, err = publishRTSP(t, e.RTSPAddr(), path, proto, c, audioAAC)
			var bad liberrors.ErrClientBadStatusCode
			if !errors.As(err, &bad) || bad.Code != statusConflict {
				t.Fatalf("second publisher: %v", err)
			}

			client.Close()
			testkit.WaitFor(t, 5*time.Second, "record removed", recordGone(b, path))
			testkit.WaitFor(t, 5*time.Second, "stream gone", func() bool { return len(e.Streams()) == 0 })
		})
	}
	if v := rejected(t, e, "rtsp", "busy"); v != 2 {
		t.Fatalf("rejected busy = %v", v)
	}
}

// TestRTSPPublishCodecs: H.265 video with Opus audio, and AAC sent as LATM,
// reach the bus with their codecs.
func TestRTSPPublishCodecs(t *testing.T) {
	for _, tc := range []struct {
		name, clip, audio, path string
		video, audioCodec       media.Codec
		minAudio                func(c *clip) int // audio packets that must arrive
	}{
		{"H265Opus", "h265.ts", audioOpus, "live/hevc", media.CodecH265, media.CodecOpus, func(*clip) int { return 1 }},
		{"LATM", "h264_aac.ts", audioLATM, "live/latm", media.CodecH264, media.CodecAAC, func(c *clip) int { return len(c.audio) / 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := loadClip(t, tc.clip)
			b, e := startBusEdge(t, nil)
			col := collect(t, b.nc, tc.path)
			if _, err := publishRTSP(t, e.RTSPAddr(), tc.path, gortsplib.ProtocolTCP, c, tc.audio); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, "all frames", func() bool { return videoCount(col.packets()) >= len(c.video) })
			pkts := col.packets()
			checkPackets(t, pkts, tc.video, len(c.video))
			audio := 0
			for _, p := range pkts {
				if p.Codec == tc.audioCodec {
					audio++
				}
			}
			if want := tc.minAudio(c); audio < want {
				t.Fatalf("%d %v packets, want %d or more (the clip has %d audio frames)", audio, tc.audioCodec, want, len(c.audio))
			}
		})
	}
}

func TestRTMPPublish(t *testing.T) {
	b, e := startBusEdge(t, nil)
	for _, name := range []string{"h264_aac.ts", "h265.ts"} {
		t.Run(name, func(t *testing.T) {
			c := loadClip(t, name)
			codec := media.CodecH264
			if c.h265 {
				codec = media.CodecH265
			}
			path := "rtmp/c1.live"
			col := collect(t, b.nc, path)
			cl, err := publishRTMP(t, e.RTMPAddr(), path, c)
			if err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, "all frames", func() bool { return videoCount(col.packets()) >= len(c.video) })
			pkts := col.packets()
			checkPackets(t, pkts, codec, len(c.video))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			info, err := b.reg.Stream(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Protocol != ProtocolRTMP || info.Generation != pkts[0].Generation || info.Tracks[0].Codec != codec {
				t.Fatalf("registry record %+v", info)
			}

			// A second publisher is refused with a reason.
			_, err = publishRTMP(t, e.RTMPAddr(), path, c)
			if err == nil || !strings.Contains(err.Error(), "already live") {
				t.Fatalf("second publisher: %v", err)
			}

			cl.Close()
			testkit.WaitFor(t, 5*time.Second, "record removed", recordGone(b, path))
		})
	}
}

// TestRTMPTimestampWrap publishes across the 2^32 ms wrap of RTMP
// timestamps (49.7 days into a stream): the bus timeline must go on.
func TestRTMPTimestampWrap(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	b, e := startBusEdge(t, nil)
	col := collect(t, b.nc, "live/long")
	// gortmplib reads 2 s of media before it reports the tracks, so the wrap
	// comes 2.5 s into the clip, after that.
	if _, err := publishRTMPAt(t, e.RTMPAddr(), "live/long", c, (1<<32-2500)*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "all frames", func() bool { return videoCount(col.packets()) >= len(c.video) })
	pkts := col.packets()
	checkPackets(t, pkts, media.CodecH264, len(c.video))
	last := pkts[len(pkts)-1]
	if last.DTS > 4*90000 {
		t.Fatalf("timeline jumped: last DTS %d", last.DTS)
	}
	if n := testkit.MetricSum(t, e.Metrics.(prometheus.Gatherer), "streamgrid_edge_timestamp_discontinuities_total", nil); n != 0 {
		t.Fatalf("%v discontinuities", n)
	}
}

func TestHostilePathsRefused(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	_, e := startBusEdge(t, nil)
	for _, p := range []string{"live/ca*m", "live/%2e%2e/etc", "live/a%20b", "live/x%3E"} {
		_, err := publishRTSP(t, e.RTSPAddr(), p, gortsplib.ProtocolTCP, c, audioAAC)
		var bad liberrors.ErrClientBadStatusCode
		if !errors.As(err, &bad) || bad.Code != 400 {
			t.Fatalf("rtsp %q: %v", p, err)
		}
	}
	for _, p := range []string{"live/ca*m", "live/%2e%2e/etc", "li$ve/x"} {
		_, _ = publishRTMP(t, e.RTMPAddr(), p, c)
	}
	testkit.WaitFor(t, 5*time.Second, "rtmp refusals counted", func() bool {
		return rejected(t, e, "rtmp", "bad_path") == 3
	})
	if n := rejected(t, e, "rtsp", "bad_path"); n != 4 {
		t.Fatalf("rtsp bad_path = %v", n)
	}
	if len(e.Streams()) != 0 {
		t.Fatalf("streams: %+v", e.Streams())
	}
}

// TestGarbageInput sends random bytes to both ports: the edge drops those
// connections, counts them and goes on serving publishers.
func TestGarbageInput(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	b, e := startBusEdge(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, addr := range []net.Addr{e.RTSPAddr(), e.RTMPAddr()} {
		for range 3 {
			garbage := make([]byte, 4096)
			for i := range garbage {
				garbage[i] = byte(rng.Uint32())
			}
			conn, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			_, _ = conn.Write(garbage) // the edge may close before reading it all
			_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			_, err = io.Copy(io.Discard, conn)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%s: connection not closed by the edge", addr)
			}
			conn.Close()
		}
	}
	testkit.WaitFor(t, 5*time.Second, "garbage counted", func() bool {
		return rejected(t, e, "rtmp", "handshake") == 3 &&
			rejected(t, e, "rtsp", "handshake") == 3
	})

	colA := collect(t, b.nc, "live/a")
	colB := collect(t, b.nc, "live/b")
	if _, err := publishRTSP(t, e.RTSPAddr(), "live/a", gortsplib.ProtocolTCP, c, audioAAC); err != nil {
		t.Fatal(err)
	}
	if _, err := publishRTMP(t, e.RTMPAddr(), "live/b", c); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "both publishers on the bus", func() bool {
		return videoCount(colA.packets()) == len(c.video) && videoCount(colB.packets()) == len(c.video)
	})
}

func TestKickAndPlayRefused(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	b, e := startBusEdge(t, nil)
	if _, err := publishRTSP(t, e.RTSPAddr(), "live/k", gortsplib.ProtocolTCP, c, audioAAC); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "stream live", func() bool { return len(e.Streams()) == 1 })

	// Readers are refused: playback is HLS.
	reader := &gortsplib.Client{Scheme: "rtsp", Host: e.RTSPAddr().String()}
	u := "rtsp://" + e.RTSPAddr().String() + "/live/k"
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	bu, err := base.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = reader.Describe(bu)
	reader.Close()
	var bad liberrors.ErrClientBadStatusCode
	if !errors.As(err, &bad) || bad.Code != 404 {
		t.Fatalf("describe: %v", err)
	}

	if e.Kick("live/none") {
		t.Fatal("kicked a stream that does not exist")
	}
	if !e.Kick("live/k") {
		t.Fatal("kick failed")
	}
	testkit.WaitFor(t, 5*time.Second, "stream gone", func() bool { return len(e.Streams()) == 0 })
	testkit.WaitFor(t, 5*time.Second, "record removed", recordGone(b, "live/k"))
}

func TestStartFailsOnPortClash(t *testing.T) {
	b := startBus(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	freePort := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	certFile, keyFile, _ := testcert.Write(t, t.TempDir())
	for _, clash := range []string{"rtmp", "rtsp", "rtmps", "rtsps"} {
		t.Run(clash, func(t *testing.T) {
			e := newEdge(t, b, "edge-1", nil)
			e.UDPRTPAddress, e.UDPRTCPAddress = "", ""
			e.TLSCert, e.TLSKey = certFile, keyFile
			// Every listener on a free port but the clashing one.
			others := map[string]*string{"rtmp": &e.RTMPAddress, "rtsp": &e.RTSPAddress,
				"rtmps": &e.RTMPSAddress, "rtsps": &e.RTSPSAddress}
			var free []string
			for name, a := range others {
				if name == clash {
					*a = busy.Addr().String()
					continue
				}
				*a = freePort()
				free = append(free, *a)
			}
			reg := e.Metrics
			// On a busy port.
			testkit.StartRefused(t, e.Start, e.Close)
			e.Close() // harmless
			// Nothing is left: the other ports are free again and the
			// metrics can be registered once more.
			for _, other := range free {
				l, err := net.Listen("tcp", other)
				if err != nil {
					t.Fatalf("port %s still held: %v", other, err)
				}
				l.Close()
			}
			e2 := newEdge(t, b, "edge-1", nil)
			e2.Metrics = reg
			e2.UDPRTPAddress, e2.UDPRTCPAddress = "", ""
			startEdge(t, e2)
			e2.Close()
		})
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	b := startBus(t)
	snapshot := goleak.IgnoreCurrent()
	e := newEdge(t, b, "edge-1", nil)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	col := collect(t, b.nc, "live/a")
	rc, err := publishRTSP(t, e.RTSPAddr(), "live/a", gortsplib.ProtocolUDP, c, audioAAC)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := publishRTMP(t, e.RTMPAddr(), "live/b", c)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "media", func() bool {
		return videoCount(col.packets()) == len(c.video) && len(e.Streams()) == 2
	})
	e.Close()
	e.Close()
	rc.Close()
	mc.Close()
	col.sub.Close()
	goleak.VerifyNone(t, snapshot)
}

// TestStalledClientsDropped connects to both ports and sends nothing (or
// half a handshake): the edge drops the connections after ReadTimeout.
func TestStalledClientsDropped(t *testing.T) {
	_, e := startBusEdge(t, func(e *Edge) { e.ReadTimeout = 500 * time.Millisecond })
	for _, tc := range []struct {
		addr  net.Addr
		hello []byte
	}{
		{e.RTSPAddr(), nil},
		{e.RTSPAddr(), []byte("OPTIONS rtsp://x/ RTSP/1.0\r\nCSe")},
		{e.RTMPAddr(), nil},
		{e.RTMPAddr(), []byte{3, 0, 0, 0}},
	} {
		conn, err := net.Dial("tcp", tc.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(tc.hello); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: stalled connection kept open", tc.addr)
		}
		conn.Close()
	}
	testkit.WaitFor(t, 5*time.Second, "stalls counted", func() bool {
		return rejected(t, e, "rtmp", "handshake") == 2 &&
			rejected(t, e, "rtsp", "handshake") >= 1
	})
}

// TestRTSPTracksAndInBandParams: unsupported tracks are ignored (a stream
// with nothing else is refused), and parameter sets that arrive only in-band
// reach the registry record.
func TestRTSPTracksAndInBandParams(t *testing.T) {
	c := loadClip(t, "h264_aac.ts")
	b, e := startBusEdge(t, nil)

	g711 := &description.Media{Type: description.MediaTypeAudio, Formats: []format.Format{&format.G711{PayloadTyp: 8, MULaw: false, SampleRate: 8000, ChannelCount: 1}}}
	only := &gortsplib.Client{}
	err := only.StartRecording("rtsp://"+e.RTSPAddr().String()+"/live/g711", &description.Session{Medias: []*description.Media{g711}})
	var bad liberrors.ErrClientBadStatusCode
	if !errors.As(err, &bad) || bad.Code != 415 {
		t.Fatalf("G711-only stream: %v", err)
	}

	// H264 without sprop-parameter-sets, plus G711.
	video := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{&format.H264{PayloadTyp: 96, PacketizationMode: 1}}}
	desc := &description.Session{Medias: []*description.Media{video, g711}}
	col := collect(t, b.nc, "live/inband")
	client := &gortsplib.Client{}
	if err := client.StartRecording("rtsp://"+e.RTSPAddr().String()+"/live/inband", desc); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := b.reg.Stream(ctx, "live/inband")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Tracks) != 1 || len(info.Tracks[0].SPS) != 0 {
		t.Fatalf("record before media: %+v", info.Tracks)
	}
	w := &rtpWriter{c: &clip{video: c.video}, desc: &description.Session{Medias: []*description.Media{video}}, write: client.WritePacketRTP}
	if err := w.send(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "frames", func() bool { return videoCount(col.packets()) == len(c.video) })
	checkPackets(t, col.packets(), media.CodecH264, len(c.video))
	_, sps, pps := c.params()
	testkit.WaitFor(t, 5*time.Second, "parameter sets in the record", func() bool {
		info, err := b.reg.Stream(ctx, "live/inband")
		return err == nil && string(info.Tracks[0].SPS) == string(sps) && string(info.Tracks[0].PPS) == string(pps)
	})
}

func TestRTMPPlayRefused(t *testing.T) {
	_, e := startBusEdge(t, nil)
	if cl, err := dialRTMP(t, "rtmp://"+e.RTMPAddr().String()+"/live/cam1", false, nil); err == nil {
		cl.Close()
		t.Fatal("play accepted")
	}
	if n := rejected(t, e, "rtmp", "play"); n != 1 {
		t.Fatalf("play rejections = %v", n)
	}
}
