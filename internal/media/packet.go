// Package media holds the neutral packet type that every role shares and its
// wire format on the bus. It does no I/O.
//
// # Wire format (version 1)
//
// One NATS message carries one chunk of one access unit. All integers are
// big-endian. The header is 48 bytes:
//
//	offset size field
//	0      1    version (1)
//	1      1    track index within the stream (0..255)
//	2      1    codec (see Codec)
//	3      1    flags (bit 0 keyframe, bit 1 discontinuity)
//	4      8    PTS, int64, in the track's clock rate, monotonic per generation
//	12     8    DTS, int64, same unit (equal to PTS for audio)
//	20     8    edge wall clock at receipt, int64 Unix nanoseconds
//	28     8    generation of the publisher, uint64
//	36     8    sequence number, uint64, per stream and generation, one per access unit
//	44     2    chunk index, uint16
//	46     2    chunk count, uint16 (>= 1)
//	48     ...  payload chunk
//
// An access unit larger than the bus's maximum payload is split into chunks
// that share every header field except the chunk index; the receiver joins
// them in order and drops an incomplete unit (counting it). The payload of a
// video access unit is its NAL units, each prefixed by a 4-byte big-endian
// length (AVCC framing); an AAC payload is one raw AAC frame; an Opus payload
// is one Opus packet.
package media

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the wire-format version written by Marshal.
const Version = 1

// HeaderSize is the size of the fixed header in front of every chunk.
const HeaderSize = 48

// Codec identifies the payload format of a packet.
type Codec uint8

// Codecs carried on the bus.
const (
	CodecInvalid Codec = 0
	CodecH264    Codec = 1
	CodecH265    Codec = 2
	CodecAAC     Codec = 3 // MPEG-4 audio, raw frames
	CodecOpus    Codec = 4
)

