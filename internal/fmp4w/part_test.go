package fmp4w

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
)

// mkTrack builds a track from samples with payloads.
func mkTrack(id uint32, base uint64, samples []fmp4.Sample) Track {
	t := Track{ID: id, BaseTime: base}
	for _, s := range samples {
		t.Samples = append(t.Samples, Sample{Duration: s.Duration, PTSOffset: s.PTSOffset, NonSync: s.IsNonSyncSample, Size: uint32(len(s.Payload))})
		t.Data = append(t.Data, s.Payload...)
	}
	return t
}

// checkRoundTrip writes tracks and reads them back with mediacommon's reader.
func checkRoundTrip(t *testing.T, seq uint32, tracks []Track) {
	t.Helper()
	want := Size(tracks)
	buf, err := Append(make([]byte, 0, want), seq, tracks)
	if err != nil {
		t.Fatal(err)
	}
	if len(buf) != want {
		t.Fatalf("wrote %d bytes, Size said %d", len(buf), want)
	}
	var parts fmp4.Parts
	if err := parts.Unmarshal(buf); err != nil {
		t.Fatalf("mediacommon cannot read the fragment: %v", err)
	}
	if len(parts) != 1 {
		t.Fatalf("%d parts read, want 1", len(parts))
	}
	p := parts[0]
	if p.SequenceNumber != seq {
		t.Fatalf("sequence number %d, want %d", p.SequenceNumber, seq)
	}
	var nonEmpty []Track
	for _, tr := range tracks {
		if len(tr.Samples) > 0 {
			nonEmpty = append(nonEmpty, tr)
		}
	}
	if len(p.Tracks) != len(nonEmpty) {
		t.Fatalf("%d tracks read, want %d", len(p.Tracks), len(nonEmpty))
	}
	for i, tr := range nonEmpty {
		got := p.Tracks[i]
		if got.ID != int(tr.ID) || got.BaseTime != tr.BaseTime {
			t.Fatalf("track %d: id %d base %d, want %d %d", i, got.ID, got.BaseTime, tr.ID, tr.BaseTime)
		}
		if len(got.Samples) != len(tr.Samples) {
			t.Fatalf("track %d: %d samples, want %d", i, len(got.Samples), len(tr.Samples))
		}
		off := 0
		for j, s := range tr.Samples {
			g := got.Samples[j]
			payload := tr.Data[off : off+int(s.Size)]
			off += int(s.Size)
			if g.Duration != s.Duration || g.PTSOffset != s.PTSOffset || g.IsNonSyncSample != s.NonSync || !bytes.Equal(g.Payload, payload) {
				t.Fatalf("track %d sample %d: got dur %d off %d nonsync %v len %d, want %d %d %v %d",
					i, j, g.Duration, g.PTSOffset, g.IsNonSyncSample, len(g.Payload), s.Duration, s.PTSOffset, s.NonSync, s.Size)
			}
		}
	}
}

func TestAppendRoundTrip(t *testing.T) {
	video := []fmp4.Sample{
		{Duration: 3000, PTSOffset: 6000, Payload: []byte{0, 0, 0, 2, 0x65, 1}},
		{Duration: 3000, PTSOffset: -3000, IsNonSyncSample: true, Payload: []byte{0, 0, 0, 1, 0x41}},
		{Duration: 0, IsNonSyncSample: true, Payload: bytes.Repeat([]byte{7}, 1000)},
	}
	audio := []fmp4.Sample{
		{Duration: 1024, Payload: []byte{1, 2, 3}},
		{Duration: 1024, Payload: []byte{4}},
	}
	for _, tc := range []struct {
		name   string
		seq    uint32
		tracks []Track
	}{
		{"video with offsets and non-sync samples", 7, []Track{mkTrack(1, 900000, video)}},
		{"audio: no flags or offset columns", 0, []Track{mkTrack(1, 480000, audio)}},
		{"two tracks", 1 << 31, []Track{mkTrack(1, 1<<40, video), mkTrack(2, 5, audio)}},
		{"an empty track is left out", 3, []Track{mkTrack(1, 0, nil), mkTrack(2, 9, audio)}},
		{"sync samples with offsets", 4, []Track{mkTrack(1, 1, []fmp4.Sample{{Duration: 1, PTSOffset: 5, Payload: []byte{1}}})}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkRoundTrip(t, tc.seq, tc.tracks) })
	}
}

