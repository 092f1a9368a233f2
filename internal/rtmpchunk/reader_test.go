package rtmpchunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/chunk"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

// libRead reads data with gortmplib's chunk reader, applying its Set Chunk
// Size messages, and calls each (when not nil) with every message until
// data ends; it returns the error of a chunk size gortmplib refused.
func libRead(data []byte, each func(*rawmessage.Message)) error {
	br := bytecounter.NewReader(bytes.NewReader(data))
	r := rawmessage.NewReader(br, br, func(uint32) error { return nil })
	for {
		m, err := r.Read()
		if err != nil {
			return nil
		}
		if m.Type == TypeSetChunkSize {
			if err := r.SetChunkSize(binary.BigEndian.Uint32(m.Body)); err != nil {
				return err
			}
		}
		if each != nil {
			each(m)
		}
	}
}

// libWrite encodes msgs with gortmplib's chunk writer, starting at
// chunkSize; a Set Chunk Size message among them switches the writer after
// it, as gortmplib's message.Writer does.
func libWrite(t testing.TB, chunkSize uint32, msgs []Message) []byte {
	var out bytes.Buffer
	w := rawmessage.NewWriter(&out, bytecounter.NewWriter(io.Discard), false)
	w.SetChunkSize(chunkSize)
	for _, m := range msgs {
		err := w.Write(&rawmessage.Message{
			ChunkStreamID:   byte(m.ChunkStreamID),
			Timestamp:       time.Duration(m.Timestamp) * time.Millisecond,
			Type:            m.Type,
			MessageStreamID: m.StreamID,
			Body:            m.Body,
		})
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == TypeSetChunkSize {
			w.SetChunkSize(binary.BigEndian.Uint32(m.Body))
		}
	}
	return out.Bytes()
}

func setChunkSize(v uint32) Message {
	return Message{ChunkStreamID: 2, Type: TypeSetChunkSize, Body: binary.BigEndian.AppendUint32(nil, v)}
}

func body(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// readAll reads every message of data, copying the bodies.
func readAll(t testing.TB, r *Reader) []Message {
	var got []Message
	for {
		m, err := r.Read()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("message %d: %v", len(got), err)
		}
		c := *m
		c.Body = bytes.Clone(m.Body)
		got = append(got, c)
	}
}

func sameMessages(t *testing.T, got, want []Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ChunkStreamID != w.ChunkStreamID || g.Timestamp != w.Timestamp || g.Type != w.Type ||
			g.StreamID != w.StreamID || !bytes.Equal(g.Body, w.Body) {
			t.Fatalf("message %d: got csid %d ts %d type %d msid %d %d bytes; want csid %d ts %d type %d msid %d %d bytes",
				i, g.ChunkStreamID, g.Timestamp, g.Type, g.StreamID, len(g.Body),
				w.ChunkStreamID, w.Timestamp, w.Type, w.StreamID, len(w.Body))
		}
	}
}

// publication is what an encoder sends: metadata, sequence headers, then
// video and audio on their chunk streams with deltas that change (fmt 1, 2
// and 3 headers), a message longer than any chunk size, one of zero bytes,
// and timestamps past the 24-bit field (extended timestamps, on fmt 3
// continuations too).
func publication(base uint32) []Message {
	msgs := []Message{
		{ChunkStreamID: 4, Timestamp: base, Type: TypeDataAMF0, StreamID: 1, Body: body(300, 1)},
		{ChunkStreamID: 6, Timestamp: base, Type: TypeVideo, StreamID: 1, Body: body(40, 2)},
		{ChunkStreamID: 4, Timestamp: base, Type: TypeAudio, StreamID: 1, Body: body(4, 3)},
	}
	v, a := base, base
	for i := range 60 {
		size := 900 + (i%7)*1500
		if i%25 == 0 {
			size = 70000 // a keyframe bigger than 64 KiB chunks
		}
		if i%10 == 5 {
			size = 900 // the same length as before: fmt 2 or 3
		}
		msgs = append(msgs, Message{ChunkStreamID: 6, Timestamp: v, Type: TypeVideo, StreamID: 1, Body: body(size, byte(i))})
		v += 40
		if i%3 == 0 {
			v += 1 // the delta changes: fmt 2
		}
		msgs = append(msgs, Message{ChunkStreamID: 4, Timestamp: a, Type: TypeAudio, StreamID: 1, Body: body(371, byte(i))})
		a += 21
	}
	msgs = append(msgs,
		Message{ChunkStreamID: 3, Timestamp: v, Type: TypeCommandAMF0, StreamID: 0, Body: nil},
		Message{ChunkStreamID: 6, Timestamp: v, Type: TypeVideo, StreamID: 1, Body: body(200000, 9)},
		Message{ChunkStreamID: 6, Timestamp: v - 10, Type: TypeVideo, StreamID: 1, Body: body(10, 9)}, // backwards: fmt 0
	)
	return msgs
}

