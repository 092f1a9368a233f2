// Package rtmpchunk reads an RTMP chunk stream (RTMP 1.0 §5.3) into whole
// messages from one reusable buffer, for the media path of a publishing
// client.
//
// Why not gortmplib's reader: it allocates a body per chunk and another per
// message, reads through three layers of readers (a bufio.Reader over a byte
// counter over the connection) and decodes every message into a typed value
// before the caller sees it. At 25 cameras that was ~30 % of an all-in-one
// node (docs/benchmarks.md, "Profile"). This reader:
//
//   - parses chunk headers in place in its read buffer: basic header fmt 0-3,
//     chunk stream ids in the 1-, 2- and 3-byte forms, extended timestamps
//     (also on fmt 3 chunks, whose extended field is skipped as gortmplib
//     does);
//   - hands out a message that arrived in one chunk as a slice of the read
//     buffer, and assembles a message of several chunks in a body buffer
//     kept per chunk stream and reused for the next message: no allocation
//     per chunk or per message once the buffers have grown;
//   - applies the protocol control messages it reads (Set Chunk Size, Abort
//     Message, Window Acknowledgement Size) itself and still returns them,
//     and calls OnAck when the bytes received pass the peer's window, as
//     gortmplib does, so a publisher that waits for acknowledgements (ffmpeg,
//     OBS) never stalls.
//
// It decodes no message bodies: VideoFrame and AACFrame (tag.go) read the
// few FLV tag shapes that carry coded frames; anything else is left to
// gortmplib's message decoder by the caller.
//
// Why the handshake and the command phase stay with gortmplib (edge's
// rtmpConn): they run once per connection, cost nothing measurable, and
// carry most of the protocol's surface (RTMPE, AMF0 commands and their
// replies, Adobe auth, the stream URL rules users depend on); doing them
// here would copy that surface for no gain. The takeover is clean because
// the edge never lets gortmplib read the socket after the handshake: it
// reads the chunk stream with this reader from the first byte and feeds
// gortmplib one re-chunked message at a time, so gortmplib holds no
// buffered bytes and no chunk state that the fast path would need.
//
// Memory is bounded by what the peer sends, not by what it declares: a body
// buffer grows with the bytes that arrived, a message may declare at most
// MaxBodySize bytes, at most maxChunkStreams chunk streams are tracked, and
// the messages under way on all of them together hold at most
// maxPartialBytes (a peer that opens many and completes none is refused).
//
// Aliasing: Message.Body is valid until the next Read.
package rtmpchunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Message types of RTMP 1.0 §5.4 and §7.1 that the reader acts on or that
// callers test for.
const (
	TypeSetChunkSize     = 1
	TypeAbort            = 2
	TypeAcknowledgement  = 3
	TypeUserControl      = 4
	TypeWindowAckSize    = 5
	TypeSetPeerBandwidth = 6
	TypeAudio            = 8
	TypeVideo            = 9
	TypeDataAMF0         = 18
	TypeCommandAMF0      = 20
)

// MaxBodySize is the largest message body accepted, as gortmplib's.
const MaxBodySize = 10 << 20

// maxPartialBytes bounds the bytes of messages under way on one connection,
// over every chunk stream: one message of the largest size, and as much
// again interleaved with it.
const maxPartialBytes = 2 * MaxBodySize

// maxChunkStreams bounds the chunk streams tracked at once. Encoders use a
// handful (ffmpeg and OBS: 2-8); the limit keeps a hostile peer from making
// the reader keep state for all 65 599.
const maxChunkStreams = 256

// releaseBody is the capacity above which a chunk stream's body buffer is
// dropped after its message is handed out, so one huge message does not pin
// its buffer for the life of the connection.
const releaseBody = 4 << 20

// defaultBufferSize is the read buffer when Reader.BufferSize is zero.
const defaultBufferSize = 128 << 10

// maxHeader is the longest chunk header: 3-byte basic header, 11-byte
// message header, 4-byte extended timestamp.
const maxHeader = 18

