package testmedia

import (
	"bytes"
	"encoding/binary"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// seiTestTimes include values whose big-endian bytes hold 00 00 0x runs, which
// need emulation prevention.
var seiTestTimes = []time.Time{
	time.Unix(0, 0),
	time.Unix(0, 1),
	time.Unix(0, 0x0000000300000000),
	time.Unix(0, 0x0100000200000001),
	time.Unix(0, -1),
	time.Unix(1_790_000_000, 123_456_789),
	time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC),
}

func TestSEIRoundTrip(t *testing.T) {
	for _, ts := range seiTestTimes {
		nalu := MarshalSEITimestamp(ts)
		if nalu[0] != 0x06 {
			t.Errorf("%v: NAL header %#x, want 0x06", ts, nalu[0])
		}
		if nalu[len(nalu)-1] != 0x80 {
			t.Errorf("%v: missing rbsp trailing bits", ts)
		}
		for i := 2; i < len(nalu); i++ {
			if nalu[i-2] == 0 && nalu[i-1] == 0 && nalu[i] < 3 {
				t.Errorf("%v: start code emulation at %d in %x", ts, i, nalu)
			}
		}
		if !bytes.Equal(h264.EmulationPreventionRemove(nalu), unescapedSEI(ts)) {
			t.Errorf("%v: %x does not unescape to the plain SEI", ts, nalu)
		}
		got, ok := ParseSEITimestamp(nalu)
		if !ok || !got.Equal(ts) {
			t.Errorf("%v: parsed %v %v", ts, got, ok)
		}
	}
}

func unescapedSEI(ts time.Time) []byte {
	b := []byte{0x06, 5, 24}
	b = append(b, seiUUID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(ts.UnixNano()))
	return append(b, 0x80)
}

func TestSEIEmulationPreventionNeeded(t *testing.T) {
	ts := time.Unix(0, 0x0000000300000000)
	nalu := MarshalSEITimestamp(ts)
	if len(nalu) <= len(unescapedSEI(ts)) {
		t.Fatalf("no emulation prevention byte inserted in %x", nalu)
	}
}

func TestParseSEITimestampRejects(t *testing.T) {
	valid := MarshalSEITimestamp(time.Unix(1_790_000_000, 0))
	otherUUID := bytes.Clone(valid)
	otherUUID[5] ^= 0xff
	otherType := bytes.Clone(valid)
	otherType[1] = 4 // registered user data
	truncated := valid[:len(valid)-6]
	for name, nalu := range map[string][]byte{
		"empty":        nil,
		"header only":  {0x06},
		"not SEI":      append([]byte{0x65}, valid[1:]...),
		"other uuid":   otherUUID,
		"other type":   otherType,
		"truncated":    truncated,
		"ff run":       {0x06, 0xff, 0xff, 0xff},
		"size too big": {0x06, 0x05, 0xff, 0x10, 0x80},
	} {
		if ts, ok := ParseSEITimestamp(nalu); ok {
			t.Errorf("%s: parsed %v", name, ts)
		}
	}
}

func TestParseSEITimestampAfterOtherMessages(t *testing.T) {
	ts := time.Unix(1_790_000_000, 42)
	stamp := MarshalSEITimestamp(ts)
	// one SEI NAL with a recovery point message (type 6, 1 byte) and then ours
	nalu := []byte{0x06, 0x06, 0x01, 0x84}
	nalu = append(nalu, stamp[1:]...)
	got, ok := ParseSEITimestamp(nalu)
	if !ok || !got.Equal(ts) {
		t.Fatalf("parsed %v %v", got, ok)
	}
}

