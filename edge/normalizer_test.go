package edge

import (
	"bytes"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
)

func TestMsUnwrapper(t *testing.T) {
	const top = 1<<32 - 1
	tests := []struct {
		name string
		in   []uint32
		want []int64
	}{
		{"starts where the source starts", []uint32{5000, 5040, 5080}, []int64{5000, 5040, 5080}},
		{"crosses the 49.7-day wrap", []uint32{top - 40, top, 39, 79}, []int64{top - 40, top, top + 40, top + 80}},
		{"small backward step stays small", []uint32{1000, 980, 1020}, []int64{1000, 980, 1020}},
		{"backward step across the wrap", []uint32{10, top - 9, 30}, []int64{10, -10, 30}},
		{"second wrap", []uint32{top, 0, 1 << 30, 2 << 30, 3 << 30, top, 0}, []int64{top, 1 << 32, 1<<32 + 1<<30, 1<<32 + 2<<30, 1<<32 + 3<<30, 1<<33 - 1, 1 << 33}},
		{"extended timestamps (above 24 bits)", []uint32{0xFFFFF0, 0x1000010}, []int64{0xFFFFF0, 0x1000010}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var u msUnwrapper
			for i, ts := range tc.in {
				if got := u.unwrap(ts); got != tc.want[i] {
					t.Fatalf("step %d: unwrap(%d) = %d, want %d", i, ts, got, tc.want[i])
				}
			}
		})
	}
}

// NAL units for the table tests (only their type byte matters there).
var (
	tSPS  = []byte{0x67, 0x42, 0x00, 0x1e}
	tSPS2 = []byte{0x67, 0x42, 0x00, 0x28}
	tPPS  = []byte{0x68, 0xce, 0x3c, 0x80}
	tPPS2 = []byte{0x68, 0xce, 0x3c, 0x81}
	tAUD  = []byte{0x09, 0xf0}
	tSEI  = []byte{0x06, 0x05, 0x01}
	tIDR  = []byte{0x65, 0x88, 0x84}
	tP    = []byte{0x41, 0x9a, 0x02}
	tFill = []byte{0x0c, 0xff, 0xff}

	tVPS5 = []byte{0x40, 0x01, 0x0c}
	tSPS5 = []byte{0x42, 0x01, 0x01}
	tPPS5 = []byte{0x44, 0x01, 0xc1}
	tIDR5 = []byte{0x26, 0x01, 0xaf}
	tAUD5 = []byte{0x46, 0x01, 0x50}
)