// ErrProtocol is wrapped by every error about a malformed chunk stream.
// After one, the reader returns the same error on every Read: the stream
// cannot be resynchronised.
var ErrProtocol = errors.New("rtmp chunk stream")

// Message is one RTMP message.
type Message struct {
	ChunkStreamID uint32
	Timestamp     uint32 // milliseconds, absolute; wraps at 2^32
	Type          uint8
	// StreamID is the message stream id as gortmplib reads and writes it:
	// big-endian, where RTMP 1.0 says little-endian, so stream 1 reads
	// 0x1000000. Messages go back and forth between this reader and
	// gortmplib's decoder (edge/rtmp_conn.go), so they must agree.
	StreamID uint32
	// Body aliases the reader's buffers: valid until the next Read.
	Body []byte
}

// Reader reads messages from R. The zero value with R set is ready; the
// other fields are optional.
type Reader struct {
	R io.Reader
	// OnAck is called with the bytes received so far (mod 2^32) each time
	// they pass the window the peer set with Window Acknowledgement Size;
	// nil sends none. An error from it is returned by Read.
	OnAck func(received uint32) error
	// Received counts the bytes read from R; a caller that read a handshake
	// from the same connection sets it to those bytes first, so the values
	// given to OnAck count the whole connection, as gortmplib's do.
	Received uint64
	// BufferSize is the read buffer's size; default 128 KiB. Reads from R
	// ask for at least half of it.
	BufferSize int

	buf       []byte
	r, w      int // unread bytes are buf[r:w]
	chunkSize uint32
	window    uint32
	lastAck   uint32
	partial   int // bytes in the bodies of messages under way
	streams   map[uint32]*chunkStream
	last      *chunkStream // the stream of the previous chunk: the common case
	err       error        // sticky protocol error
	msg       Message
}

// chunkStream is what a chunk stream's previous headers left: fmt 1-3
// chunks inherit from it.
type chunkStream struct {
	id        uint32
	started   bool // a fmt 0 chunk was seen
	timestamp uint32
	delta     uint32
	length    uint32
	typ       uint8
	streamID  uint32
	extended  bool // the last header carried an extended timestamp

	body []byte // the message being assembled: len is what arrived
}

// ChunkSize is the peer's current chunk size.
func (r *Reader) ChunkSize() uint32 {
	if r.chunkSize == 0 {
		return 128
	}
	return r.chunkSize
}

// Read returns the next complete message. Protocol control messages
// (Set Chunk Size, Abort, Window Acknowledgement Size) are applied before
// they are returned. An error from R is returned as is (io.EOF between
// messages, io.ErrUnexpectedEOF inside one); a malformed stream gives an
// error wrapping ErrProtocol, and every later Read gives it again.
func (r *Reader) Read() (*Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.buf == nil {
		n := r.BufferSize
		if n <= 0 {
			n = defaultBufferSize
		}
		r.buf = make([]byte, max(n, 2*maxHeader))
		r.streams = make(map[uint32]*chunkStream)
	}
	for {
		m, err := r.readChunk()
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				r.err = err
			}
			return nil, err
		}
		if err := r.checkAck(); err != nil {
			return nil, err
		}
		if m == nil {
			continue // more chunks needed
		}
		if err := r.control(m); err != nil {
			r.err = err
			return nil, err
		}
		return m, nil
	}
}

func protocolError(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, a...)...)
}

