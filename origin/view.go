package origin

import (
	"math"
	"sort"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// layer is one muxer instance's media playlist (in its local numbering) with
// what is needed to place it in the stream's global numbering.
type layer struct {
	inst         *instance
	pl           *playlist.Media
	offset       int64 // global MSN = local MSN + offset
	firstID      int64 // local id of the instance's first real segment
	disc         uint64
	discStart    bool
	mapURI       string // fMP4 initialization section; "" for MPEG-TS
	cacheControl string
	hintPart     int64 // part id of the preload hint; -1 when none
}

// view is a media playlist as served: the newest layer's window in global
// numbering, its gap placeholders filled with older layers' real segments.
type view struct {
	head  *layer
	first int64 // global MSN of segs[0]
	segs  []viewSeg
	ds    uint64 // EXT-X-DISCONTINUITY-SEQUENCE
	// uriPrefix is put in front of the rendition reports' playlist names
	// (those of a transcoded rendition are served as r<name>_<name>).
	uriPrefix string
	// name is the playlist's served name; siblings are every media
	// playlist of the stream by served name (layers of immutable
	// snapshots), for rendition reports.
	name     string
	siblings map[string]*layer
	// partsTag: the head's parts after the window open its first segment
	// (a muxer that serves from its first part, still building it) and
	// that segment opens a discontinuity: the tag goes before the parts.
	partsTag bool
}

type viewSeg struct {
	seg  *playlist.MediaSegment
	l    *layer
	disc uint64 // discontinuity sequence number of the segment
	tag  bool   // EXT-X-DISCONTINUITY before it
}

// buildView merges layers (oldest first; the last one is the head). A
// window shorter than segmentCount is extended backwards with older layers'
// segments where they are contiguous.
func buildView(layers []*layer, segmentCount int) *view {
	head := layers[len(layers)-1]
	older := layers[:len(layers)-1]
	v := &view{head: head, first: head.offset + int64(head.pl.MediaSequence)}
	for k, seg := range head.pl.Segments {
		if seg.Gap {
			if r, l := findReal(older, v.first+int64(k)); r != nil {
				v.segs = append(v.segs, viewSeg{seg: r, l: l})
				continue
			}
		}
		v.segs = append(v.segs, viewSeg{seg: seg, l: head})
	}
	// The muxer keeps more segments than are listed (see retainedSegments):
	// the playlist shows the newest segmentCount of them.
	if extra := len(v.segs) - segmentCount; extra > 0 {
		v.segs = v.segs[extra:]
		v.first += int64(extra)
	}
	for len(v.segs) < segmentCount {
		r, l := findReal(older, v.first-1)
		if r == nil {
			break
		}
		v.segs = append([]viewSeg{{seg: r, l: l}}, v.segs...)
		v.first--
	}

	// Real segments carry their layer's number; the first real segment of a
	// layer that starts with a discontinuity carries the tag.
	for k := range v.segs {
		vs := &v.segs[k]
		if vs.seg.Gap {
			continue
		}
		vs.disc = vs.l.disc
		vs.tag = vs.l.discStart && v.first+int64(k)-vs.l.offset == vs.l.firstID
	}
	// A placeholder belongs with the real segment after it: same number,
	// or one less when that segment opens a discontinuity (the segment the
	// head's parts build counts).
	v.partsTag = head.discStart && len(head.pl.Parts) > 0 && !hasReal(head.pl.Segments)
	next, nextTag := head.disc, v.partsTag
	for k := len(v.segs) - 1; k >= 0; k-- {
		vs := &v.segs[k]
		if !vs.seg.Gap {
			next, nextTag = vs.disc, vs.tag
			continue
		}
		vs.disc = next
		if nextTag {
			vs.disc--
		}
		next, nextTag = vs.disc, false
	}
	if len(v.segs) > 0 {
		v.ds = v.segs[0].disc
		if v.segs[0].tag {
			v.ds--
		}
	}
	return v
}

func hasReal(segs []*playlist.MediaSegment) bool {
	for _, seg := range segs {
		if !seg.Gap {
			return true
		}
	}
	return false
}

// findReal returns the real (non-gap) segment with global number msn from
// the newest layer that has one.
func findReal(layers []*layer, msn int64) (*playlist.MediaSegment, *layer) {
	for j := len(layers) - 1; j >= 0; j-- {
		l := layers[j]
		idx := msn - l.offset - int64(l.pl.MediaSequence)
		if idx >= 0 && idx < int64(len(l.pl.Segments)) && !l.pl.Segments[idx].Gap {
			return l.pl.Segments[idx], l
		}
	}
	return nil, nil
}

// renditionReports reports the stream's other media playlists (a separate
// audio rendition, the other renditions of a ladder): the LL-HLS revision
// of RFC 8216 (§4.4.5.4) has every Low-Latency media playlist report the
// other renditions of its multivariant playlist, so a player switching to
// one can ask for the right part at once. gohlslib writes none.
func (v *view) renditionReports() []*playlist.MediaRenditionReport {
	var names []string
	for n := range v.siblings {
		if n != v.name {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var out []*playlist.MediaRenditionReport
	for _, n := range names {
		l := v.siblings[n]
		if l.pl == nil || len(l.pl.Segments) == 0 {
			continue
		}
		last := l.offset + int64(l.pl.MediaSequence) + int64(len(l.pl.Segments)) - 1
		lastPart := len(l.pl.Segments[len(l.pl.Segments)-1].Parts) - 1
		if len(l.pl.Parts) > 0 {
			last, lastPart = last+1, len(l.pl.Parts)-1
		}
		rr := &playlist.MediaRenditionReport{URI: n, LastMSN: int(last)}
		if lastPart >= 0 {
			rr.LastPart = &lastPart
		}
		out = append(out, rr)
	}
	return out
}

// realSegments counts the segments that are not gap placeholders.
func (v *view) realSegments() int {
	n := 0
	for _, vs := range v.segs {
		if !vs.seg.Gap {
			n++
		}
	}
	return n
}

// lowLatency reports whether the playlist supports blocking reloads.
func (v *view) lowLatency() bool {
	return v.head.pl.ServerControl != nil && v.head.pl.ServerControl.CanBlockReload
}

// last is the global MSN of the last complete segment.
func (v *view) last() int64 { return v.first + int64(len(v.segs)) - 1 }

// tooFar reports a blocking request for a segment more than one past the one
// being built: such a request gets 400 at once.
func (v *view) tooFar(msn int64) bool { return msn > v.last()+2 }

// satisfied reports whether the playlist already holds segment msn (part
// part of it, when part >= 0), following the LL-HLS rule that a part index
// past a segment's last part means part 0 of the next segment.
func (v *view) satisfied(msn, part int64) bool {
	last := v.last()
	building := int64(len(v.head.pl.Parts))
	switch {
	case part < 0:
		return msn <= last
	case msn < last:
		return true
	case msn == last:
		parts := int64(len(v.segs[len(v.segs)-1].seg.Parts))
		return part < parts || building > 0
	case msn == last+1:
		return part < building
	}
	return false
}

// skippable counts the leading segments an _HLS_skip delta update may leave
// out: those ending at least boundary before the end of the playlist, and
// never a discontinuity, the segment just before it or anything after it.
func (v *view) skippable(boundary time.Duration) int {
	var remaining time.Duration
	for _, vs := range v.segs {
		remaining += vs.seg.Duration
	}
	n := 0
	for k, vs := range v.segs {
		// Keep the segment before a discontinuity too, so the initialization
		// section in force never changes at the first segment shown.
		if vs.tag || k+1 < len(v.segs) && v.segs[k+1].tag {
			break
		}
		remaining -= vs.seg.Duration
		if remaining < boundary {
			break
		}
		n++
	}
	return n
}

// render writes the playlist. delta asks for an _HLS_skip delta update.
// compat asks for the compatible view (see compat.go): the same segments
// without Low-Latency tags, parts or leading gap placeholders.
func (v *view) render(delta, compat bool) ([]byte, error) {
	h := v.head.pl
	// A compatible view lists segs[lead:end]: without the leading gap
	// placeholders, and without any further in (see compatWindow).
	lead, end := 0, len(v.segs)
	if compat {
		lead, end = v.compatWindow()
		delta = false
	}
	out := v.header(lead, compat)

	// The initialization section in force at the start of the window: that
	// of the first real segment (placeholders are never fetched).
	curMap := ""
	for _, vs := range v.segs[lead:] {
		if !vs.seg.Gap {
			curMap = vs.l.mapURI
			break
		}
	}
	skip := 0
	if delta && h.ServerControl != nil && h.ServerControl.CanSkipUntil != nil {
		skip = v.skippable(*h.ServerControl.CanSkipUntil)
	}
	if skip > 0 {
		out.Skip = &playlist.MediaSkip{SkippedSegments: skip}
	} else if curMap != "" {
		out.Map = &playlist.MediaMap{URI: curMap}
	}
	if compat {
		out.Version = compatVersion(h.Version, curMap != "")
	}
	skip = max(skip, lead) // segments before skip are not written
	maps := v.appendSegments(out, skip, end, curMap, compat)

	b, err := out.Marshal()
	if err != nil {
		return nil, err
	}
	if len(maps) > 0 {
		b = []byte(insertMaps(string(b), out.Segments, maps))
	}
	if len(out.Parts) > 0 {
		b = v.tagParts(b, out.Segments, curMap)
	}
	return b, nil
}

// tagParts puts in front of the head's parts after the last segment what
// applies to the segment they build and the window does not say yet: a
// muxer serving from its first part lists parts before its first segment
// is complete, so its EXT-X-DISCONTINUITY and its initialization section
// come before them, as they would come before that segment's EXTINF.
// curMap is the initialization section in force at the window's start.
func (v *view) tagParts(b []byte, segs []*playlist.MediaSegment, curMap string) []byte {
	for _, vs := range v.segs {
		if !vs.seg.Gap {
			curMap = vs.l.mapURI
		}
	}
	var tags string
	if v.partsTag {
		tags = "#EXT-X-DISCONTINUITY\n"
	}
	if m := v.head.mapURI; m != "" && m != curMap {
		tags += `#EXT-X-MAP:URI="` + m + "\"\n"
	}
	if tags == "" {
		return b
	}
	text := string(b)
	from := 0
	if len(segs) > 0 {
		if k := strings.LastIndex(text, "\n"+segs[len(segs)-1].URI+"\n"); k >= 0 {
			from = k
		}
	}
	k := strings.Index(text[from:], "#EXT-X-PART:")
	if k < 0 {
		return b
	}
	k += from
	return []byte(text[:k] + tags + text[k:])
}

// header is the rendered playlist without its segments: the newest
// layer's tags, numbered for a window starting at segs[lead].
func (v *view) header(lead int, compat bool) *playlist.Media {
	h := v.head.pl
	ds := int(v.ds)
	if lead > 0 && lead < len(v.segs) {
		ds = int(v.segs[lead].disc)
		if v.segs[lead].tag {
			ds--
		}
	}
	out := &playlist.Media{
		Version:               h.Version,
		IndependentSegments:   h.IndependentSegments,
		AllowCache:            h.AllowCache,
		TargetDuration:        h.TargetDuration,
		ServerControl:         h.ServerControl,
		PartInf:               h.PartInf,
		MediaSequence:         int(v.first) + lead,
		DiscontinuitySequence: &ds,
		PlaylistType:          h.PlaylistType,
		Start:                 h.Start,
		Parts:                 h.Parts,
		PreloadHint:           h.PreloadHint,
		Endlist:               h.Endlist,
	}
	if compat {
		out.ServerControl, out.PartInf, out.Parts, out.PreloadHint = nil, nil, nil, nil
		return out
	}
	if sc := out.ServerControl; sc != nil && sc.PartHoldBack != nil && out.PartInf != nil {
		// gohlslib writes 2.5 part targets; the LL-HLS revision of RFC 8216
		// asks for at least three (§4.4.3.8).
		if least := 3 * out.PartInf.PartTarget; *sc.PartHoldBack < least {
			c := *sc
			c.PartHoldBack = &least
			out.ServerControl = &c
		}
	}
	for _, r := range h.RenditionReport {
		rr := *r
		rr.LastMSN += int(v.head.offset)
		rr.URI = v.uriPrefix + rr.URI
		out.RenditionReport = append(out.RenditionReport, &rr)
	}
	if len(h.RenditionReport) == 0 && h.ServerControl != nil && h.ServerControl.CanBlockReload {
		out.RenditionReport = v.renditionReports()
	}
	return out
}

// appendSegments adds segs[skip:end] to out. curMap is the initialization
// section in force at the window's start; the result maps an index in
// out.Segments to the EXT-X-MAP to put before that segment.
func (v *view) appendSegments(out *playlist.Media, skip, end int, curMap string, compat bool) map[int]string {
	maps := map[int]string{}
	for k, vs := range v.segs[:end] {
		if !vs.seg.Gap && vs.l.mapURI != curMap {
			curMap = vs.l.mapURI
			if k >= skip {
				maps[k-skip] = curMap
			}
		}
		if k < skip {
			continue
		}
		seg := *vs.seg
		seg.Discontinuity = vs.tag
		if compat && vs.tag && vs.l.mapURI != "" {
			// VLC 3 does not fetch the new initialization section at a
			// discontinuity: the compatible view carries it in the segment
			// (see compat.go, selfInitializing).
			seg.URI = compatInitPrefix + seg.URI
		}
		if compat || k < len(v.segs)-2 {
			seg.Parts = nil // parts are listed for the last two segments only
		}
		if r := int(math.Round(seg.Duration.Seconds())); r > out.TargetDuration {
			out.TargetDuration = r
		}
		out.Segments = append(out.Segments, &seg)
	}
	return maps
}

// compatView is the view a compatible media playlist shows. At an fMP4
// discontinuity it holds the previous muxer's final window until the new
// one has compatMinSegments segments after the discontinuity, then lists
// from the discontinuity on: a player then reaches the discontinuity in
// every media playlist (video, audio) at once, after playing out what it
// had. VLC 3 resets its clock at a discontinuity only when all of its
// streams (one per media playlist) report it in the same round
// (PlaylistManager::dequeue keeps the highest status); otherwise it stalls
// for good after restarting its demuxers (docs/players.md). MPEG-TS
// streams have one media playlist and are shown as they are.
func compatView(layers []*layer, segmentCount int) *view {
	v := buildView(layers, segmentCount)
	for len(layers) > 1 {
		lead, end := v.compatWindow()
		k := lead
		for k < end && !(v.segs[k].tag && v.segs[k].l.mapURI != "") {
			k++
		}
		if k == end || end-k >= compatMinSegments {
			return v
		}
		layers = layers[:len(layers)-1]
		older := buildView(layers, segmentCount)
		if older.realSegments() < compatMinSegments {
			return v
		}
		v = older
	}
	return v
}

// compatWindow is the part of the window a compatible view lists,
// segs[lead:end]: never an EXT-X-GAP placeholder, which players without
// Low-Latency support fetch and fail on (VLC 3 ends the stream at its
// 404). Leading placeholders are left out. One further in (after a
// publisher reconnect, the number of the segment the replaced muxer was
// building when it stopped: its parts were announced, so the number stays
// taken) splits the window: the view lists the segments after it once
// there are compatMinSegments of them, and until then the ones before it
// while they are as many, so that it holds three target durations of
// media (RFC 8216 §6.2.2) while the numbers after the placeholder fill.
func (v *view) compatWindow() (lead, end int) {
	end = len(v.segs)
	for lead < end && v.segs[lead].seg.Gap {
		lead++
	}
	for k := end - 1; k > lead; k-- {
		if !v.segs[k].seg.Gap {
			continue
		}
		switch {
		case end-(k+1) >= compatMinSegments:
			return k + 1, end
		case k-lead >= compatMinSegments || end == k+1:
			end = k
		default:
			return k + 1, end // too short either way: the newest media
		}
	}
	return lead, end
}

// insertMaps puts an EXT-X-MAP line in front of the tags of the segments
// listed in maps (gohlslib's playlist type holds a single EXT-X-MAP). A
// segment's tags start right after the previous segment's URI line, so the
// text is walked segment by segment.
func insertMaps(text string, segs []*playlist.MediaSegment, maps map[int]string) string {
	var b strings.Builder
	b.Grow(len(text) + 64*len(maps))
	cursor := 0
	for k, seg := range segs {
		line := "\n" + seg.URI + "\n"
		idx := strings.Index(text[cursor:], line)
		if idx < 0 {
			break // cannot happen: Marshal writes every URI on its own line
		}
		end := cursor + idx + len(line)
		b.WriteString(text[cursor:end])
		cursor = end
		if m, ok := maps[k+1]; ok {
			// Conventionally after the segment's EXT-X-DISCONTINUITY.
			const disc = "#EXT-X-DISCONTINUITY\n"
			if strings.HasPrefix(text[cursor:], disc) {
				b.WriteString(disc)
				cursor += len(disc)
			}
			b.WriteString(`#EXT-X-MAP:URI="` + m + "\"\n")
		}
	}
	b.WriteString(text[cursor:])
	return b.String()
}
