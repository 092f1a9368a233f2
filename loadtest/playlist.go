package loadtest

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxPlaylistBody bounds a playlist read by the part probe.
const maxPlaylistBody = 1 << 20

// partKey names one LL-HLS part: the media sequence number of its segment
// and its index within that segment.
type partKey struct {
	msn, part uint64
}

func (k partKey) String() string {
	return fmt.Sprintf("%d.%d", k.msn, k.part)
}

// less orders parts as they are produced.
func (k partKey) less(o partKey) bool {
	return k.msn < o.msn || k.msn == o.msn && k.part < o.part
}

// mediaPlaylist is what the part probe needs of a media playlist.
type mediaPlaylist struct {
	// lowLatency is set when the playlist has EXT-X-PART-INF.
	lowLatency bool
	// mediaSequence is EXT-X-MEDIA-SEQUENCE; segments counts the segments
	// listed (gap placeholders and those an EXT-X-SKIP left out included).
	mediaSequence uint64
	segments      int
	// parts lists every EXT-X-PART, in playlist order, the trailing ones (of
	// the segment being built) included.
	parts []partKey
}

// next is the part a blocking reload asks for: the one after the last part
// listed, in the segment being built (_HLS_msn=<msn>&_HLS_part=<part>).
func (p *mediaPlaylist) next() partKey {
	k := partKey{msn: p.mediaSequence + uint64(p.segments)}
	for _, pk := range p.parts {
		if pk.msn == k.msn {
			k.part = max(k.part, pk.part+1)
		}
	}
	return k
}

// newParts returns the parts listed in p from k on.
func (p *mediaPlaylist) newParts(from partKey) []partKey {
	var out []partKey
	for _, pk := range p.parts {
		if !pk.less(from) {
			out = append(out, pk)
		}
	}
	return out
}

// last is the newest part listed; false when there is none.
func (p *mediaPlaylist) last() (partKey, bool) {
	if len(p.parts) == 0 {
		return partKey{}, false
	}
	return p.parts[len(p.parts)-1], true
}

// parseMediaPlaylist reads the media sequence, the segment count and the
// parts of an HLS media playlist. Parts belong to the segment whose URI
// follows them; parts after the last URI belong to the segment being built.
// It does not validate the playlist beyond what it reads.
func parseMediaPlaylist(text string) (*mediaPlaylist, error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), maxPlaylistBody)
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != "#EXTM3U" {
		return nil, errors.New("not an HLS playlist (no #EXTM3U)")
	}
	p := &mediaPlaylist{}
	var partIdx uint64 // index of the next part within the current segment
	var media bool
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF"):
			return nil, errors.New("a multivariant playlist, not a media playlist")
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			media = true
		case strings.HasPrefix(line, "#EXT-X-PART-INF:"):
			p.lowLatency = true
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			v, err := strconv.ParseUint(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"), 10, 63)
			if err != nil {
				return nil, fmt.Errorf("bad EXT-X-MEDIA-SEQUENCE: %w", err)
			}
			p.mediaSequence = v
		case strings.HasPrefix(line, "#EXT-X-SKIP:"):
			n, err := attrUint(strings.TrimPrefix(line, "#EXT-X-SKIP:"), "SKIPPED-SEGMENTS")
			if err != nil {
				return nil, fmt.Errorf("bad EXT-X-SKIP: %w", err)
			}
			p.segments += int(n)
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			p.parts = append(p.parts, partKey{msn: p.mediaSequence + uint64(p.segments), part: partIdx})
			partIdx++
		case line[0] == '#':
		default: // a segment URI ends the segment
			p.segments++
			partIdx = 0
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read playlist: %w", err)
	}
	if !media {
		return nil, errors.New("not a media playlist (no EXT-X-TARGETDURATION)")
	}
	return p, nil
}

// mediaPlaylistURI returns the playlist a player reads video from: the
// first variant's URI when text is a multivariant playlist, "" when text is
// a media playlist itself.
func mediaPlaylistURI(text string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), maxPlaylistBody)
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != "#EXTM3U" {
		return "", errors.New("not an HLS playlist (no #EXTM3U)")
	}
	variant := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF"):
			variant = true
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			return "", nil
		case line[0] == '#':
		case variant:
			return line, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read playlist: %w", err)
	}
	return "", errors.New("neither a media playlist nor a variant")
}

// attrUint reads a decimal attribute from an attribute list
// (NAME=1,OTHER="x").
func attrUint(list, name string) (uint64, error) {
	for attr := range strings.SplitSeq(list, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(attr), "=")
		if ok && k == name {
			return strconv.ParseUint(v, 10, 31)
		}
	}
	return 0, fmt.Errorf("no %s", name)
}
