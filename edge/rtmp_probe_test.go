package edge

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/gortmplib/pkg/message"
)

// sliceConn is a gortmplib.Conn that reads a list of messages, then io.EOF;
// it counts what was read.
type sliceConn struct {
	msgs []message.Message
	read int
}

func (c *sliceConn) BytesReceived() uint64       { return 0 }
func (c *sliceConn) BytesSent() uint64           { return 0 }
func (c *sliceConn) Write(message.Message) error { return nil }
func (c *sliceConn) Read() (message.Message, error) {
	if c.read >= len(c.msgs) {
		return nil, io.EOF
	}
	c.read++
	return c.msgs[c.read-1], nil
}

// wireConn records what a gortmplib.Writer writes, through the wire format
// (chunks), so the messages read back have the shapes a socket gives.
type wireConn struct {
	buf bytes.Buffer
	w   *message.Writer
	r   *message.Reader
}

func newWireConn() *wireConn {
	c := &wireConn{}
	c.w = message.NewWriter(&c.buf, bytecounter.NewWriter(io.Discard), false)
	c.r = message.NewReader(&c.buf, bytecounter.NewReader(bytes.NewReader(nil)), func(uint32) error { return nil })
	return c
}

func (c *wireConn) BytesReceived() uint64           { return 0 }
func (c *wireConn) BytesSent() uint64               { return 0 }
func (c *wireConn) Read() (message.Message, error)  { return nil, io.EOF }
func (c *wireConn) Write(msg message.Message) error { return c.w.Write(msg) }
func (c *wireConn) messages(t *testing.T) []message.Message {
	t.Helper()
	var out []message.Message
	for {
		m, err := c.r.Read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// rtmpSession is a publication as gortmplib's Writer sends it: onMetaData,
// the sequence headers, then 3 s of the test clip (video and, unless
// noAudio, AAC), in time order. audioLate holds the audio track back by
// that much, its sequence header included.
func rtmpSession(t *testing.T, name string, noAudio bool, audioLate time.Duration) []message.Message {
	t.Helper()
	conn := newWireConn()
	if err := writeClipRTMP(conn, loadClip(t, name), 0, noAudio, audioLate); err != nil {
		t.Fatal(err)
	}
	msgs := conn.messages(t)
	if audioLate > 0 { // the AAC sequence header goes just before the first frame
		hdr, first := -1, -1
		for i, m := range msgs {
			if a, ok := m.(*message.Audio); ok {
				if a.AACType == message.AudioAACTypeConfig {
					hdr = i
				} else if first < 0 {
					first = i
				}
			}
		}
		if hdr < 0 || first < hdr {
			t.Fatal("no AAC sequence header before the audio")
		}
		h := msgs[hdr]
		copy(msgs[hdr:first-1], msgs[hdr+1:first])
		msgs[first-1] = h
	}
	return msgs
}

// readAll registers a callback on every track and reads to the end; it
// returns one line per callback.
func readAll(t *testing.T, rd *gortmplib.Reader) []string {
	t.Helper()
	var out []string
	for _, tr := range rd.Tracks() {
		switch tr.Codec.(type) {
		case *codecs.H264:
			rd.OnDataH264(tr, func(pts, dts time.Duration, au [][]byte) {
				out = append(out, fmt.Sprintf("h264 %v %v %d", pts, dts, len(au)))
			})
		case *codecs.H265:
			rd.OnDataH265(tr, func(pts, dts time.Duration, au [][]byte) {
				out = append(out, fmt.Sprintf("h265 %v %v %d", pts, dts, len(au)))
			})
		case *codecs.MPEG4Audio:
			rd.OnDataMPEG4Audio(tr, func(pts time.Duration, au []byte) {
				out = append(out, fmt.Sprintf("aac %v %d", pts, len(au)))
			})
		default:
			t.Fatalf("unexpected track %T", tr.Codec)
		}
	}
	for {
		if err := rd.Read(); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			return out
		}
	}
}

// TestRTMPProbe checks the early track probe against gortmplib's own
// Reader on the same messages: the same tracks, the same callbacks in the
// same order, and it stops reading once the announced tracks are known
// (with no onMetaData, only once both video and audio are).
func TestRTMPProbe(t *testing.T) {
	dropMeta := func(msgs []message.Message) []message.Message {
		var out []message.Message
		for _, m := range msgs {
			if _, ok := m.(*message.DataAMF0); !ok {
				out = append(out, m)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		clip      string
		noAudio   bool
		noMeta    bool
		audioLate time.Duration
		early     bool // the probe must stop before the analyze period
	}{
		{name: "h264+aac", clip: "h264_aac.ts", early: true},
		{name: "h264 only", clip: "h264_aac.ts", noAudio: true, early: true},
		{name: "h265", clip: "h265.ts", early: true},
		{name: "audio 1s late", clip: "h264_aac.ts", audioLate: time.Second, early: true},
		{name: "no metadata", clip: "h264_aac.ts", noMeta: true, early: true},
		{name: "no metadata, video only", clip: "h264_aac.ts", noAudio: true, noMeta: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := rtmpSession(t, tc.clip, tc.noAudio, tc.audioLate)
			if tc.noMeta {
				msgs = dropMeta(msgs)
			}

			ref := &gortmplib.Reader{Conn: &sliceConn{msgs: msgs}}
			if err := ref.Initialize(); err != nil {
				t.Fatal(err)
			}
			want := readAll(t, ref)

			conn := &sliceConn{msgs: msgs}
			rd, _, err := newRTMPReader(conn)
			if err != nil {
				t.Fatal(err)
			}
			probed := conn.read
			if !reflect.DeepEqual(rd.Tracks(), ref.Tracks()) {
				t.Fatalf("tracks %v, gortmplib's %v", rd.Tracks(), ref.Tracks())
			}
			got := readAll(t, rd)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%d callbacks, gortmplib's %d; first %v, gortmplib's %v", len(got), len(want), head(got), head(want))
			}
			if len(want) == 0 {
				t.Fatal("no callbacks")
			}
			// how far the probe read: the messages up to the last track's header, or 2 s of media
			var last time.Duration
			for _, m := range msgs[:probed] {
				switch m := m.(type) {
				case *message.Video:
					last = max(last, m.DTS)
				case *message.Audio:
					last = max(last, m.DTS)
				}
			}
			if early := last < rtmpAnalyzePeriod; early != tc.early {
				t.Fatalf("probe read %d of %d messages, up to %v of media; want early=%v", probed, len(msgs), last, tc.early)
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }

// FuzzRTMPProbe: whatever the messages (decoded from arbitrary chunk
// bytes), the probe does not panic and ends at the end of the input.
func FuzzRTMPProbe(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := message.NewReader(bytes.NewReader(b), bytecounter.NewReader(bytes.NewReader(nil)), func(uint32) error { return nil })
		var msgs []message.Message
		for len(msgs) < 100 {
			m, err := r.Read()
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		rd, _, err := newRTMPReader(&sliceConn{msgs: msgs})
		if err == nil {
			for rd.Read() == nil {
			}
		}
	})
}
