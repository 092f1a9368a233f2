package loadtest

import (
	"errors"
	"fmt"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
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
// parts of an HLS media playlist, with gohlslib's playlist parser (the one
// the origin renders its playlists with). Parts belong to the segment whose
// URI follows them; parts after the last URI belong to the segment being
// built. A playlist must list one complete segment at least (gohlslib's rule;
// streamgrid's origins and caches serve none before that).
func parseMediaPlaylist(text string) (*mediaPlaylist, error) {
	pl, err := playlist.Unmarshal([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("parse media playlist: %w", err)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		return nil, errors.New("a multivariant playlist, not a media playlist")
	}
	p := &mediaPlaylist{lowLatency: m.PartInf != nil, mediaSequence: uint64(m.MediaSequence)}
	if m.Skip != nil {
		p.segments = m.Skip.SkippedSegments
	}
	addParts := func(parts []*playlist.MediaPart) {
		msn := p.mediaSequence + uint64(p.segments)
		for i := range parts {
			p.parts = append(p.parts, partKey{msn: msn, part: uint64(i)})
		}
	}
	for _, seg := range m.Segments {
		addParts(seg.Parts)
		p.segments++
	}
	addParts(m.Parts)
	return p, nil
}

// mediaPlaylistURI returns the playlist a player reads video from: the
// first variant's URI when text is a multivariant playlist, "" when text is
// a media playlist itself.
func mediaPlaylistURI(text string) (string, error) {
	pl, err := playlist.Unmarshal([]byte(text))
	if err != nil {
		return "", fmt.Errorf("parse playlist: %w", err)
	}
	switch pl := pl.(type) {
	case *playlist.Multivariant:
		if len(pl.Variants) == 0 {
			return "", errors.New("a multivariant playlist without variants")
		}
		return pl.Variants[0].URI, nil
	default:
		return "", nil
	}
}