func TestParameterSetInsertion(t *testing.T) {
	tests := []struct {
		name    string
		codec   media.Codec
		info    bus.TrackInfo // parameter sets known from the SDP / sequence header
		au      [][]byte
		want    [][]byte // nil: dropped
		reason  dropReason
		key     bool
		changed bool
	}{
		{
			name: "IDR alone gets SPS and PPS", codec: media.CodecH264,
			info: bus.TrackInfo{SPS: tSPS, PPS: tPPS},
			au:   [][]byte{tIDR}, want: [][]byte{tSPS, tPPS, tIDR}, key: true,
		},
		{
			name: "delimiter and filler dropped, SEI kept after the parameter sets", codec: media.CodecH264,
			info: bus.TrackInfo{SPS: tSPS, PPS: tPPS},
			au:   [][]byte{tAUD, tSEI, tIDR, tFill}, want: [][]byte{tSPS, tPPS, tSEI, tIDR}, key: true,
		},
		{
			name: "only the missing PPS added, in order", codec: media.CodecH264,
			info: bus.TrackInfo{SPS: tSPS, PPS: tPPS},
			au:   [][]byte{tSEI, tSPS, tIDR}, want: [][]byte{tSPS, tPPS, tSEI, tIDR}, key: true,
		},
		{
			name: "complete keyframe untouched", codec: media.CodecH264,
			info: bus.TrackInfo{SPS: tSPS, PPS: tPPS},
			au:   [][]byte{tSPS, tPPS, tIDR}, want: [][]byte{tSPS, tPPS, tIDR}, key: true,
		},
		{
			name: "in-band SPS replaces the SDP one", codec: media.CodecH264,
			info: bus.TrackInfo{SPS: tSPS, PPS: tPPS},
			au:   [][]byte{tSPS2, tIDR}, want: [][]byte{tSPS2, tPPS, tIDR}, key: true, changed: true,
		},
		{
			name: "two PPS kept", codec: media.CodecH264,
			info: bus.TrackInfo{SPS: tSPS, PPS: tPPS},
			au:   [][]byte{tPPS, tPPS2, tIDR}, want: [][]byte{tSPS, tPPS, tPPS2, tIDR}, key: true, changed: true,
		},
		{
			name: "keyframe without any known SPS dropped", codec: media.CodecH264,
			info: bus.TrackInfo{},
			au:   [][]byte{tIDR}, reason: dropNoParams,
		},
		{
			name: "in-band parameter sets alone are enough", codec: media.CodecH264,
			info: bus.TrackInfo{},
			au:   [][]byte{tAUD, tSPS, tPPS, tIDR}, want: [][]byte{tSPS, tPPS, tIDR}, key: true, changed: true,
		},
		{
			name: "parameter sets without a picture are not published", codec: media.CodecH264,
			info: bus.TrackInfo{SPS: tSPS, PPS: tPPS},
			au:   [][]byte{tSPS, tPPS}, reason: dropNoPicture,
		},
		{
			name: "H265 IDR gets VPS, SPS and PPS", codec: media.CodecH265,
			info: bus.TrackInfo{VPS: tVPS5, SPS: tSPS5, PPS: tPPS5},
			au:   [][]byte{tAUD5, tIDR5}, want: [][]byte{tVPS5, tSPS5, tPPS5, tIDR5}, key: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info := tc.info
			info.Codec, info.ClockRate = tc.codec, 90000
			n, err := newNormalizer([]bus.TrackInfo{info}, 7)
			if err != nil {
				t.Fatal(err)
			}
			n.trackInfos(true)
			pkt, reason := n.pushVideo(0, 3000, 3000, true, tc.au, time.Now())
			if tc.want == nil {
				if pkt != nil || reason != tc.reason {
					t.Fatalf("got packet %v, reason %v; want drop %v", pkt != nil, reason, tc.reason)
				}
				return
			}
			if pkt == nil {
				t.Fatalf("dropped: %v", reason)
			}
			var got h264.AVCC
			if err := got.Unmarshal(pkt.Payload); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d NAL units %x, want %x", len(got), got, tc.want)
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want[i]) {
					t.Fatalf("NAL unit %d = %x, want %x", i, got[i], tc.want[i])
				}
			}
			if pkt.Keyframe() != tc.key {
				t.Fatalf("keyframe = %v", pkt.Keyframe())
			}
			if pkt.PTS != 0 || pkt.DTS != 0 || pkt.Seq != 0 || pkt.Generation != 7 {
				t.Fatalf("first packet pts %d dts %d seq %d gen %d", pkt.PTS, pkt.DTS, pkt.Seq, pkt.Generation)
			}
			if _, changed := n.trackInfos(false); changed != tc.changed {
				t.Fatalf("params changed = %v, want %v", changed, tc.changed)
			}
		})
	}
}

func TestNormalizerGating(t *testing.T) {
	infos := []bus.TrackInfo{
		{Codec: media.CodecH264, ClockRate: 90000, SPS: tSPS, PPS: tPPS},
		{Codec: media.CodecAAC, ClockRate: 48000},
	}
	n, err := newNormalizer(infos, 1)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Source timeline starts at 10 s.
	if _, r := n.pushAudio(1, 480000, []byte{1}, now); r != dropNotStarted {
		t.Fatalf("audio before video: %v", r)
	}
	if _, r := n.pushVideo(0, 900000, 900000, true, [][]byte{tP}, now); r != dropNotStarted {
		t.Fatalf("P-frame before the keyframe: %v", r)
	}
	k, r := n.pushVideo(0, 903600, 900000, true, [][]byte{tIDR}, now)
	if k == nil {
		t.Fatalf("keyframe dropped: %v", r)
	}
	if k.DTS != 0 || k.PTS != 3600 || k.Seq != 0 {
		t.Fatalf("keyframe pts %d dts %d seq %d", k.PTS, k.DTS, k.Seq)
	}
	// Audio from before the keyframe's DTS is dropped; after it, kept and rebased.
	if _, r := n.pushAudio(1, 479000, []byte{1}, now); r != dropNotStarted {
		t.Fatalf("early audio: %v", r)
	}
	a, _ := n.pushAudio(1, 480000+1024, []byte{1}, now)
	if a == nil || a.PTS != 1024 || a.DTS != a.PTS || !a.Keyframe() || a.Seq != 1 {
		t.Fatalf("audio packet %+v", a)
	}
	// DTS stays strictly increasing even when the container repeats one.
	p1, _ := n.pushVideo(0, 907200, 900000, true, [][]byte{tP}, now)
	if p1 == nil || p1.DTS != 1 || p1.PTS != 7200 {
		t.Fatalf("repeated DTS not bumped: %+v", p1)
	}
	// An oversized unit is dropped, and so is the rest of its GOP.
	huge := make([]byte, maxAUSize+1)
	huge[0] = 0x41
	if _, r := n.pushVideo(0, 910800, 903600, true, [][]byte{huge}, now); r != dropOversized {
		t.Fatalf("oversized: %v", r)
	}
	if _, r := n.pushVideo(0, 914400, 907200, true, [][]byte{tP}, now); r != dropWaitKeyframe {
		t.Fatalf("after oversized: %v", r)
	}
	if k2, _ := n.pushVideo(0, 918000, 910800, true, [][]byte{tIDR}, now); k2 == nil || !k2.Keyframe() {
		t.Fatal("next keyframe not published")
	}
}