// TestAppendMatchesMediacommon compares the bytes with mediacommon's writer,
// which writes the same boxes with the same flags.
func TestAppendMatchesMediacommon(t *testing.T) {
	samples := []*fmp4.Sample{
		{Duration: 3000, PTSOffset: 3000, Payload: []byte{0, 0, 0, 1, 0x65}},
		{Duration: 3000, IsNonSyncSample: true, Payload: []byte{0, 0, 0, 2, 0x41, 9}},
	}
	var ref seekablebuffer.Buffer
	if err := (fmp4.Part{SequenceNumber: 12, Tracks: []*fmp4.PartTrack{{ID: 1, BaseTime: 123456, Samples: samples}}}).Marshal(&ref); err != nil {
		t.Fatal(err)
	}
	var in []fmp4.Sample
	for _, s := range samples {
		in = append(in, *s)
	}
	got, err := Append(nil, 12, []Track{mkTrack(1, 123456, in)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ref.Bytes()) {
		t.Fatalf("bytes differ from mediacommon's:\n got %x\nwant %x", got, ref.Bytes())
	}
}

func TestAppendKeepsPrefixAndRejectsBadSizes(t *testing.T) {
	tr := mkTrack(1, 0, []fmp4.Sample{{Duration: 1, Payload: []byte{1, 2}}})
	out, err := Append([]byte("abc"), 1, []Track{tr})
	if err != nil || string(out[:3]) != "abc" || len(out) != 3+Size([]Track{tr}) {
		t.Fatalf("prefix not kept: %q %v", out[:3], err)
	}
	tr.Samples[0].Size = 3
	if _, err := Append(nil, 1, []Track{tr}); err == nil {
		t.Fatal("sizes that do not add up were accepted")
	}
}

func TestAppendDoesNotAllocateWithRoom(t *testing.T) {
	tr := mkTrack(1, 0, []fmp4.Sample{{Duration: 1, PTSOffset: 2, IsNonSyncSample: true, Payload: []byte{1, 2}}})
	buf := make([]byte, 0, Size([]Track{tr}))
	if n := testing.AllocsPerRun(100, func() { _, _ = Append(buf, 1, []Track{tr}) }); n != 0 {
		t.Fatalf("%v allocations per fragment", n)
	}
}

func FuzzAppend(f *testing.F) {
	f.Add(uint32(1), uint64(0), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, uint8(2))
	f.Add(uint32(99), uint64(1<<50), []byte{0xff, 0, 0x80, 1}, uint8(1))
	f.Fuzz(func(t *testing.T, seq uint32, base uint64, script []byte, ntracks uint8) {
		// The script drives sample shapes: each 4 bytes make a sample.
		n := int(ntracks%3) + 1
		tracks := make([]Track, n)
		for i := range tracks {
			tracks[i] = Track{ID: uint32(i + 1), BaseTime: base + uint64(i)}
		}
		for k := 0; k+4 <= len(script) && k < 4*200; k += 4 {
			c := script[k : k+4]
			tr := &tracks[int(c[0])%n]
			size := int(c[1])%50 + 1
			tr.Samples = append(tr.Samples, Sample{
				Duration:  binary.BigEndian.Uint32([]byte{0, c[2], c[3], c[0]}),
				PTSOffset: int32(int8(c[3])) * 1000,
				NonSync:   c[2]&1 == 1,
				Size:      uint32(size),
			})
			r := rand.New(rand.NewPCG(uint64(k), uint64(c[1])))
			for range size {
				tr.Data = append(tr.Data, byte(r.Uint32()))
			}
		}
		checkRoundTrip(t, seq, tracks)
	})
}

// benchSamples is one 200 ms part of a 2 Mbit/s 25 fps stream.
func benchSamples() []*fmp4.Sample {
	s := make([]*fmp4.Sample, 5)
	for i := range s {
		s[i] = &fmp4.Sample{Duration: 3600, PTSOffset: 3600, IsNonSyncSample: i > 0, Payload: bytes.Repeat([]byte{byte(i)}, 10000)}
	}
	return s
}

func BenchmarkPartMediacommon(b *testing.B) {
	samples := benchSamples()
	b.ReportAllocs()
	for b.Loop() {
		var buf seekablebuffer.Buffer
		if err := (fmp4.Part{SequenceNumber: 1, Tracks: []*fmp4.PartTrack{{ID: 1, BaseTime: 900000, Samples: samples}}}).Marshal(&buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPartFmp4w includes one exact-size allocation per part, as the
// muxer does (each finished part is kept as its own slice).
func BenchmarkPartFmp4w(b *testing.B) {
	var in []fmp4.Sample
	for _, s := range benchSamples() {
		in = append(in, *s)
	}
	tracks := []Track{mkTrack(1, 900000, in)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Append(make([]byte, 0, Size(tracks)), 1, tracks); err != nil {
			b.Fatal(err)
		}
	}
}
