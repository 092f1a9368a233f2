package edge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/bluenviron/gortmplib/pkg/bytecounter"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/gortmplib/pkg/rawmessage"

	"github.com/streamgrid/streamgrid/internal/rtmpchunk"
)

// rtmpConn sits between a publisher's connection and gortmplib's
// ServerConn, so that the media path can read the chunk stream itself
// (rtmpchunk) while gortmplib keeps what it does well and rarely: the
// handshake, the connect/createStream/publish commands and their replies,
// the track probe, and every message the fast path does not take
// (sequence headers, metadata, multitrack, commands, pings).
//
// How the byte stream is shared without either side reading ahead of the
// other: the handshake passes through untouched (C0, C1, C2: 3073 bytes,
// read with exact sizes). From then on this conn reads the chunk stream
// with rtmpchunk and gives gortmplib, on demand, one whole message at a
// time, chunked again by gortmplib's own writer: gortmplib's buffered
// reader never holds more than the message it is reading, so at any
// message boundary the connection can be read here without losing a byte,
// and the chunk state (chunk size, each chunk stream's last header) is
// rtmpchunk's alone. The re-chunked stream opens with a Set Chunk Size of
// 1 MiB so that gortmplib's reader assembles a message from one chunk.
//
// Protocol control is done here, on the real byte counts: the peer's Set
// Chunk Size, Abort Message and Window Acknowledgement Size are applied by
// rtmpchunk and not passed on (gortmplib would otherwise acknowledge bytes
// of the re-chunked stream), and the acknowledgements go out through
// gortmplib's writer (ServerConn.Write), so its chunk stream 2 state stays
// its own. An encrypted connection (RTMPE, C0 version 6) is passed through
// whole: gortmplib decrypts it and reads it as before.
type rtmpConn struct {
	rw io.ReadWriter // the publisher's connection (deadlineConn)

	handshake int  // handshake bytes still to pass through
	opaque    bool // RTMPE: everything passes through
	started   bool // the re-chunked stream began

	chunks *rtmpchunk.Reader
	enc    *rawmessage.Writer // re-chunks messages for gortmplib
	out    bytes.Buffer       // re-chunked bytes gortmplib has not read yet

	// takeover: the read loop reads chunks itself; gortmplib reads only
	// the message in pending.
	takeover bool
	pending  *rtmpchunk.Message

	// ack sends an acknowledgement; nil until the connect command was
	// read (acknowledgements due before are skipped).
	ack func(uint32) error
}

// rtmpHandshakeSize is what a plain RTMP handshake reads: C0, C1 and C2.
const rtmpHandshakeSize = 1 + 1536 + 1536

// rtmpRechunkSize is the chunk size of the stream given to gortmplib.
const rtmpRechunkSize = 1 << 20

// errNoPending: gortmplib asked for bytes after the takeover with no
// message to give (a bug here, not the peer's).
var errNoPending = errors.New("rtmp: gortmplib read past its message")

func newRTMPConn(rw io.ReadWriter) *rtmpConn {
	c := &rtmpConn{rw: rw, handshake: rtmpHandshakeSize}
	c.chunks = &rtmpchunk.Reader{
		R:        rw,
		Received: rtmpHandshakeSize,
		OnAck: func(n uint32) error {
			if c.ack == nil {
				return nil
			}
			return c.ack(n)
		},
	}
	c.enc = rawmessage.NewWriter(&c.out, bytecounter.NewWriter(io.Discard), false)
	return c
}

// fast reports whether the read loop may read the chunk stream itself.
func (c *rtmpConn) fast() bool { return !c.opaque }

// Read gives gortmplib its bytes: the handshake, then one message at a time.
func (c *rtmpConn) Read(p []byte) (int, error) {
	if c.opaque {
		return c.rw.Read(p)
	}
	if c.handshake > 0 {
		n, err := c.rw.Read(p[:min(len(p), c.handshake)])
		if n > 0 && c.handshake == rtmpHandshakeSize && p[0] == 6 {
			c.opaque = true // RTMPE: gortmplib decrypts with keys it keeps
		}
		c.handshake -= n
		return n, err
	}
	if c.out.Len() == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	return c.out.Read(p)
}

// next re-chunks the next message for gortmplib into out.
func (c *rtmpConn) next() error {
	if !c.started {
		c.started = true
		if err := c.encode(&rtmpchunk.Message{ChunkStreamID: 2, Type: rtmpchunk.TypeSetChunkSize,
			Body: binary.BigEndian.AppendUint32(nil, rtmpRechunkSize)}); err != nil {
			return err
		}
		c.enc.SetChunkSize(rtmpRechunkSize)
	}
	if c.takeover {
		m := c.pending
		if m == nil {
			return errNoPending
		}
		c.pending = nil
		return c.encode(m)
	}
	for {
		m, err := c.chunks.Read()
		if err != nil {
			return err
		}
		if rtmpConsumed(m) {
			continue
		}
		return c.encode(m)
	}
}

// rtmpConsumed reports the messages rtmpchunk applied, which gortmplib
// must not see.
func rtmpConsumed(m *rtmpchunk.Message) bool {
	switch m.Type {
	case rtmpchunk.TypeSetChunkSize, rtmpchunk.TypeAbort, rtmpchunk.TypeWindowAckSize:
		return true
	}
	return false
}

func (c *rtmpConn) encode(m *rtmpchunk.Message) error {
	csid := m.ChunkStreamID
	if csid > 63 {
		// gortmplib knows only the one-byte form; messages go to it one at
		// a time, so chunk streams that share an id here cannot mix.
		csid = 63
	}
	return c.enc.Write(&rawmessage.Message{
		ChunkStreamID:   byte(csid),
		Timestamp:       time.Duration(m.Timestamp) * time.Millisecond,
		Type:            m.Type,
		MessageStreamID: m.StreamID,
		Body:            m.Body,
	})
}

// Write sends gortmplib's bytes to the publisher.
func (c *rtmpConn) Write(p []byte) (int, error) { return c.rw.Write(p) }

// acknowledger returns the ack function over a ServerConn whose writer is
// ready (after Initialize).
func acknowledger(w interface{ Write(message.Message) error }) func(uint32) error {
	return func(n uint32) error { return w.Write(&message.Acknowledge{Value: n}) }
}