// TestReadsGortmplibWriter reads back what gortmplib's writer produced, for
// chunk sizes from 128 to 65536, with and without extended timestamps, the
// stream cut into reads of every size.
func TestReadsGortmplibWriter(t *testing.T) {
	for _, cs := range []uint32{128, 129, 1000, 4096, 60000, 65536} {
		for _, base := range []uint32{0, 0xfffff0, 0x1000000, 0xffffff00} {
			t.Run(fmt.Sprintf("chunk%d/ts%x", cs, base), func(t *testing.T) {
				want := append([]Message{setChunkSize(cs)}, publication(base)...)
				var out bytes.Buffer
				w := rawmessage.NewWriter(&out, bytecounter.NewWriter(io.Discard), false)
				for i, m := range want {
					if err := w.Write(&rawmessage.Message{
						ChunkStreamID: byte(m.ChunkStreamID), Timestamp: time.Duration(m.Timestamp) * time.Millisecond,
						Type: m.Type, MessageStreamID: m.StreamID, Body: m.Body,
					}); err != nil {
						t.Fatal(err)
					}
					if i == 0 {
						w.SetChunkSize(cs)
					}
				}
				data := out.Bytes()
				for _, rd := range []struct {
					name string
					r    func() io.Reader
					buf  int
				}{
					{"whole", func() io.Reader { return bytes.NewReader(data) }, 0},
					{"1 byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }, 0},
					{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }, 100},
					{"small buffer", func() io.Reader { return bytes.NewReader(data) }, 64},
				} {
					r := &Reader{R: rd.r(), BufferSize: rd.buf}
					sameMessages(t, readAll(t, r), want)
					if r.ChunkSize() != cs {
						t.Fatalf("%s: chunk size %d, want %d", rd.name, r.ChunkSize(), cs)
					}
					if r.Received != uint64(len(data)) {
						t.Fatalf("%s: received %d, want %d", rd.name, r.Received, len(data))
					}
				}
			})
		}
	}
}

