package hlscheck

import (
	"context"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamgrid/streamgrid/internal/sleep"
)

// follower reloads one media playlist and applies the rules to what it
// sees from one reload to the next.
type follower struct {
	r      *run
	url    string
	multi  bool     // part of a multivariant stream with other media playlists
	others []string // every media playlist of the stream (absolute URLs)

	reloads   int
	lastMSN   int
	lastDS    int
	seen      map[int]*segSeen // by media sequence number
	listed    map[string]*listedObj
	fetched   map[string]bool
	prevHint  string // preload hint of the previous reload
	prevLast  string // last part listed by the previous reload
	probed    bool   // blocking and delta checks done
	probeNext time.Time
}

type segSeen struct {
	uri  string
	disc int
	pdt  *time.Time
	dur  time.Duration
}

// listedObj is a segment or part in the current playlist.
type listedObj struct {
	what string
	dur  time.Duration
	seen time.Time // the reload that last listed it began then
}

var mapRE = regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`)

func (f *follower) follow(ctx context.Context) {
	f.seen = map[int]*segSeen{}
	f.listed = map[string]*listedObj{}
	f.fetched = map[string]bool{}
	f.lastMSN, f.lastDS = -1, -1
	var last *playlist.Media
	for ctx.Err() == nil {
		body, _, err := f.r.getCtx(ctx, f.url)
		if err != nil {
			if ctx.Err() == nil {
				f.r.violate(RulePlaylist, f.url, "reload: %v", err)
				sleep.For(ctx, time.Second)
			}
			continue
		}
		pl, err := playlist.Unmarshal(body)
		if err != nil {
			f.r.violate(RulePlaylist, f.url, "does not parse: %v", err)
			sleep.For(ctx, time.Second)
			continue
		}
		m, ok := pl.(*playlist.Media)
		if !ok {
			f.r.violate(RulePlaylist, f.url, "a media playlist was expected")
			return
		}
		f.reloads++
		f.r.count(func(rep *Report) {
			rep.Reloads++
			if m.ServerControl != nil && m.ServerControl.CanBlockReload {
				rep.LowLatency = true
			}
		})
		f.observe(m, mapRE.FindAllStringSubmatch(string(body), -1), discBeforeParts(body))
		last = m
		if m.Endlist {
			break
		}
		if !f.probed && len(m.Segments) > 0 && time.Now().After(f.probeNext) {
			f.probe(ctx, m)
		}
		// Reload at the pace of a player: every part target for Low-Latency
		// playlists, half a target duration otherwise.
		every := time.Duration(m.TargetDuration) * time.Second / 2
		if m.PartInf != nil && m.PartInf.PartTarget > 0 {
			every = m.PartInf.PartTarget
		}
		sleep.For(ctx, min(max(every, 50*time.Millisecond), 2*time.Second))
	}
	if last != nil {
		// What is listed at the end is still due a fetch after it leaves:
		// schedule it as if it left now.
		f.leave(last, f.listed, time.Now())
	}
}

// playlistDuration is the sum of a playlist's EXTINF durations.
func playlistDuration(m *playlist.Media) time.Duration {
	var d time.Duration
	for _, s := range m.Segments {
		d += s.Duration
	}
	return d
}

// discBeforeParts reports whether an EXT-X-DISCONTINUITY comes after a
// playlist's last segment: the parts listed after that segment build one
// that opens a discontinuity (gohlslib's parser drops the tag there).
func discBeforeParts(body []byte) bool {
	text := string(body)
	end := strings.TrimRight(text, "\n")
	for k := len(end); k > 0; {
		start := strings.LastIndexByte(end[:k], '\n') + 1
		if line := end[start:k]; line != "" && !strings.HasPrefix(line, "#") {
			return strings.Contains(text[k:], "\n#EXT-X-DISCONTINUITY\n")
		}
		k = start - 1
	}
	return false
}

// observe applies the per-reload rules and schedules object fetches.
// trailingDisc: the parts after the last segment open a discontinuity.
func (f *follower) observe(m *playlist.Media, maps [][]string, trailingDisc bool) {
	now := time.Now()
	ds := f.checkSequences(m)
	f.checkTargetDuration(m)
	f.checkPartTarget(m)
	f.checkSegments(m, ds)
	cur := f.listedIn(m, maps, now)
	f.fetchNew(cur)
	f.relist(m, cur, now)
	f.checkPreloadHint(m, trailingDisc)
	f.checkRenditionReports(m)
}

// checkSequences checks that EXT-X-MEDIA-SEQUENCE and
// EXT-X-DISCONTINUITY-SEQUENCE never go back; it returns the latter.
func (f *follower) checkSequences(m *playlist.Media) (ds int) {
	r := f.r
	r.exercised(RuleMediaSequence)
	if f.lastMSN >= 0 && m.MediaSequence < f.lastMSN {
		r.violate(RuleMediaSequence, f.url, "EXT-X-MEDIA-SEQUENCE went back from %d to %d", f.lastMSN, m.MediaSequence)
	}
	if m.DiscontinuitySequence != nil {
		ds = *m.DiscontinuitySequence
	}
	r.exercised(RuleDiscontinuity)
	if f.lastDS >= 0 && ds < f.lastDS {
		r.violate(RuleDiscontinuity, f.url, "EXT-X-DISCONTINUITY-SEQUENCE went back from %d to %d", f.lastDS, ds)
	}
	f.lastMSN, f.lastDS = m.MediaSequence, ds
	return ds
}

// checkTargetDuration checks every EXTINF, rounded, against
// EXT-X-TARGETDURATION.
func (f *follower) checkTargetDuration(m *playlist.Media) {
	f.r.exercised(RuleTargetDuration)
	for k, s := range m.Segments {
		if rd := int(math.Round(s.Duration.Seconds())); rd > m.TargetDuration {
			f.r.violate(RuleTargetDuration, f.url, "segment %d: EXTINF %.3f s rounds to %d s, above EXT-X-TARGETDURATION %d",
				m.MediaSequence+k, s.Duration.Seconds(), rd, m.TargetDuration)
		}
	}
}

// checkPartTarget checks, in a playlist with parts, EXT-X-PART-INF, the
// PART-HOLD-BACK and every part's duration.
func (f *follower) checkPartTarget(m *playlist.Media) {
	r := f.r
	partTarget := time.Duration(0)
	if m.PartInf != nil {
		partTarget = m.PartInf.PartTarget
	}
	hasParts := len(m.Parts) > 0
	for _, s := range m.Segments {
		hasParts = hasParts || len(s.Parts) > 0
	}
	if !hasParts && m.PartInf == nil {
		return
	}
	r.exercised(RulePartTarget)
	if partTarget <= 0 {
		r.violate(RulePartTarget, f.url, "EXT-X-PART listed without EXT-X-PART-INF")
		return
	}
	if sc := m.ServerControl; sc == nil || sc.PartHoldBack == nil {
		r.violate(RulePartTarget, f.url, "EXT-X-PART-INF without PART-HOLD-BACK in EXT-X-SERVER-CONTROL")
	} else if *sc.PartHoldBack < 3*partTarget {
		r.violate(RulePartTarget, f.url, "PART-HOLD-BACK %.3f s is less than three part targets (%.3f s)",
			sc.PartHoldBack.Seconds(), 3*partTarget.Seconds())
	}
	check := func(p *playlist.MediaPart) {
		// Rounding in the playlist text (5 decimals) is tolerated.
		if p.Duration > partTarget+time.Millisecond {
			r.violate(RulePartTarget, f.url, "part %s: %.3f s, above PART-TARGET %.3f s",
				p.URI, p.Duration.Seconds(), partTarget.Seconds())
		}
	}
	for _, s := range m.Segments {
		for _, p := range s.Parts {
			check(p)
		}
	}
	for _, p := range m.Parts {
		check(p)
	}
}

// checkSegments walks the segments in media sequence order, with their
// discontinuity numbers (ds is the playlist's discontinuity sequence): each
// is compared with what an earlier reload listed under its number, and
// consecutive dated segments with each other; f.seen remembers them.
func (f *follower) checkSegments(m *playlist.Media, ds int) {
	skipped := 0
	if m.Skip != nil {
		skipped = m.Skip.SkippedSegments
	}
	disc := ds
	var prev *segSeen
	for k, s := range m.Segments {
		msn := m.MediaSequence + skipped + k
		if s.Discontinuity {
			disc++
		}
		ss := &segSeen{uri: s.URI, disc: disc, pdt: s.DateTime, dur: s.Duration}
		if old := f.seen[msn]; old != nil {
			f.compareSeen(msn, s, disc, old)
			if ss.pdt == nil {
				ss.pdt = old.pdt
			}
		}
		if s.Gap {
			ss.uri = ""
		}
		// Consecutive dated segments without a discontinuity between them.
		if prev != nil && prev.pdt != nil && ss.pdt != nil && !s.Discontinuity {
			f.r.exercised(RuleDateTime)
			gap := ss.pdt.Sub(*prev.pdt)
			if diff := gap - prev.dur; diff > 500*time.Millisecond || diff < -500*time.Millisecond {
				f.r.violate(RuleDateTime, f.url, "segments %d and %d are dated %.3f s apart, but the first lasts %.3f s",
					msn-1, msn, gap.Seconds(), prev.dur.Seconds())
			}
		}
		f.seen[msn] = ss
		prev = ss
	}
}

// compareSeen checks segment msn, s with discontinuity number disc, against
// old, what an earlier reload listed under that number: same URI (unless a
// gap), same discontinuity number, same date.
func (f *follower) compareSeen(msn int, s *playlist.MediaSegment, disc int, old *segSeen) {
	r := f.r
	if !s.Gap && old.uri != "" && old.uri != s.URI {
		r.violate(RuleMediaSequence, f.url, "segment %d was %s, is now %s", msn, old.uri, s.URI)
	}
	if old.disc != disc {
		r.violate(RuleDiscontinuity, f.url, "segment %d had discontinuity number %d, now %d", msn, old.disc, disc)
	}
	if old.pdt != nil && s.DateTime != nil {
		r.exercised(RuleDateTime)
		if d := s.DateTime.Sub(*old.pdt); d > time.Millisecond || d < -time.Millisecond {
			r.violate(RuleDateTime, f.url, "segment %d was dated %s, now %s", msn,
				old.pdt.Format(time.RFC3339Nano), s.DateTime.Format(time.RFC3339Nano))
		}
	}
}

// listedIn returns what m lists, by absolute URL: segments (gaps aside),
// parts and the initialization sections maps names.
func (f *follower) listedIn(m *playlist.Media, maps [][]string, now time.Time) map[string]*listedObj {
	cur := map[string]*listedObj{}
	for _, s := range m.Segments {
		if s.Gap {
			continue
		}
		cur[resolve(f.url, s.URI)] = &listedObj{what: "segment", dur: s.Duration, seen: now}
		for _, p := range s.Parts {
			cur[resolve(f.url, p.URI)] = &listedObj{what: "part", dur: p.Duration, seen: now}
		}
	}
	for _, p := range m.Parts {
		cur[resolve(f.url, p.URI)] = &listedObj{what: "part", dur: p.Duration, seen: now}
	}
	for _, mm := range maps {
		cur[resolve(f.url, mm[1])] = &listedObj{what: "initialization section", seen: now}
	}
	return cur
}

// fetchNew fetches, once each, what cur lists for the first time, and
// counts the segments and parts.
func (f *follower) fetchNew(cur map[string]*listedObj) {
	for u, o := range cur {
		if f.fetched[u] {
			continue
		}
		f.fetched[u] = true
		f.r.fetch(fetchTask{url: u, playlist: f.url, what: o.what})
		f.r.count(func(rep *Report) {
			switch o.what {
			case "segment":
				rep.Segments++
			case "part":
				rep.Parts++
			}
		})
	}
}

// relist makes cur, what m lists, the listed set. What left is fetched once
// more just before the rules let it go. A delta update lists fewer segments
// without removing any.
func (f *follower) relist(m *playlist.Media, cur map[string]*listedObj, now time.Time) {
	gone := map[string]*listedObj{}
	for u, o := range f.listed {
		if cur[u] == nil && m.Skip == nil {
			gone[u] = o
		}
	}
	f.leave(m, gone, now)
	if m.Skip == nil {
		f.listed = cur
		return
	}
	for u, o := range cur {
		f.listed[u] = o
	}
}

// checkPreloadHint checks that the part the previous reload hinted is the
// next part listed, and remembers this reload's hint. A discontinuity (a
// new publisher, a new encoder) may leave a hint unfulfilled: the part
// after one is not judged (trailingDisc: one before the parts after the
// last segment).
func (f *follower) checkPreloadHint(m *playlist.Media, trailingDisc bool) {
	var parts []string
	var discAfter []bool // a discontinuity between parts[k-1] and parts[k]
	for _, s := range m.Segments {
		for j, p := range s.Parts {
			parts = append(parts, p.URI)
			discAfter = append(discAfter, j == 0 && s.Discontinuity)
		}
	}
	for j, p := range m.Parts {
		parts = append(parts, p.URI)
		discAfter = append(discAfter, j == 0 && trailingDisc)
	}
	if f.prevHint != "" && f.prevLast != "" {
		for k, p := range parts {
			if p == f.prevLast && k+1 < len(parts) {
				if discAfter[k+1] {
					break
				}
				f.r.exercised(RulePreloadHint)
				if parts[k+1] != f.prevHint {
					f.r.violate(RulePreloadHint, f.url, "the preload hint named %s, but the next part listed is %s", f.prevHint, parts[k+1])
				}
				break
			}
		}
	}
	f.prevHint, f.prevLast = "", ""
	if m.PreloadHint != nil && len(parts) > 0 {
		f.prevHint, f.prevLast = m.PreloadHint.URI, parts[len(parts)-1]
	}
}

// checkRenditionReports checks that a blocking playlist of a multivariant
// stream reports every other rendition.
func (f *follower) checkRenditionReports(m *playlist.Media) {
	if !f.multi || m.ServerControl == nil || !m.ServerControl.CanBlockReload {
		return
	}
	f.r.exercised(RuleRendition)
	have := map[string]bool{}
	for _, rr := range m.RenditionReport {
		have[resolve(f.url, rr.URI)] = true
	}
	for _, o := range f.others {
		if o != f.url && !have[o] {
			f.r.violate(RuleRendition, f.url, "no EXT-X-RENDITION-REPORT for %s", o)
		}
	}
}

// leave schedules the last fetch of objects that left the playlist: RFC
// 8216 §6.2.2 keeps them available for their duration plus the playlist's
// after they leave. They left after the last reload that listed them began
// (seen), so the fetch is made just before seen + duration + playlist
// duration: never later than the rule allows, whatever the reload pace.
func (f *follower) leave(m *playlist.Media, gone map[string]*listedObj, _ time.Time) {
	if len(gone) == 0 {
		return
	}
	pd := playlistDuration(m)
	const margin = 100 * time.Millisecond
	for u, o := range gone {
		if o.what == "initialization section" {
			continue // no rule on how long it outlives its listing
		}
		keep := max(o.dur+pd-margin, 0)
		f.r.later(fetchTask{url: u, playlist: f.url, what: o.what + " (left the playlist)", at: o.seen.Add(keep)})
	}
}

// probe exercises blocking reloads and delta updates once.
func (f *follower) probe(ctx context.Context, m *playlist.Media) {
	f.probeNext = time.Now().Add(time.Second)
	sc := m.ServerControl
	if sc == nil {
		f.probed = true
		return
	}
	r := f.r
	last := m.MediaSequence + len(m.Segments) - 1
	if m.Skip != nil {
		last += m.Skip.SkippedSegments
	}
	if sc.CanBlockReload {
		r.exercised(RuleBlockingReload)
		// The next part: the one after the parts of the segment being built.
		msn, part := last+1, len(m.Parts)
		if m.PartInf == nil {
			msn, part = last+1, -1
		}
		q := "_HLS_msn=" + itoa(msn)
		if part >= 0 {
			q += "&_HLS_part=" + itoa(part)
		}
		target := time.Duration(m.TargetDuration) * time.Second
		bctx, cancel := context.WithTimeout(ctx, 3*target+2*time.Second)
		began := time.Now()
		body, code, err := r.getCtx(bctx, withQuery(f.url, q))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.violate(RuleBlockingReload, f.url, "blocking request %s: %v (status %d)", q, err, code)
		default:
			if !holds(body, msn, part) {
				r.violate(RuleBlockingReload, f.url, "blocking request %s answered after %v without that segment or part",
					q, time.Since(began).Round(time.Millisecond))
			}
		}
		// Too far ahead: past the last segment plus two (a margin for
		// segments completed meanwhile).
		far := "_HLS_msn=" + itoa(last+6)
		fctx, cancel := context.WithTimeout(ctx, 3*target+2*time.Second)
		_, code, err = r.getCtx(fctx, withQuery(f.url, far))
		cancel()
		if ctx.Err() == nil && code != 400 {
			r.violate(RuleBlockingReload, f.url, "request %s, far past the last segment %d, answered %d (%v), not 400", far, last, code, err)
		}
	}
	if sc.CanSkipUntil != nil && *sc.CanSkipUntil > 0 {
		r.exercised(RuleDeltaUpdate)
		full, _, err1 := r.getCtx(ctx, f.url)
		delta, _, err2 := r.getCtx(ctx, withQuery(f.url, "_HLS_skip=YES"))
		if ctx.Err() != nil {
			return
		}
		if err := errors.Join(err1, err2); err != nil {
			r.violate(RuleDeltaUpdate, f.url, "%v", err)
		} else if msg := compareDelta(full, delta, *sc.CanSkipUntil); msg != "" {
			r.violate(RuleDeltaUpdate, f.url, "%s", msg)
		}
	}
	f.probed = true
}

func itoa(n int) string { return strconv.Itoa(n) }

// holds reports whether a playlist lists segment msn (part part of it, or
// a later segment).
func holds(body []byte, msn, part int) bool {
	pl, err := playlist.Unmarshal(body)
	if err != nil {
		return false
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		return false
	}
	skipped := 0
	if m.Skip != nil {
		skipped = m.Skip.SkippedSegments
	}
	last := m.MediaSequence + skipped + len(m.Segments) - 1
	switch {
	case part < 0:
		return last >= msn
	case last >= msn:
		return true
	case last == msn-1:
		return len(m.Parts) > part
	}
	return false
}

// compareDelta checks a delta update against a full playlist fetched just
// before it: EXT-X-SKIP present, and the segments it lists are those the
// full playlist lists under the same numbers.
func compareDelta(fullB, deltaB []byte, skipUntil time.Duration) string {
	fp, err := playlist.Unmarshal(fullB)
	if err != nil {
		return "full playlist: " + err.Error()
	}
	dp, err := playlist.Unmarshal(deltaB)
	if err != nil {
		return "delta update does not parse: " + err.Error()
	}
	full, ok1 := fp.(*playlist.Media)
	delta, ok2 := dp.(*playlist.Media)
	if !ok1 || !ok2 {
		return "not media playlists"
	}
	if delta.Skip == nil {
		if playlistDuration(full) > skipUntil+2*time.Duration(full.TargetDuration)*time.Second {
			return "an _HLS_skip=YES request answered without EXT-X-SKIP, though the playlist is longer than CAN-SKIP-UNTIL"
		}
		return ""
	}
	byMSN := map[int]string{}
	for k, s := range full.Segments {
		byMSN[full.MediaSequence+k] = s.URI
	}
	matched := 0
	for k, s := range delta.Segments {
		msn := delta.MediaSequence + delta.Skip.SkippedSegments + k
		if u, ok := byMSN[msn]; ok {
			matched++
			if u != s.URI {
				return "delta update lists " + s.URI + " as segment " + itoa(msn) + ", the full playlist " + u
			}
		}
	}
	if matched == 0 {
		return "no segment of the delta update is in the full playlist under the same number"
	}
	return ""
}
