package media

import (
	"bytes"
	"errors"
	"testing"
)

func marshalAll(t testing.TB, p *Packet, maxMsg int) [][]byte {
	var out [][]byte
	_, err := p.Marshal(maxMsg, nil, func(b []byte) error {
		out = append(out, append([]byte(nil), b...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 1000)
	cases := []struct {
		name   string
		pkt    Packet
		maxMsg int
		chunks int
	}{
		{"small", Packet{Track: 1, Codec: CodecAAC, PTS: 1024, DTS: 1024, WallClock: 7, Generation: 9, Seq: 3, Payload: []byte("aac")}, 0, 1},
		{"empty payload", Packet{Codec: CodecOpus}, 100, 1},
		{"negative pts", Packet{Codec: CodecH264, Flags: FlagKeyframe | FlagDiscontinuity, PTS: -90000, DTS: -93600, Payload: []byte{0, 0, 0, 1, 5}}, 0, 1},
		{"exact fit", Packet{Codec: CodecH265, Payload: big[:100-HeaderSize]}, 100, 1},
		{"chunked", Packet{Codec: CodecH264, Flags: FlagKeyframe, PTS: 1 << 40, DTS: 1 << 40, Seq: 1<<64 - 1, Generation: 1<<63 + 5, Payload: big}, 1000, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs := marshalAll(t, &c.pkt, c.maxMsg)
			if len(msgs) != c.chunks {
				t.Fatalf("chunks = %d, want %d", len(msgs), c.chunks)
			}
			for _, m := range msgs {
				if c.maxMsg > 0 && len(m) > c.maxMsg {
					t.Fatalf("message of %d bytes exceeds %d", len(m), c.maxMsg)
				}
			}
			var a Assembler
			var got *Packet
			for i, m := range msgs {
				p, err := a.Push(m)
				if err != nil {
					t.Fatal(err)
				}
				if (p != nil) != (i == len(msgs)-1) {
					t.Fatalf("packet completed at chunk %d of %d", i, len(msgs))
				}
				got = p
			}
			want := c.pkt
			if got.Track != want.Track || got.Codec != want.Codec || got.Flags != want.Flags || got.PTS != want.PTS ||
				got.DTS != want.DTS || got.WallClock != want.WallClock || got.Generation != want.Generation ||
				got.Seq != want.Seq || !bytes.Equal(got.Payload, want.Payload) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestAssemblerLostChunk(t *testing.T) {
	p := &Packet{Codec: CodecH264, Seq: 1, Payload: bytes.Repeat([]byte{9}, 500)}
	msgs := marshalAll(t, p, 200)
	var a Assembler
	// Drop the middle chunk: the unit must be discarded and counted, the next one must pass.
	if got, _ := a.Push(msgs[0]); got != nil {
		t.Fatal("early packet")
	}
	if got, _ := a.Push(msgs[2]); got != nil {
		t.Fatal("packet assembled without its middle chunk")
	}
	next := &Packet{Codec: CodecH264, Seq: 2, Payload: []byte{1}}
	got, err := a.Push(marshalAll(t, next, 200)[0])
	if err != nil || got == nil || got.Seq != 2 {
		t.Fatalf("next packet: %v %v", got, err)
	}
	if a.Incomplete != 1 {
		t.Fatalf("Incomplete = %d, want 1", a.Incomplete)
	}
}

func TestAssemblerMaxSize(t *testing.T) {
	p := &Packet{Codec: CodecH264, Seq: 1, Payload: bytes.Repeat([]byte{9}, 1000)}
	a := Assembler{MaxSize: 300}
	for _, m := range marshalAll(t, p, 200) {
		if got, _ := a.Push(m); got != nil {
			t.Fatal("oversized unit assembled")
		}
	}
	if a.Incomplete != 1 {
		t.Fatalf("Incomplete = %d", a.Incomplete)
	}
}

func TestParseErrors(t *testing.T) {
	good := marshalAll(t, &Packet{Codec: CodecAAC}, 0)[0]
	mut := func(f func(b []byte)) []byte { b := append([]byte(nil), good...); f(b); return b }
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"short", good[:HeaderSize-1], ErrShort},
		{"version", mut(func(b []byte) { b[0] = 2 }), ErrVersion},
		{"codec", mut(func(b []byte) { b[2] = 99 }), ErrCodec},
		{"count zero", mut(func(b []byte) { b[47] = 0 }), ErrChunk},
		{"index past count", mut(func(b []byte) { b[45] = 1 }), ErrChunk},
	}
	for _, c := range cases {
		if _, _, err := ParseHeader(c.msg); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMarshalTinyLimit(t *testing.T) {
	p := &Packet{Codec: CodecAAC, Payload: []byte{1}}
	if _, err := p.Marshal(HeaderSize, nil, func([]byte) error { return nil }); !errors.Is(err, ErrChunkTooBig) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(marshalAll(f, &Packet{Codec: CodecH264, Payload: []byte{1, 2, 3}}, 0)[0])
	for _, m := range marshalAll(f, &Packet{Codec: CodecH264, Payload: bytes.Repeat([]byte{1}, 300)}, 100) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var a Assembler
		a.MaxSize = 1 << 16
		p, err := a.Push(msg)
		if err != nil {
			return
		}
		if p == nil {
			return
		}
		// A complete packet must re-encode to the same bytes.
		again := marshalAll(t, p, 0)
		if len(again) != 1 || !bytes.Equal(again[0], msg) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	p := &Packet{Codec: CodecH264, Payload: make([]byte, 10000)}
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Payload)))
	for b.Loop() {
		buf, _ = p.Marshal(0, buf, func([]byte) error { return nil })
	}
}

// FuzzAssembler feeds a sequence of messages, as a hostile or broken
// publisher could put on a media subject: chunks out of order, of other
// units, repeated, truncated. The input is split into messages by a 2-byte
// big-endian length before each. Nothing may panic, and no reassembled unit
// may exceed MaxSize.
func FuzzAssembler(f *testing.F) {
	frame := func(msgs [][]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(b, byte(len(m)>>8), byte(len(m)))
			b = append(b, m...)
		}
		return b
	}
	chunks := marshalAll(f, &Packet{Codec: CodecH264, Seq: 7, Payload: bytes.Repeat([]byte{5}, 500)}, 100)
	f.Add(frame(chunks))
	f.Add(frame([][]byte{chunks[0], chunks[2], chunks[1]}))
	f.Add(frame(append(append([][]byte{}, chunks...), chunks...)))
	f.Add(frame([][]byte{chunks[0][:HeaderSize-1]}))
	f.Fuzz(func(t *testing.T, in []byte) {
		a := Assembler{MaxSize: 1024}
		for len(in) >= 2 {
			n := int(in[0])<<8 | int(in[1])
			in = in[2:]
			if n > len(in) {
				n = len(in)
			}
			msg := in[:n]
			in = in[n:]
			h, _, herr := ParseHeader(msg)
			p, err := a.Push(msg)
			if err != nil || p == nil {
				continue
			}
			if herr == nil && h.ChunkCount > 1 && len(p.Payload) > a.MaxSize {
				t.Fatalf("reassembled %d bytes, over MaxSize %d", len(p.Payload), a.MaxSize)
			}
		}
	})
}