func TestNormalizerDiscontinuity(t *testing.T) {
	n, err := newNormalizer([]bus.TrackInfo{{Codec: media.CodecOpus, ClockRate: 48000}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Unix(1000, 0)
	step := 20 * time.Millisecond
	var last *media.Packet
	push := func(pts int64) *media.Packet {
		p, r := n.pushAudio(0, pts, []byte{0xfc}, wall)
		if p == nil {
			t.Fatalf("pts %d dropped: %v", pts, r)
		}
		if last != nil && p.PTS <= last.PTS {
			t.Fatalf("pts went from %d to %d", last.PTS, p.PTS)
		}
		last = p
		wall = wall.Add(step)
		return p
	}
	for i := range 10 {
		if p := push(int64(i) * 960); p.Flags&media.FlagDiscontinuity != 0 {
			t.Fatal("unexpected discontinuity")
		}
	}
	// The source restarts its clock (camera reboot): 10 s back.
	p := push(9*960 - 480000)
	if p.Flags&media.FlagDiscontinuity == 0 || p.PTS != 9*960+960 {
		t.Fatalf("backward jump: pts %d flags %b", p.PTS, p.Flags)
	}
	push(10*960 - 480000)
	// A jump 1 h ahead while only 20 ms passed.
	p = push(11*960 - 480000 + 48000*3600)
	if p.Flags&media.FlagDiscontinuity == 0 || p.PTS != 12*960 {
		t.Fatalf("forward jump: pts %d flags %b", p.PTS, p.Flags)
	}
	// A gap that matches the wall clock is kept as it is.
	wall = wall.Add(30 * time.Second)
	p = push(12*960 - 480000 + 48000*3600 + 48000*30)
	if p.Flags&media.FlagDiscontinuity != 0 || p.PTS != 13*960+48000*30 {
		t.Fatalf("real gap: pts %d flags %b", p.PTS, p.Flags)
	}
	if n.Discontinuities != 2 {
		t.Fatalf("discontinuities = %d", n.Discontinuities)
	}
}

// TestNormalizerClip runs a real H264 stream with B-frames and AAC through
// the normaliser, with the parameter sets only "in the SDP".
func TestNormalizerClip(t *testing.T) {
	for _, name := range []string{"h264_aac.ts", "h265.ts"} {
		t.Run(name, func(t *testing.T) {
			c := loadClip(t, name)
			vps, sps, pps := c.params()
			codec := media.CodecH264
			if c.h265 {
				codec = media.CodecH265
			}
			infos := []bus.TrackInfo{{Codec: codec, ClockRate: 90000, VPS: vps, SPS: sps, PPS: pps}}
			if c.asc != nil {
				infos = append(infos, bus.TrackInfo{Codec: media.CodecAAC, ClockRate: c.asc.SampleRate})
			}
			n, err := newNormalizer(infos, 1)
			if err != nil {
				t.Fatal(err)
			}
			var out []*media.Packet
			ai := 0
			now := time.Now()
			for _, f := range c.video {
				for ai < len(c.audio) && c.audio[ai].pts <= f.dts {
					if p, _ := n.pushAudio(1, (1_000_000+c.audio[ai].pts)*int64(c.asc.SampleRate)/90000, c.audio[ai].frame, now); p != nil {
						out = append(out, p)
					}
					ai++
				}
				var au [][]byte
				for _, nalu := range f.au {
					if k := classify(codec, nalu); k != nalSPS && k != nalPPS && k != nalVPS {
						au = append(au, nalu)
					}
				}
				p, r := n.pushVideo(0, 1_000_000+f.pts, 0, false, au, now)
				if p == nil {
					t.Fatalf("frame dropped: %v", r)
				}
				out = append(out, p)
			}
			checkPackets(t, out, codec, len(c.video))
		})
	}
}

// checkPackets checks the bus-level promises on one generation's packets.
func checkPackets(t *testing.T, pkts []*media.Packet, codec media.Codec, wantVideo int) {
	t.Helper()
	if len(pkts) == 0 {
		t.Fatal("no packets")
	}
	if !pkts[0].Codec.IsVideo() || !pkts[0].Keyframe() || pkts[0].DTS != 0 {
		t.Fatalf("first packet: codec %v key %v dts %d", pkts[0].Codec, pkts[0].Keyframe(), pkts[0].DTS)
	}
	lastDTS := map[uint8]int64{}
	video, keyframes := 0, 0
	for i, p := range pkts {
		if p.Seq != pkts[0].Seq+uint64(i) {
			t.Fatalf("packet %d: seq %d", i, p.Seq)
		}
		if p.Generation != pkts[0].Generation {
			t.Fatalf("packet %d: generation changed", i)
		}
		if last, ok := lastDTS[p.Track]; ok && p.DTS <= last {
			t.Fatalf("packet %d (track %d): DTS %d after %d", i, p.Track, p.DTS, last)
		}
		lastDTS[p.Track] = p.DTS
		if p.PTS < p.DTS {
			t.Fatalf("packet %d: PTS %d < DTS %d", i, p.PTS, p.DTS)
		}
		if !p.Codec.IsVideo() {
			continue
		}
		if p.Codec != codec {
			t.Fatalf("codec %v", p.Codec)
		}
		video++
		var au h264.AVCC
		if err := au.Unmarshal(p.Payload); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !p.Keyframe() {
			continue
		}
		keyframes++
		var has [3]bool
		for _, nalu := range au {
			switch classify(codec, nalu) {
			case nalVPS:
				has[0] = true
			case nalSPS:
				has[1] = true
			case nalPPS:
				has[2] = true
			case nalDrop:
				t.Fatalf("packet %d: delimiter left in", i)
			}
		}
		if !has[1] || !has[2] || (codec == media.CodecH265 && !has[0]) {
			t.Fatalf("keyframe %d lacks parameter sets", i)
		}
	}
	if wantVideo > 0 && video != wantVideo {
		t.Fatalf("%d video packets, want %d", video, wantVideo)
	}
	if keyframes < 2 {
		t.Fatalf("%d keyframes", keyframes)
	}
}

// FuzzNormalizer feeds arbitrary NAL units (split on 0x00 0x00 0x01) to the
// normaliser: it must never panic, and what it emits must keep its promises.
func FuzzNormalizer(f *testing.F) {
	c := loadClip(f, "h264_aac.ts")
	for _, fr := range c.video[:6] {
		b, _ := h264.AnnexB(fr.au).Marshal()
		f.Add(b, false, uint16(3000))
	}
	c5 := loadClip(f, "h265.ts")
	for _, fr := range c5.video[:4] {
		b, _ := h264.AnnexB(fr.au).Marshal()
		f.Add(b, true, uint16(3000))
	}
	f.Fuzz(func(t *testing.T, data []byte, hevc bool, step uint16) {
		codec := media.CodecH264
		if hevc {
			codec = media.CodecH265
		}
		n, err := newNormalizer([]bus.TrackInfo{{Codec: codec, ClockRate: 90000}}, 1)
		if err != nil {
			t.Fatal(err)
		}
		units := bytes.Split(data, []byte{0, 0, 1})
		now := time.Now()
		var last *media.Packet
		pts := int64(0)
		// Push the same bytes a few times as consecutive units, and
		// every unit on its own.
		feed := [][][]byte{units, units, units}
		for _, u := range units {
			feed = append(feed, [][]byte{u})
		}
		for _, au := range feed {
			pts += int64(step) - 1000
			p, _ := n.pushVideo(0, pts, 0, false, au, now)
			if p == nil {
				continue
			}
			if last != nil && p.DTS <= last.DTS {
				t.Fatalf("DTS %d after %d", p.DTS, last.DTS)
			}
			if p.PTS < p.DTS {
				t.Fatalf("PTS %d < DTS %d", p.PTS, p.DTS)
			}
			var avcc h264.AVCC
			if err := avcc.Unmarshal(p.Payload); err != nil {
				t.Fatalf("emitted unit does not parse: %v", err)
			}
			last = p
		}
	})
}
