package rtmpchunk

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib/pkg/rawmessage"
)

// FuzzReader: any byte stream ends in an error, never a panic, and the
// reader keeps no more memory than twice what it was sent (plus its read
// buffer), however long the messages it declares.
func FuzzReader(f *testing.F) {
	f.Add(libWrite(f, 128, append([]Message{setChunkSize(1000)}, publication(0xfffff0)...)[:20]))
	f.Add([]byte{6, 0xff, 0xff, 0xff, 0x9f, 0xff, 0xff, 9, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3})
	f.Add([]byte{0, 5, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 1, 7, 3 << 6, 5, 8})
	f.Add([]byte{1, 5, 1, 0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 1})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 2, 9, 0, 0, 0, 1, 1, 0xc6, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &Reader{R: bytes.NewReader(data), BufferSize: 256, OnAck: func(uint32) error { return nil }}
		for range len(data) + 1 {
			m, err := r.Read()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrProtocol) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(m.Body) > MaxBodySize {
				t.Fatalf("body of %d bytes", len(m.Body))
			}
		}
		if len(r.streams) > maxChunkStreams {
			t.Fatalf("%d chunk streams", len(r.streams))
		}
		held := 0
		for _, cs := range r.streams {
			held += cap(cs.body)
		}
		if held > 2*len(data)+64*len(r.streams) {
			t.Fatalf("%d bytes held for a %d-byte stream", held, len(data))
		}
	})
}

// FuzzRoundTrip: whatever messages gortmplib's writer sends, at whatever
// chunk size, the reader reads what gortmplib's reader reads from the same
// bytes. (Not always what was written: after a fmt 0 header gortmplib's
// writer may send a fmt 3 one that means the delta from before, where its
// reader, and this one, take a delta of 0.)
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint16(128), []byte{6, 40, 10, 9, 4, 21, 1, 8, 6, 40, 10, 9, 6, 41, 200, 9})
	f.Add(uint16(1), []byte{6, 255, 3, 9, 6, 255, 3, 9, 3, 0, 0, 20})
	f.Add(uint16(4096), []byte{6, 255, 255, 9, 4, 0, 255, 8, 6, 1, 255, 9})
	f.Fuzz(func(t *testing.T, chunkSize uint16, spec []byte) {
		cs := max(uint32(chunkSize), 1)
		msgs := []Message{setChunkSize(cs)}
		ts := map[uint32]uint32{}
		for len(spec) >= 4 {
			csid := 3 + uint32(spec[0])%61
			delta := uint32(spec[1])
			switch delta {
			case 255:
				delta = 0x1000000 // an extended timestamp
			case 254:
				delta = 0xfffffffb // -5: backwards, fmt 0
			}
			ts[csid] += delta
			size := int(spec[2]) * int(spec[2]&7+1)
			typ := []uint8{TypeAudio, TypeVideo, TypeDataAMF0, TypeCommandAMF0}[spec[3]%4]
			msgs = append(msgs, Message{ChunkStreamID: csid, Timestamp: ts[csid], Type: typ, StreamID: uint32(spec[3] >> 6), Body: body(size, spec[3])})
			spec = spec[4:]
		}
		data := libWrite(t, 128, msgs)
		got := readAll(t, &Reader{R: bytes.NewReader(data), BufferSize: 512})

		var want []Message
		if err := libRead(data, func(m *rawmessage.Message) {
			want = append(want, Message{ChunkStreamID: uint32(m.ChunkStreamID), Timestamp: uint32(m.Timestamp / time.Millisecond),
				Type: m.Type, StreamID: m.MessageStreamID, Body: m.Body})
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(msgs) || len(want) != len(msgs) {
			t.Fatalf("%d messages, gortmplib %d, written %d", len(got), len(want), len(msgs))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.ChunkStreamID != w.ChunkStreamID || g.Timestamp != w.Timestamp || g.Type != w.Type ||
				g.StreamID != w.StreamID || !bytes.Equal(g.Body, w.Body) || !bytes.Equal(g.Body, msgs[i].Body) {
				t.Fatalf("message %d differs: got csid %d ts %d type %d msid %d, gortmplib csid %d ts %d type %d msid %d",
					i, g.ChunkStreamID, g.Timestamp, g.Type, g.StreamID, w.ChunkStreamID, w.Timestamp, w.Type, w.StreamID)
			}
		}
	})
}

// FuzzTags: the tag readers never panic and return a suffix of the body.
func FuzzTags(f *testing.F) {
	f.Add([]byte{0x17, 1, 0, 0, 40, 0, 0, 0, 1, 0x65})
	f.Add([]byte{0x91, 'h', 'v', 'c', '1', 0xff, 0xff, 0xd8, 0, 0, 0, 1, 2})
	f.Add([]byte{0x93, 'a', 'v', 'c', '1', 0, 0, 0, 1, 2})
	f.Add([]byte{0xaf, 1, 0x21})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, d, ok := VideoFrame(b); ok && (len(d) > len(b) || !bytes.Equal(d, b[len(b)-len(d):])) {
			t.Fatal("video data is not a suffix of the body")
		}
		if d, ok := AACFrame(b); ok && !bytes.Equal(d, b[len(b)-len(d):]) {
			t.Fatal("AAC data is not a suffix of the body")
		}
	})
}
