package origin

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// snapshot is an immutable copy of an instance's playlists, in the muxer's
// local numbering, with what the HTTP side needs to serve and merge them.
type snapshot struct {
	multivariant   []byte
	multivariantCC string // Cache-Control gohlslib sent
	leading        string // name of the leading media playlist
	leadingRaw     []byte // its bytes, to detect changes
	prefix         string // per-instance file-name prefix
	media          map[string]*layer
}

// lastUsed is the last global media sequence number the snapshot shows:
// the last complete segment, or the segment being built when some of its
// parts are already listed.
func (sn *snapshot) lastUsed() int64 {
	l := sn.media[sn.leading]
	last := l.offset + int64(l.pl.MediaSequence) + int64(len(l.pl.Segments)) - 1
	if len(l.pl.Parts) > 0 {
		last++
	}
	return last
}

// measuredTarget is the longest complete segment of the leading playlist,
// in seconds rounded (what EXT-X-TARGETDURATION must at least be); 0 before
// the first segment is complete.
func (sn *snapshot) measuredTarget() int {
	t := 0
	for _, seg := range sn.media[sn.leading].pl.Segments {
		if !seg.Gap {
			t = max(t, int(math.Round(seg.Duration.Seconds())))
		}
	}
	return t
}

// fetchSnapshot reads the multivariant playlist and every media playlist it
// names. The first call blocks inside gohlslib until the muxer has content;
// later calls return at once. errInstanceClosed once the muxer is closed.
func (i *instance) fetchSnapshot() (*snapshot, error) {
	code, hdr, body := i.fetch("index.m3u8")
	if code == http.StatusNotFound {
		return nil, errInstanceClosed
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("multivariant playlist: status %d", code)
	}
	pl, err := playlist.Unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("multivariant playlist: %w", err)
	}
	mv, ok := pl.(*playlist.Multivariant)
	if !ok || len(mv.Variants) == 0 {
		return nil, errors.New("multivariant playlist: no variant")
	}
	sn := &snapshot{
		multivariant:   body,
		multivariantCC: hdr.Get("Cache-Control"),
		leading:        mv.Variants[0].URI,
		media:          map[string]*layer{},
	}
	names := []string{sn.leading}
	for _, r := range mv.Renditions {
		if r.URI != nil && *r.URI != sn.leading {
			names = append(names, *r.URI)
		}
	}
	for _, name := range names {
		code, hdr, body := i.fetch(name)
		if code == http.StatusNotFound {
			return nil, errInstanceClosed
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("media playlist %s: status %d", name, code)
		}
		pl, err := playlist.Unmarshal(body)
		if err != nil {
			return nil, fmt.Errorf("media playlist %s: %w", name, err)
		}
		m, ok := pl.(*playlist.Media)
		if !ok {
			return nil, fmt.Errorf("media playlist %s: not a media playlist", name)
		}
		l := &layer{
			inst:         i,
			pl:           m,
			offset:       i.offset,
			firstID:      i.firstID,
			disc:         i.disc,
			discStart:    i.discStart,
			cacheControl: hdr.Get("Cache-Control"),
			hintPart:     -1,
		}
		if m.Map != nil {
			l.mapURI = m.Map.URI
		}
		if m.PreloadHint != nil {
			if _, id, ok := parsePartName(m.PreloadHint.URI); ok {
				l.hintPart = id
			}
		}
		if sn.prefix == "" {
			sn.prefix = prefixOf(m)
		}
		sn.media[name] = l
		if name == sn.leading {
			sn.leadingRaw = body
		}
	}
	return sn, nil
}

// prefixOf finds the per-instance prefix in a playlist's URIs.
func prefixOf(m *playlist.Media) string {
	try := func(uri string) string {
		if p, ok := filePrefix(uri); ok {
			return p
		}
		return ""
	}
	if m.Map != nil {
		if p := try(m.Map.URI); p != "" {
			return p
		}
	}
	for _, s := range m.Segments {
		if !s.Gap {
			if p := try(s.URI); p != "" {
				return p
			}
		}
	}
	if m.PreloadHint != nil {
		return try(m.PreloadHint.URI)
	}
	return ""
}

// prefixLen is the length of gohlslib's per-instance prefix (12 hex digits).
const prefixLen = 12

// filePrefix returns the prefix of a gohlslib segment, part or init file name.
func filePrefix(name string) (string, bool) {
	if len(name) <= prefixLen+1 || name[prefixLen] != '_' {
		return "", false
	}
	for _, c := range []byte(name[:prefixLen]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return name[:prefixLen], true
}

// parsePartName splits "<prefix>_<stream>_part<N>.mp4" into the stream id and N.
func parsePartName(name string) (string, int64, bool) {
	if _, ok := filePrefix(name); !ok || !strings.HasSuffix(name, ".mp4") {
		return "", 0, false
	}
	rest := strings.TrimSuffix(name[prefixLen+1:], ".mp4")
	k := strings.LastIndex(rest, "_part")
	if k <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(rest[k+len("_part"):], 10, 64)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return rest[:k], n, true
}