// String returns the codec's short name.
func (c Codec) String() string {
	switch c {
	case CodecH264:
		return "H264"
	case CodecH265:
		return "H265"
	case CodecAAC:
		return "AAC"
	case CodecOpus:
		return "Opus"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// IsVideo reports whether the codec carries video access units.
func (c Codec) IsVideo() bool { return c == CodecH264 || c == CodecH265 }

// Flags qualify a packet.
type Flags uint8

// Packet flags.
const (
	FlagKeyframe      Flags = 1 << 0
	FlagDiscontinuity Flags = 1 << 1
)

// Packet is one access unit of one track: the unit every role exchanges.
type Packet struct {
	Track      uint8
	Codec      Codec
	Flags      Flags
	PTS        int64  // in the track's clock rate
	DTS        int64  // in the track's clock rate
	WallClock  int64  // edge wall clock at receipt, Unix ns
	Generation uint64 // publisher generation
	Seq        uint64 // per stream and generation
	Payload    []byte
}

// Keyframe reports whether the packet starts a decodable unit.
func (p *Packet) Keyframe() bool { return p.Flags&FlagKeyframe != 0 }

// Errors returned by the decoder.
var (
	ErrShort       = errors.New("media: message shorter than the header")
	ErrVersion     = errors.New("media: unsupported wire-format version")
	ErrChunk       = errors.New("media: invalid chunk index or count")
	ErrCodec       = errors.New("media: unknown codec")
	ErrChunkTooBig = errors.New("media: chunk size must exceed the header")
)

// Header is the decoded fixed header of one chunk.
type Header struct {
	Track      uint8
	Codec      Codec
	Flags      Flags
	PTS        int64
	DTS        int64
	WallClock  int64
	Generation uint64
	Seq        uint64
	ChunkIndex uint16
	ChunkCount uint16
}

func (p *Packet) header(idx, count uint16) Header {
	return Header{
		Track: p.Track, Codec: p.Codec, Flags: p.Flags, PTS: p.PTS, DTS: p.DTS,
		WallClock: p.WallClock, Generation: p.Generation, Seq: p.Seq,
		ChunkIndex: idx, ChunkCount: count,
	}
}

// PutHeader writes h into b, which must hold at least HeaderSize bytes.
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	b[0] = Version
	b[1] = h.Track
	b[2] = byte(h.Codec)
	b[3] = byte(h.Flags)
	binary.BigEndian.PutUint64(b[4:], uint64(h.PTS))
	binary.BigEndian.PutUint64(b[12:], uint64(h.DTS))
	binary.BigEndian.PutUint64(b[20:], uint64(h.WallClock))
	binary.BigEndian.PutUint64(b[28:], h.Generation)
	binary.BigEndian.PutUint64(b[36:], h.Seq)
	binary.BigEndian.PutUint16(b[44:], h.ChunkIndex)
	binary.BigEndian.PutUint16(b[46:], h.ChunkCount)
}

// ParseHeader decodes the header of one chunk and returns it with the chunk's payload,
// which aliases b.
func ParseHeader(b []byte) (Header, []byte, error) {
	if len(b) < HeaderSize {
		return Header{}, nil, ErrShort
	}
	if b[0] != Version {
		return Header{}, nil, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	h := Header{
		Track:      b[1],
		Codec:      Codec(b[2]),
		Flags:      Flags(b[3]),
		PTS:        int64(binary.BigEndian.Uint64(b[4:])),
		DTS:        int64(binary.BigEndian.Uint64(b[12:])),
		WallClock:  int64(binary.BigEndian.Uint64(b[20:])),
		Generation: binary.BigEndian.Uint64(b[28:]),
		Seq:        binary.BigEndian.Uint64(b[36:]),
		ChunkIndex: binary.BigEndian.Uint16(b[44:]),
		ChunkCount: binary.BigEndian.Uint16(b[46:]),
	}
	if h.Codec == CodecInvalid || h.Codec > CodecOpus {
		return Header{}, nil, fmt.Errorf("%w: %d", ErrCodec, h.Codec)
	}
	if h.ChunkCount == 0 || h.ChunkIndex >= h.ChunkCount {
		return Header{}, nil, fmt.Errorf("%w: %d/%d", ErrChunk, h.ChunkIndex, h.ChunkCount)
	}
	return h, b[HeaderSize:], nil
}

// Marshal encodes p as one or more chunks, each at most maxMsg bytes long
// (header included). It calls emit once per chunk, in order; the slice passed
// to emit is reused after emit returns. maxMsg <= 0 means no limit.
func (p *Packet) Marshal(maxMsg int, buf []byte, emit func([]byte) error) ([]byte, error) {
	room := len(p.Payload)
	if maxMsg > 0 {
		if maxMsg <= HeaderSize {
			return buf, ErrChunkTooBig
		}
		room = maxMsg - HeaderSize
	}
	count := 1
	if room > 0 && len(p.Payload) > room {
		count = (len(p.Payload) + room - 1) / room
	}
	if count > 0xFFFF {
		return buf, fmt.Errorf("%w: %d chunks needed", ErrChunk, count)
	}
	for i := 0; i < count; i++ {
		start := i * room
		end := min(start+room, len(p.Payload))
		if count == 1 {
			start, end = 0, len(p.Payload)
		}
		n := HeaderSize + end - start
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		PutHeader(buf, p.header(uint16(i), uint16(count)))
		copy(buf[HeaderSize:], p.Payload[start:end])
		if err := emit(buf); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Assembler joins the chunks of one stream back into packets. It keeps at
// most one unit in progress: a chunk of a new unit discards the incomplete one.
// It is not safe for concurrent use.
type Assembler struct {
	// MaxSize bounds a reassembled unit; larger units are discarded. Default 64 MiB.
	MaxSize int

	cur     Header
	buf     []byte
	pending bool
	next    uint16

	// Incomplete counts units discarded because a chunk was missing or they were too big.
	Incomplete uint64
}

// Push feeds one message. It returns a complete packet, or nil while a unit is
// still incomplete. The returned packet's payload aliases msg when the unit
// had a single chunk, and otherwise belongs to the packet.
func (a *Assembler) Push(msg []byte) (*Packet, error) {
	h, payload, err := ParseHeader(msg)
	if err != nil {
		return nil, err
	}
	if h.ChunkCount == 1 {
		if a.pending {
			a.pending = false
			a.Incomplete++
		}
		return &Packet{
			Track: h.Track, Codec: h.Codec, Flags: h.Flags, PTS: h.PTS, DTS: h.DTS,
			WallClock: h.WallClock, Generation: h.Generation, Seq: h.Seq, Payload: payload,
		}, nil
	}
	maxSize := a.MaxSize
	if maxSize <= 0 {
		maxSize = 64 << 20
	}
	if h.ChunkIndex == 0 {
		if a.pending {
			a.Incomplete++
		}
		a.cur = h
		a.buf = append(a.buf[:0:0], payload...)
		a.pending = true
		a.next = 1
		return nil, nil
	}
	if !a.pending || h.Seq != a.cur.Seq || h.Generation != a.cur.Generation ||
		h.Track != a.cur.Track || h.ChunkCount != a.cur.ChunkCount || h.ChunkIndex != a.next {
		if a.pending {
			a.pending = false
			a.Incomplete++
		}
		return nil, nil
	}
	if len(a.buf)+len(payload) > maxSize {
		a.pending = false
		a.buf = nil
		a.Incomplete++
		return nil, nil
	}
	a.buf = append(a.buf, payload...)
	a.next++
	if a.next < a.cur.ChunkCount {
		return nil, nil
	}
	a.pending = false
	c := a.cur
	p := &Packet{
		Track: c.Track, Codec: c.Codec, Flags: c.Flags, PTS: c.PTS, DTS: c.DTS,
		WallClock: c.WallClock, Generation: c.Generation, Seq: c.Seq, Payload: a.buf,
	}
	a.buf = nil
	return p, nil
}
