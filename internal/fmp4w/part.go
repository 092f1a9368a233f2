// Package fmp4w writes fragmented-MP4 media fragments (moof + mdat) for
// HLS parts without reflection or buffer growth: the size of a fragment is
// computed from its sample table first, then every box is written in place
// into one slice of exactly that size.
//
// Layout written (ISO/IEC 14496-12):
//
//	moof
//	  mfhd                 sequence number
//	  traf                 one per track that has samples
//	    tfhd               track id, flags default-base-is-moof (0x020000)
//	    tfdt (version 1)   base media decode time, 64 bits
//	    trun (version 1)   data offset, per sample: duration, size,
//	                       [flags when any sample is not a sync sample],
//	                       [signed composition offset when any is non-zero]
//	mdat                   the tracks' payloads, in traf order
//
// The sample-flags and composition-offset columns are present only when
// some sample needs them, as readers expect of a compact trun. The init
// section (ftyp + moov) is not written here: it is written once per muxer
// and is not on the hot path.
package fmp4w

import (
	"encoding/binary"
	"errors"
	"math"
)

// ErrTooLarge is returned for a fragment whose mdat would not fit a 32-bit box size.
var ErrTooLarge = errors.New("fmp4w: fragment larger than 4 GiB")

// Sample is one sample of a track in a fragment; its payload is the
// matching Size bytes of Track.Data.
type Sample struct {
	Duration  uint32
	PTSOffset int32 // composition time - decode time, in the track's timescale
	NonSync   bool
	Size      uint32
}

// Track is the samples of one track in a fragment.
type Track struct {
	ID       uint32
	BaseTime uint64 // decode time of the first sample, in the track's timescale
	Samples  []Sample
	// Data is the samples' payloads, back to back; its length is the sum
	// of the samples' sizes.
	Data []byte
}

const (
	trunDataOffset  = 0x000001
	trunDuration    = 0x000100
	trunSize        = 0x000200
	trunFlags       = 0x000400
	trunCTO         = 0x000800
	tfhdBaseIsMoof  = 0x020000
	sampleNonSync   = 0x00010000
	headerSize      = 8
	mfhdSize        = headerSize + 4 + 4
	tfhdSize        = headerSize + 4 + 4
	tfdtSize        = headerSize + 4 + 8
	trunFixedSize   = headerSize + 4 + 4 + 4 // full box, sample count, data offset
	trafFixedSize   = headerSize + tfhdSize + tfdtSize + trunFixedSize
	maxFragmentSize = math.MaxUint32
)

// trunColumns returns the trun flags of a track and the bytes per sample.
func trunColumns(t *Track) (flags uint32, perSample int) {
	flags = trunDataOffset | trunDuration | trunSize
	perSample = 8
	for i := range t.Samples {
		if t.Samples[i].NonSync {
			flags |= trunFlags
		}
		if t.Samples[i].PTSOffset != 0 {
			flags |= trunCTO
		}
	}
	if flags&trunFlags != 0 {
		perSample += 4
	}
	if flags&trunCTO != 0 {
		perSample += 4
	}
	return flags, perSample
}

// Size is the size of the fragment Write produces for tracks. Tracks
// without samples are left out, as Write does.
func Size(tracks []Track) int {
	moof, data := sizes(tracks)
	return moof + headerSize + data
}

func sizes(tracks []Track) (moof, data int) {
	moof = headerSize + mfhdSize
	for i := range tracks {
		t := &tracks[i]
		if len(t.Samples) == 0 {
			continue
		}
		_, per := trunColumns(t)
		moof += trafFixedSize + per*len(t.Samples)
		data += len(t.Data)
	}
	return moof, data
}

// Append appends the fragment (moof + mdat) of tracks, with sequence
// number seq, to dst and returns the extended slice. With cap(dst) -
// len(dst) >= Size(tracks) it does not allocate.
func Append(dst []byte, seq uint32, tracks []Track) ([]byte, error) {
	moof, data := sizes(tracks)
	total := moof + headerSize + data
	if uint64(total) > maxFragmentSize {
		return dst, ErrTooLarge
	}
	for i := range tracks {
		var n uint64
		for _, s := range tracks[i].Samples {
			n += uint64(s.Size)
		}
		if n != uint64(len(tracks[i].Data)) {
			return dst, errors.New("fmp4w: sample sizes do not add up to the track's data")
		}
	}
	start := len(dst)
	if cap(dst)-start < total {
		grown := make([]byte, start, start+total)
		copy(grown, dst)
		dst = grown
	}

	w := writer{b: dst[start : start+total]}
	w.box(moof, "moof")
	w.box(mfhdSize, "mfhd")
	w.u32(0) // version 0, flags 0
	w.u32(seq)
	dataOffset := moof + headerSize // from the start of moof to the first payload byte
	for i := range tracks {
		t := &tracks[i]
		if len(t.Samples) == 0 {
			continue
		}
		w.traf(t, dataOffset)
		dataOffset += len(t.Data)
	}
	w.box(headerSize+data, "mdat")
	for i := range tracks {
		if len(tracks[i].Samples) != 0 {
			w.p += copy(w.b[w.p:], tracks[i].Data)
		}
	}
	return dst[:start+total], nil
}

// writer writes boxes into b, which has room for all of them, from p on.
type writer struct {
	b []byte
	p int
}

func (w *writer) box(size int, typ string) {
	w.u32(uint32(size))
	copy(w.b[w.p:w.p+4], typ)
	w.p += 4
}

func (w *writer) u32(v uint32) {
	binary.BigEndian.PutUint32(w.b[w.p:], v)
	w.p += 4
}

func (w *writer) u64(v uint64) {
	binary.BigEndian.PutUint64(w.b[w.p:], v)
	w.p += 8
}

// traf writes the traf box of t, whose payload starts dataOffset bytes
// after the start of moof.
func (w *writer) traf(t *Track, dataOffset int) {
	flags, per := trunColumns(t)
	w.box(trafFixedSize+per*len(t.Samples), "traf")

	w.box(tfhdSize, "tfhd")
	w.u32(tfhdBaseIsMoof)
	w.u32(t.ID)

	w.box(tfdtSize, "tfdt")
	w.u32(1 << 24) // version 1
	w.u64(t.BaseTime)

	w.box(trunFixedSize+per*len(t.Samples), "trun")
	w.u32(1<<24 | flags) // version 1: signed composition offsets
	w.u32(uint32(len(t.Samples)))
	w.u32(uint32(dataOffset))
	for _, s := range t.Samples {
		w.u32(s.Duration)
		w.u32(s.Size)
		if flags&trunFlags != 0 {
			var f uint32
			if s.NonSync {
				f = sampleNonSync
			}
			w.u32(f)
		}
		if flags&trunCTO != 0 {
			w.u32(uint32(s.PTSOffset))
		}
	}
}