// readChunk reads one chunk; it returns the message it completed, or nil.
func (r *Reader) readChunk() (*Message, error) {
	cs, format, ts, extended, err := r.readHeader()
	if err != nil {
		return nil, err
	}

	// The header is consumed: from here on the stream's state moves.
	start := len(cs.body) == 0
	if start {
		cs.begin(format, ts, extended)
	}

	n := int(min(cs.length-uint32(len(cs.body)), r.ChunkSize()))
	if start && n == int(cs.length) {
		// A message in one chunk: hand it out from the read buffer when it fits.
		if n <= len(r.buf) {
			if err := r.need(n, false); err != nil {
				return nil, err
			}
			r.msg = Message{ChunkStreamID: cs.id, Timestamp: cs.timestamp, Type: cs.typ, StreamID: cs.streamID, Body: r.buf[r.r : r.r+n]}
			r.r += n
			return &r.msg, nil
		}
	}
	if err := r.appendBody(cs, n); err != nil {
		return nil, err
	}
	if len(cs.body) < int(cs.length) {
		return nil, nil
	}
	r.msg = Message{ChunkStreamID: cs.id, Timestamp: cs.timestamp, Type: cs.typ, StreamID: cs.streamID, Body: cs.body}
	r.partial -= len(cs.body)
	if cap(cs.body) > releaseBody {
		cs.body = nil
	} else {
		cs.body = cs.body[:0]
	}
	return &r.msg, nil
}

// readHeader reads and consumes a chunk header (§5.3.1): it returns the
// chunk's stream, the header's format, its timestamp field (absolute for fmt
// 0, a delta for fmt 1 and 2) and whether it was extended. A fmt 0-2 header
// sets the message length and type on cs; the rest of its state moves in
// begin.
func (r *Reader) readHeader() (cs *chunkStream, format uint8, ts uint32, extended bool, err error) {
	if err := r.need(1, true); err != nil {
		return nil, 0, 0, false, err
	}
	b := r.buf[r.r:r.w]
	format = b[0] >> 6
	csid := uint32(b[0] & 0x3f)
	hlen := 1
	switch csid {
	case 0:
		hlen = 2
	case 1:
		hlen = 3
	}
	hlen += [4]int{11, 7, 3, 0}[format]
	if err := r.need(hlen, false); err != nil {
		return nil, 0, 0, false, err
	}
	b = r.buf[r.r:r.w]
	switch csid {
	case 0:
		csid = 64 + uint32(b[1])
	case 1:
		csid = 64 + uint32(b[1]) + uint32(b[2])<<8
	}
	cs = r.stream(csid)
	if cs == nil {
		return nil, 0, 0, false, protocolError("more than %d chunk streams", maxChunkStreams)
	}
	h := b[hlen-[4]int{11, 7, 3, 0}[format] : hlen]

	// The message header (§5.3.1.2).
	if format < 3 {
		ts = uint24(h)
	}
	if err := cs.checkHeader(format, h); err != nil {
		return nil, 0, 0, false, err
	}
	extended = cs.extended
	if format < 3 {
		extended = ts == 0xffffff
	}
	if extended {
		if err := r.need(hlen+4, false); err != nil {
			return nil, 0, 0, false, err
		}
		if format < 3 {
			ts = binary.BigEndian.Uint32(r.buf[r.r+hlen:])
		}
		hlen += 4
	}
	if cs.length > MaxBodySize {
		return nil, 0, 0, false, protocolError("chunk stream %d: body of %d bytes, the most is %d", csid, cs.length, MaxBodySize)
	}
	r.r += hlen
	return cs, format, ts, extended, nil
}

// checkHeader checks that a chunk of the given format may come now on cs,
// and takes the message length and type from a fmt 0 or 1 message header h.
func (cs *chunkStream) checkHeader(format uint8, h []byte) error {
	switch format {
	case 0:
		if len(cs.body) != 0 {
			return protocolError("chunk stream %d: fmt 0 chunk inside a message", cs.id)
		}
		cs.length = uint24(h[3:])
		cs.typ = h[6]
		cs.streamID = binary.BigEndian.Uint32(h[7:]) // as gortmplib reads and writes it
	case 1, 2:
		if !cs.started {
			return protocolError("chunk stream %d: fmt %d chunk without a previous fmt 0", cs.id, format)
		}
		if len(cs.body) != 0 {
			return protocolError("chunk stream %d: fmt %d chunk inside a message", cs.id, format)
		}
		if format == 1 {
			cs.length = uint24(h[3:])
			cs.typ = h[6]
		}
	default:
		if !cs.started {
			return protocolError("chunk stream %d: fmt 3 chunk without a previous fmt 0", cs.id)
		}
	}
	return nil
}

