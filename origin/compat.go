package origin

import (
	"strconv"
	"strings"
)

// The compatible view of a stream is for players that do not speak
// Low-Latency HLS: Chromium's built-in HLS player, older players, smart TVs.
// It lists the same segments under the same names and media sequence
// numbers as the default playlists, without EXT-X-SERVER-CONTROL,
// EXT-X-PART-INF, EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT,
// without the EXT-X-GAP placeholders gohlslib puts at the start of a
// Low-Latency stream, and with the lowest EXT-X-VERSION its tags need. A
// compatible media playlist is answered once it lists compatMinSegments real
// segments (bounded by the blocking-request timeout): Chromium gives up
// (MEDIA_ERR_SRC_NOT_SUPPORTED, "Segment queue never had any data") when the
// playlist it starts from holds less media than the time it takes to start
// playing, which a freshly started stream's one or two segments are.
//
// Names: compat.m3u8 is the compatible multivariant playlist; it links
// compat_<name> for every media playlist <name> (compat_video1_stream.m3u8,
// compat_r720p_video1_stream.m3u8). Segments, parts and initialization
// sections are shared with the default view.
const (
	compatMultivariant = "compat.m3u8"
	compatPrefix       = "compat_"
	compatMinSegments  = 3
)

// compatVersion is the EXT-X-VERSION of a compatible playlist: 6 with
// EXT-X-MAP (fMP4), 3 otherwise, never more than the original's.
func compatVersion(orig int, fmp4 bool) int {
	v := 3
	if fmp4 {
		v = 6
	}
	if orig > 0 && orig < v {
		return orig
	}
	return v
}

// compatMultivariantBody rewrites a multivariant playlist into the
// compatible one: every media playlist URI gets compatPrefix and
// EXT-X-VERSION is lowered to what the tags need (6: fMP4 variants may
// need EXT-X-MAP).
func compatMultivariantBody(body []byte) []byte {
	lines := strings.Split(string(body), "\n")
	for k, line := range lines {
		switch {
		case strings.HasPrefix(line, "#EXT-X-VERSION:"):
			if v, err := strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-VERSION:")); err == nil {
				lines[k] = "#EXT-X-VERSION:" + strconv.Itoa(compatVersion(v, true))
			}
		case strings.HasPrefix(line, "#"):
			// URI attributes (EXT-X-MEDIA renditions) name media playlists.
			if i := strings.Index(line, `URI="`); i >= 0 && strings.Contains(line[i:], ".m3u8\"") {
				lines[k] = line[:i+len(`URI="`)] + compatPrefix + line[i+len(`URI="`):]
			}
		case strings.HasSuffix(strings.TrimSpace(line), ".m3u8"):
			lines[k] = compatPrefix + line
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// compatInitPrefix names a self-initializing segment of the compatible view:
// compat_init_<segment> is the fMP4 segment <segment> with its
// initialization section (ftyp and moov) in front of it. A compatible media
// playlist lists the first segment after every EXT-X-DISCONTINUITY of an
// fMP4 stream under this name (and still puts the new EXT-X-MAP before it).
//
// Why: VLC 3's adaptive demuxer keeps the first EXT-X-MAP of a playlist
// ("FIXME: handle discontinuities" in modules/demux/hls/playlist/Parser.cpp)
// and sends an initialization section to a demuxer only when a stream
// starts, seeks or switches representation (SegmentTracker's init_sent).
// At a discontinuity it destroys the MP4 demuxer and opens a new one on the
// next segment, which then sees moof and mdat without a moov ("no moov
// before mdat", "Failed to create demuxer") and the stream ends. A segment
// that carries its own ftyp and moov is one a fresh MP4 demuxer can open;
// a player that applies EXT-X-MAP reads the same moov twice before the
// fragments (Chromium, which also gets this view, plays across it in the
// player matrix).
//
// The name starts with neither "init" nor ends in "_init", so a cache
// classifies it as a segment (immutable, cached by URL); the plain segment
// and the initialization section stay shared with the default view.
const compatInitPrefix = compatPrefix + "init_"