// TestInterleaved reads chunks of two messages on different chunk streams
// taking turns (gortmplib's chunk marshallers, fmt 0, 1, 2 and 3 headers,
// extended timestamps on the continuations), and an aborted message.
func TestInterleaved(t *testing.T) {
	mustMarshal := func(c chunk.Chunk, ext bool) []byte {
		b, err := c.Marshal(ext)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v := body(300, 1)
	a := body(250, 2)
	v2 := body(300, 3)
	var data []byte
	add := func(b []byte) { data = append(data, b...) }
	// video, fmt 0 with an extended timestamp, 128-byte chunks
	add(mustMarshal(&chunk.Chunk0{ChunkStreamID: 6, Timestamp: 0x1234567, Type: 9, MessageStreamID: 1, BodyLen: 300, Body: v[:128]}, false))
	// audio, fmt 0
	add(mustMarshal(&chunk.Chunk0{ChunkStreamID: 4, Timestamp: 5, Type: 8, MessageStreamID: 1, BodyLen: 250, Body: a[:128]}, false))
	add(mustMarshal(&chunk.Chunk3{ChunkStreamID: 6, Body: v[128:256]}, true))
	add(mustMarshal(&chunk.Chunk3{ChunkStreamID: 4, Body: a[128:]}, false)) // audio completes
	add(mustMarshal(&chunk.Chunk3{ChunkStreamID: 6, Body: v[256:]}, true))  // video completes
	// video, fmt 1 (new length), an extended delta
	add(mustMarshal(&chunk.Chunk1{ChunkStreamID: 6, TimestampDelta: 0x1000000, Type: 9, BodyLen: 300, Body: v2[:128]}, false))
	// audio, fmt 2: delta 21, same length (one chunk since the rest is short)
	a2 := body(250, 4)
	add(mustMarshal(&chunk.Chunk2{ChunkStreamID: 4, TimestampDelta: 21, Body: a2[:128]}, false))
	// abort the audio message
	add(mustMarshal(&chunk.Chunk0{ChunkStreamID: 2, Type: TypeAbort, BodyLen: 4, Body: []byte{0, 0, 0, 4}}, false))
	add(mustMarshal(&chunk.Chunk3{ChunkStreamID: 6, Body: v2[128:256]}, true))
	add(mustMarshal(&chunk.Chunk3{ChunkStreamID: 6, Body: v2[256:]}, true))
	// audio again: fmt 3 starts a new message with the last delta (21)
	add(mustMarshal(&chunk.Chunk3{ChunkStreamID: 4, Body: a2[:128]}, false))
	add(mustMarshal(&chunk.Chunk3{ChunkStreamID: 4, Body: a2[128:]}, false))

	want := []Message{
		{ChunkStreamID: 4, Timestamp: 5, Type: 8, StreamID: 1, Body: a},
		{ChunkStreamID: 6, Timestamp: 0x1234567, Type: 9, StreamID: 1, Body: v},
		{ChunkStreamID: 2, Type: TypeAbort, Body: []byte{0, 0, 0, 4}},
		{ChunkStreamID: 6, Timestamp: 0x1234567 + 0x1000000, Type: 9, StreamID: 1, Body: v2},
		{ChunkStreamID: 4, Timestamp: 5 + 21 + 21, Type: 8, StreamID: 1, Body: a2},
	}
	sameMessages(t, readAll(t, &Reader{R: bytes.NewReader(data)}), want)
	sameMessages(t, readAll(t, &Reader{R: iotest.OneByteReader(bytes.NewReader(data))}), want)
}

// TestLongChunkStreamIDs reads the 2- and 3-byte basic header forms
// (chunk stream ids 64-319 and 64-65599), which gortmplib cannot write.
func TestLongChunkStreamIDs(t *testing.T) {
	var data []byte
	for _, id := range []uint32{64, 319, 320, 65599} {
		var basic []byte
		if id < 320 {
			basic = []byte{0<<6 | 0, byte(id - 64)}
		} else {
			basic = []byte{0<<6 | 1, byte((id - 64) & 0xff), byte((id - 64) >> 8)}
		}
		data = append(data, basic...)
		data = append(data, 0, 0, byte(id), 0, 0, 3, 9, 0, 0, 0, 1) // ts, len 3, type 9, msid 1
		data = append(data, 1, 2, 3)
		// and a fmt 3 message after it on the same stream
		basic[0] |= 3 << 6
		data = append(data, basic...)
		data = append(data, 4, 5, 6)
	}
	var want []Message
	for _, id := range []uint32{64, 319, 320, 65599} {
		want = append(want,
			Message{ChunkStreamID: id, Timestamp: id & 0xff, Type: 9, StreamID: 1, Body: []byte{1, 2, 3}},
			Message{ChunkStreamID: id, Timestamp: id & 0xff, Type: 9, StreamID: 1, Body: []byte{4, 5, 6}})
	}
	sameMessages(t, readAll(t, &Reader{R: bytes.NewReader(data)}), want)
}

// TestAcknowledgement: after the peer's Window Acknowledgement Size, OnAck
// gets the bytes received each time a window's worth has come, as
// gortmplib's reader sends them.
func TestAcknowledgement(t *testing.T) {
	msgs := []Message{{ChunkStreamID: 2, Type: TypeWindowAckSize, Body: binary.BigEndian.AppendUint32(nil, 10000)}}
	for i := range 100 {
		msgs = append(msgs, Message{ChunkStreamID: 6, Timestamp: uint32(i * 40), Type: TypeVideo, StreamID: 1, Body: body(1000, byte(i))})
	}
	data := libWrite(t, 128, msgs)
	var acks []uint32
	r := &Reader{R: bytes.NewReader(data), Received: 3073, OnAck: func(n uint32) error {
		acks = append(acks, n)
		return nil
	}}
	readAll(t, r)
	total := 3073 + len(data)
	if len(acks) != (total-1)/10000 && len(acks) != (total-1)/10000-1 {
		t.Fatalf("%d acknowledgements for %d bytes and a 10000-byte window: %v", len(acks), total, acks)
	}
	for i, n := range acks {
		if n <= uint32(10000*(i+1)) || n > uint32(total) {
			t.Fatalf("acknowledgement %d is %d", i, n)
		}
	}
	// An error from OnAck ends the read.
	boom := errors.New("boom")
	r = &Reader{R: bytes.NewReader(data), OnAck: func(uint32) error { return boom }}
	for {
		_, err := r.Read()
		if errors.Is(err, boom) {
			break
		}
		if err != nil {
			t.Fatalf("got %v, want the OnAck error", err)
		}
	}
}

// TestProtocolErrors: a malformed stream gives ErrProtocol, again on every
// later Read; a stream cut inside a message gives io.ErrUnexpectedEOF.
func TestProtocolErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"fmt 1 first", []byte{1<<6 | 6, 0, 0, 0, 0, 0, 1, 9, 0}},
		{"fmt 3 first", []byte{3<<6 | 6, 0}},
		{"too big", []byte{6, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0}},
		{"chunk size 0", []byte{2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"fmt 0 inside a message", append(append([]byte{6, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0}, body(128, 0)...), 6, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &Reader{R: bytes.NewReader(c.data)}
			_, err := r.Read()
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want ErrProtocol", err)
			}
			if _, err2 := r.Read(); err2 != err {
				t.Fatalf("second read: %v, want %v again", err2, err)
			}
		})
	}
	data := libWrite(t, 128, []Message{{ChunkStreamID: 6, Type: TypeVideo, StreamID: 1, Body: body(1000, 0)}})
	for n := 1; n < len(data); n += 37 {
		_, err := (&Reader{R: bytes.NewReader(data[:n])}).Read()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut at %d: %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
	if _, err := (&Reader{R: bytes.NewReader(nil)}).Read(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
}

// TestNoAllocations: once its buffers have grown, reading a publication
// allocates nothing per chunk or per message.
func TestNoAllocations(t *testing.T) {
	msgs := []Message{setChunkSize(4096)}
	for i := range 50 {
		msgs = append(msgs, Message{ChunkStreamID: 6, Timestamp: uint32(i * 40), Type: TypeVideo, StreamID: 1, Body: body(9000+i, byte(i))})
		msgs = append(msgs, Message{ChunkStreamID: 4, Timestamp: uint32(i * 21), Type: TypeAudio, StreamID: 1, Body: body(300, byte(i))})
	}
	// Written three times by one writer, each copy continuing the one
	// before (AllocsPerRun runs its function twice).
	data := libWrite(t, 128, append(append(msgs, msgs[1:]...), msgs[1:]...))
	br := bytes.NewReader(data)
	r := &Reader{R: br}
	for range len(msgs) { // first pass: buffers grow
		if _, err := r.Read(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1, func() {
		for range len(msgs) - 1 {
			if _, err := r.Read(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations reading %d messages", allocs, len(msgs)-1)
	}
}

// BenchmarkRead: a 720p publication (10 kB video frames, 4096-byte chunks)
// through this reader and through gortmplib's.
func BenchmarkRead(b *testing.B) {
	msgs := []Message{setChunkSize(4096)}
	for i := range 250 {
		size := 10000
		if i%25 == 0 {
			size = 60000
		}
		msgs = append(msgs, Message{ChunkStreamID: 6, Timestamp: uint32(i * 40), Type: TypeVideo, StreamID: 1, Body: body(size, byte(i))})
		msgs = append(msgs, Message{ChunkStreamID: 4, Timestamp: uint32(i * 40), Type: TypeAudio, StreamID: 1, Body: body(300, byte(i))})
	}
	data := libWrite(b, 128, msgs)
	b.Run("rtmpchunk", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			r := &Reader{R: bytes.NewReader(data)}
			for {
				if _, err := r.Read(); err != nil {
					break
				}
			}
		}
	})
	b.Run("gortmplib", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			_ = libRead(data, nil)
		}
	})
}

// TestPartialMessagesBounded: a peer that starts large messages on several
// chunk streams and completes none is refused once they hold
// maxPartialBytes, instead of making the reader hold 10 MiB per stream;
// messages of the largest size, one after another with audio between, are
// read (the count of bytes under way goes down as each completes).
func TestPartialMessagesBounded(t *testing.T) {
	const chunkSize = 8 << 20
	var data []byte
	add := func(c chunk.Chunk) {
		b, err := c.Marshal(false)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	add(&chunk.Chunk0{ChunkStreamID: 2, Type: TypeSetChunkSize, BodyLen: 4, Body: []byte{0, 0x80, 0, 0}})
	for id := byte(3); id < 6; id++ { // 3 × 8 MiB under way: over 2 × 10 MiB
		add(&chunk.Chunk0{ChunkStreamID: id, Type: TypeVideo, MessageStreamID: 1, BodyLen: MaxBodySize, Body: body(chunkSize, id)})
	}
	r := &Reader{R: bytes.NewReader(data)}
	var err error
	for err == nil {
		_, err = r.Read()
	}
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}

	big := body(MaxBodySize, 7)
	ok := libWrite(t, 64<<10, []Message{
		setChunkSize(64 << 10),
		{ChunkStreamID: 6, Type: TypeVideo, StreamID: 1, Body: big},
		{ChunkStreamID: 4, Type: TypeAudio, StreamID: 1, Body: body(300, 8)},
		{ChunkStreamID: 6, Type: TypeVideo, StreamID: 1, Body: big},
		{ChunkStreamID: 6, Type: TypeVideo, StreamID: 1, Body: big},
	})
	if got := readAll(t, &Reader{R: bytes.NewReader(ok)}); len(got) != 5 {
		t.Fatalf("%d messages, want 5 (Set Chunk Size, three of the largest size, audio)", len(got))
	}
}