// begin moves cs's timestamp at the first chunk of a message.
func (cs *chunkStream) begin(format uint8, ts uint32, extended bool) {
	switch format {
	case 0:
		cs.timestamp, cs.delta = ts, 0
		cs.started = true
	case 1, 2:
		cs.timestamp += ts
		cs.delta = ts
	default:
		cs.timestamp += cs.delta
	}
	cs.extended = extended
}

// appendBody moves n body bytes of cs's chunk from the connection to cs.body.
func (r *Reader) appendBody(cs *chunkStream, n int) error {
	for n > 0 {
		if r.r == r.w {
			if err := r.fill(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := min(n, r.w-r.r)
		if r.partial+k > maxPartialBytes {
			return protocolError("messages under way hold over %d bytes", maxPartialBytes)
		}
		r.partial += k
		cs.body = append(cs.body, r.buf[r.r:r.r+k]...)
		r.r += k
		n -= k
	}
	return nil
}

// stream returns the state of chunk stream id, created on first use; nil
// when too many are tracked.
func (r *Reader) stream(id uint32) *chunkStream {
	if r.last != nil && r.last.id == id {
		return r.last
	}
	cs := r.streams[id]
	if cs == nil {
		if len(r.streams) >= maxChunkStreams {
			return nil
		}
		cs = &chunkStream{id: id}
		r.streams[id] = cs
	}
	r.last = cs
	return cs
}

// need makes n bytes available in buf[r:w] (n <= len(buf)). first says no
// byte of the chunk has been read yet: an EOF there is a clean end.
func (r *Reader) need(n int, first bool) error {
	for r.w-r.r < n {
		if len(r.buf)-r.r < n {
			r.compact()
		}
		if err := r.fill(); err != nil {
			if err == io.EOF && (!first || r.w > r.r) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (r *Reader) compact() {
	r.w = copy(r.buf, r.buf[r.r:r.w])
	r.r = 0
}

// fill reads once from R into the buffer's free tail, moving the unread
// bytes to the front first when the tail is short of half the buffer.
func (r *Reader) fill() error {
	if r.r == r.w {
		r.r, r.w = 0, 0
	} else if len(r.buf)-r.w < len(r.buf)/2 {
		r.compact()
	}
	for range 100 { // as bufio: a reader that keeps returning nothing is broken
		n, err := r.R.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			return errors.New("rtmpchunk: invalid read count")
		}
		r.w += n
		r.Received += uint64(n)
		if n > 0 {
			return nil // an error with data shows again on the next read
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// checkAck acknowledges the bytes received when they passed the window.
func (r *Reader) checkAck() error {
	if r.window == 0 || r.OnAck == nil {
		return nil
	}
	count := uint32(r.Received)
	if count-r.lastAck <= r.window {
		return nil
	}
	r.lastAck += r.window
	return r.OnAck(count)
}

// control applies a protocol control message.
func (r *Reader) control(m *Message) error {
	switch m.Type {
	case TypeSetChunkSize:
		if len(m.Body) < 4 {
			return protocolError("set chunk size: %d bytes", len(m.Body))
		}
		v := binary.BigEndian.Uint32(m.Body) & 0x7fffffff
		if v == 0 || v > MaxBodySize {
			return protocolError("set chunk size %d", v)
		}
		r.chunkSize = v
	case TypeAbort:
		if len(m.Body) < 4 {
			return protocolError("abort message: %d bytes", len(m.Body))
		}
		if cs := r.streams[binary.BigEndian.Uint32(m.Body)]; cs != nil {
			r.partial -= len(cs.body)
			cs.body = cs.body[:0]
		}
	case TypeWindowAckSize:
		if len(m.Body) < 4 {
			return protocolError("window acknowledgement size: %d bytes", len(m.Body))
		}
		r.window = binary.BigEndian.Uint32(m.Body)
	}
	return nil
}

func uint24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