func TestWithSEITimestamp(t *testing.T) {
	sps, pps := []byte{0x67, 1}, []byte{0x68, 2}
	idr, slice := []byte{0x65, 3}, []byte{0x41, 4}
	aud := []byte{0x09, 0xf0}
	ts := time.Unix(5, 6)
	for _, tc := range []struct {
		name string
		au   [][]byte
		at   int
	}{
		{"idr with params", [][]byte{sps, pps, idr}, 2},
		{"aud first", [][]byte{aud, sps, pps, idr}, 3},
		{"non-idr", [][]byte{slice}, 0},
		{"no slice", [][]byte{sps, pps}, 2},
	} {
		in := append([][]byte(nil), tc.au...)
		out := WithSEITimestamp(tc.au, ts)
		if len(out) != len(in)+1 {
			t.Fatalf("%s: %d NAL units", tc.name, len(out))
		}
		if got, ok := ParseSEITimestamp(out[tc.at]); !ok || !got.Equal(ts) {
			t.Errorf("%s: SEI not at %d", tc.name, tc.at)
		}
		if got, ok := AUTimestamp(out); !ok || !got.Equal(ts) {
			t.Errorf("%s: AUTimestamp %v %v", tc.name, got, ok)
		}
		for i := range in {
			if &tc.au[i][0] != &in[i][0] {
				t.Errorf("%s: input modified", tc.name)
			}
		}
	}
	if _, ok := AUTimestamp([][]byte{sps, idr}); ok {
		t.Error("AUTimestamp found a stamp in an unstamped AU")
	}
}

// TestSEIDecodesWithFFmpeg checks that stamped access units are valid H.264:
// ffprobe decodes every frame without complaint and reports the SEI as user
// data unregistered.
func TestSEIDecodesWithFFmpeg(t *testing.T) {
	testkit.Slow(t)
	ffprobe := testkit.RequireFFprobe(t)
	clip := mustLoad(t)
	var stream []byte
	start := time.Unix(1_790_000_000, 0)
	for i, f := range clip.Video {
		au := WithSEITimestamp(f.NALUs, start.Add(time.Duration(i)*0x10000))
		b, err := h264.AnnexB(au).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, b...)
	}
	path := testkit.WriteTempFile(t, "stamped.h264", stream, 0o600)
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v", "-show_frames",
		"-show_entries", "frame=side_data_list", "-of", "compact", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	var frames, withSEI int
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "frame") {
			frames++
			if strings.Contains(line, "User Data Unregistered") {
				withSEI++
			}
		} else if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "side_data") {
			t.Errorf("ffprobe: %s", line)
		}
	}
	if frames != len(clip.Video) || withSEI != frames {
		t.Fatalf("ffprobe saw %d frames, %d with the SEI; want %d\n%s", frames, withSEI, len(clip.Video), out)
	}
}

func FuzzParseSEITimestamp(f *testing.F) {
	for _, ts := range seiTestTimes {
		f.Add(MarshalSEITimestamp(ts))
	}
	f.Add([]byte{0x06, 0xff, 0xff})
	f.Add([]byte{0x06, 0x05, 0x18, 0x00, 0x00, 0x03})
	f.Fuzz(func(t *testing.T, nalu []byte) {
		ts, ok := ParseSEITimestamp(nalu)
		if !ok {
			return
		}
		// whatever parsed must survive a re-marshal
		again, ok := ParseSEITimestamp(MarshalSEITimestamp(ts))
		if !ok || !again.Equal(ts) {
			t.Fatalf("%x parsed as %v, which does not round-trip (%v %v)", nalu, ts, again, ok)
		}
	})
}

func FuzzSEIRoundTrip(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(0x0000000300000000))
	f.Add(int64(-1))
	f.Fuzz(func(t *testing.T, ns int64) {
		ts := time.Unix(0, ns)
		nalu := MarshalSEITimestamp(ts)
		for i := 2; i < len(nalu); i++ {
			if nalu[i-2] == 0 && nalu[i-1] == 0 && nalu[i] < 3 {
				t.Fatalf("start code emulation in %x", nalu)
			}
		}
		got, ok := ParseSEITimestamp(nalu)
		if !ok || got.UnixNano() != ns {
			t.Fatalf("%d: parsed %v %v", ns, got, ok)
		}
	})
}
