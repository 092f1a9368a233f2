package llhls

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/codecparams"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
)

const playlistType = "application/vnd.apple.mpegurl"

// Handle answers a GET for one of the muxer's files, named by the last
// element of the URL path. It may be called from any goroutine. A name the
// muxer does not hold (never, or no longer) gets nothing written.
func (m *Muxer) Handle(w http.ResponseWriter, r *http.Request) {
	name := filepath.Base(r.URL.Path)
	if name == "index.m3u8" {
		m.serveMultivariant(w, r)
		return
	}
	for _, s := range m.streams {
		if name == s.playlistName {
			s.serveMediaPlaylist(w, r)
			return
		}
	}
	rest, ok := strings.CutPrefix(name, m.prefix+"_")
	if !ok {
		return
	}
	for _, s := range m.streams {
		obj, ok := strings.CutPrefix(rest, s.id+"_")
		if !ok {
			continue
		}
		switch {
		case obj == "init.mp4":
			s.serveInit(w)
		case strings.HasPrefix(obj, "seg") && strings.HasSuffix(obj, ".mp4"):
			if id, err := strconv.ParseUint(obj[3:len(obj)-4], 10, 64); err == nil {
				s.serveSegment(w, id)
			}
		case strings.HasPrefix(obj, "part") && strings.HasSuffix(obj, ".mp4"):
			if id, err := strconv.ParseUint(obj[4:len(obj)-4], 10, 64); err == nil {
				s.servePart(w, id)
			}
		}
		return
	}
}

func writeObject(w http.ResponseWriter, contentType string, size int64) {
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+objectMaxAge)
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
}

func (s *stream) serveInit(w http.ResponseWriter) {
	s.m.mu.Lock()
	init := s.init
	closed := s.m.closed
	s.m.mu.Unlock()
	if init == nil || closed {
		return
	}
	writeObject(w, s.contentType, int64(len(init)))
	_, _ = w.Write(init)
}

// chunk is a part's bytes as captured under the lock.
type chunk struct {
	data      []byte
	path      string
	off, size int64
}

func (p *part) chunk() chunk {
	c := chunk{data: p.data, off: p.off, size: p.size}
	if p.data == nil && p.seg.file != nil {
		c.path = p.seg.file.path
	}
	return c
}

// serveChunks writes parts back to back. With segments on disk, the file
// is opened first: a file removed meanwhile (its segments all dropped) is
// answered with nothing. A file is only appended to, so the bytes a chunk
// names do not change while they are read.
func (s *stream) serveChunks(w http.ResponseWriter, cs []chunk) {
	var total int64
	var f *os.File
	for _, c := range cs {
		total += c.size
		if c.path != "" && f == nil {
			var err error
			if f, err = os.Open(c.path); err != nil {
				return
			}
			defer f.Close()
		}
	}
	writeObject(w, s.contentType, total)
	for _, c := range cs {
		var err error
		if c.path != "" {
			_, err = io.Copy(w, io.NewSectionReader(f, c.off, c.size))
		} else {
			_, err = w.Write(c.data)
		}
		if err != nil {
			return
		}
	}
}

func (s *stream) serveSegment(w http.ResponseWriter, id uint64) {
	s.m.mu.Lock()
	var cs []chunk
	if !s.m.closed {
		for _, sg := range s.segments {
			if !sg.gap && sg.id == id {
				cs = make([]chunk, len(sg.parts))
				for i, p := range sg.parts {
					cs[i] = p.chunk()
				}
				break
			}
		}
	}
	s.m.mu.Unlock()
	if cs != nil {
		s.serveChunks(w, cs)
	}
}

// findPart returns a complete part still held. Called with mu held.
func (s *stream) findPart(id uint64) *part {
	if s.cur != nil {
		for _, p := range s.cur.parts {
			if p.id == id {
				return p
			}
		}
	}
	for i := len(s.segments) - 1; i >= 0; i-- {
		ps := s.segments[i].parts
		if len(ps) > 0 && ps[0].id <= id && id <= ps[len(ps)-1].id {
			return ps[id-ps[0].id]
		}
	}
	return nil
}

// servePart serves a complete part (Low-Latency only). The part named by
// the preload hint is waited for: until it is complete, or 404 once the
// muxer closes.
func (s *stream) servePart(w http.ResponseWriter, id uint64) {
	if !s.m.lowLatency() {
		return
	}
	s.m.mu.Lock()
	if s.nextPartID > 0 && id == s.nextPartID {
		for !s.m.closed && s.nextPartID <= id {
			s.m.cond.Wait()
		}
		if s.m.closed {
			s.m.mu.Unlock()
			w.WriteHeader(http.StatusNotFound)
			return
		}
	}
	var c chunk
	p := (*part)(nil)
	if !s.m.closed {
		p = s.findPart(id)
	}
	if p != nil {
		c = p.chunk()
	}
	s.m.mu.Unlock()
	if p != nil {
		s.serveChunks(w, []chunk{c})
	}
}

// hasContent: a playlist is served once a segment (fMP4: two) is complete;
// with a declared target duration, once a part is. Called with mu held.
func (s *stream) hasContent() bool {
	if s.m.early() && s.cur != nil && len(s.cur.parts) > 0 && s.init != nil {
		return true
	}
	if s.m.lowLatency() {
		return len(s.segments) > 0 && !s.segments[len(s.segments)-1].gap
	}
	return len(s.segments) >= 2
}

// hasPart reports whether part p of segment msn is complete; a part index
// past a segment's last is part 0 of the next. Called with mu held.
func (s *stream) hasPart(msn, p uint64) bool {
	for _, sg := range s.segments {
		if sg.gap || sg.id != msn {
			continue
		}
		if p < uint64(len(sg.parts)) {
			return true
		}
		msn, p = msn+1, 0
	}
	return msn == s.nextSegID && s.cur != nil && p < uint64(len(s.cur.parts))
}

func queryValue(q url.Values, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *stream) serveMediaPlaylist(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	msn, partQ, skip := queryValue(q, "_HLS_msn"), queryValue(q, "_HLS_part"), queryValue(q, "_HLS_skip")
	delta := false
	var msnN, partN uint64
	blocking := false
	if s.m.lowLatency() {
		delta = skip == "YES" || skip == "v2"
		var err1, err2 error
		if msn != "" {
			msnN, err1 = strconv.ParseUint(msn, 10, 64)
		}
		if partQ != "" {
			partN, err2 = strconv.ParseUint(partQ, 10, 64)
		}
		if err1 != nil || err2 != nil || (msn == "" && partQ != "") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		blocking = msn != ""
	}

	m := s.m
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if blocking {
			lo := int64(s.nextSegID) - int64(len(s.segments)-1)
			if int64(msnN) > int64(s.nextSegID)+1 || int64(msnN) < lo {
				m.mu.Unlock()
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if s.hasContent() && s.hasPart(msnN, partN) {
				break
			}
		} else if s.hasContent() {
			break
		}
		m.cond.Wait()
	}
	body, err := s.mediaPlaylist(delta, r.URL.RawQuery)
	cc := "no-cache"
	if !m.lowLatency() && len(s.segments) > 0 {
		cc = "public, max-age=" + strconv.Itoa(int(s.segments[len(s.segments)-1].duration().Seconds()))
	}
	m.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", cc)
	w.Header().Set("Content-Type", playlistType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// withQuery appends the request's query, less the _HLS_ directives, to a URI.
func withQuery(uri, rawQuery string) string {
	if rawQuery == "" {
		return uri
	}
	return uri + "?" + rawQuery
}

func filterQuery(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return rawQuery
	}
	for k := range q {
		if strings.HasPrefix(k, "_HLS_") {
			delete(q, k)
		}
	}
	return q.Encode()
}

// mediaPlaylist marshals the stream's playlist. Called with mu held.
func (s *stream) mediaPlaylist(delta bool, rawQuery string) ([]byte, error) {
	ll := s.m.lowLatency()
	skipBoundary := time.Duration(s.targetDuration) * 6 * time.Second
	rawQuery = filterQuery(rawQuery)
	pl := &playlist.Media{Version: 10, TargetDuration: s.targetDuration, MediaSequence: s.deleted}
	if ll {
		hold := s.partTarget * 25 / 10
		pl.ServerControl = &playlist.MediaServerControl{CanBlockReload: true, PartHoldBack: &hold, CanSkipUntil: &skipBoundary}
		pl.PartInf = &playlist.MediaPartInf{PartTarget: s.partTarget}
	}
	skipped := 0
	if !delta {
		pl.Map = &playlist.MediaMap{URI: withQuery(s.initName, rawQuery)}
	} else {
		var d time.Duration
		shown := 0
		for _, sg := range s.segments {
			d += sg.duration()
			if d >= skipBoundary {
				break
			}
			shown++
		}
		skipped = len(s.segments) - shown
		pl.Skip = &playlist.MediaSkip{SkippedSegments: skipped}
	}
	mkParts := func(ps []*part) []*playlist.MediaPart {
		out := make([]*playlist.MediaPart, 0, len(ps))
		for _, p := range ps {
			out = append(out, &playlist.MediaPart{Duration: p.endDTS - p.startDTS, URI: withQuery(p.name, rawQuery), Independent: p.independent})
		}
		return out
	}
	for i, sg := range s.segments {
		if i < skipped {
			continue
		}
		if sg.gap {
			pl.Segments = append(pl.Segments, &playlist.MediaSegment{Gap: true, Duration: sg.duration(), URI: "gap.mp4"})
			continue
		}
		ms := &playlist.MediaSegment{Duration: sg.duration(), URI: withQuery(sg.name, rawQuery)}
		if len(s.segments)-i <= 2 {
			ntp := sg.startNTP
			ms.DateTime = &ntp
			if ll {
				ms.Parts = mkParts(sg.parts)
			}
		}
		pl.Segments = append(pl.Segments, ms)
	}
	if ll {
		pl.Parts = mkParts(s.cur.parts)
		pl.PreloadHint = &playlist.MediaPreloadHint{URI: withQuery(s.partName(s.nextPartID), rawQuery)}
	}
	return pl.Marshal()
}

func (m *Muxer) serveMultivariant(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	for !m.closed && !m.streams[0].hasContent() {
		m.cond.Wait()
	}
	if m.closed {
		m.mu.Unlock()
		w.WriteHeader(http.StatusNotFound)
		return
	}
	body, err := m.multivariant(r.URL.RawQuery)
	m.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age="+multivariantMaxAg)
	w.Header().Set("Content-Type", playlistType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// bandwidth is the peak and the average bit rate of the complete segments.
func bandwidth(segs []*segment) (peak, avg int) {
	var size, dur uint64
	for _, sg := range segs {
		if sg.gap || sg.duration() <= 0 {
			continue
		}
		b := 8 * uint64(sg.size) * uint64(time.Second) / uint64(sg.duration())
		peak = max(peak, int(b))
		size += uint64(sg.size)
		dur += uint64(sg.duration())
	}
	if dur > 0 {
		avg = int(8 * size * uint64(time.Second) / dur)
	}
	return peak, avg
}

// sofar is the segment being built as far as its complete parts go.
// Called with mu held.
func (sg *segment) sofar() *segment {
	out := &segment{startDTS: sg.startDTS, endDTS: sg.startDTS}
	for _, p := range sg.parts {
		out.endDTS, out.size = p.endDTS, out.size+p.size
	}
	return out
}

// videoSPS is h264's or h265's SPS: what the multivariant playlist shows
// of a video track.
type videoSPS interface {
	Unmarshal(buf []byte) error
	Width() int
	Height() int
	FPS() float64
}

// multivariant marshals index.m3u8. Called with mu held.
func (m *Muxer) multivariant(rawQuery string) ([]byte, error) {
	peak, avg := bandwidth(m.streams[0].segments)
	if peak == 0 && m.streams[0].cur != nil {
		// Served from the first part: the segment being built so far.
		peak, avg = bandwidth([]*segment{m.streams[0].cur.sofar()})
	}
	v := &playlist.MultivariantVariant{Bandwidth: peak, AverageBandwidth: &avg}
	pl := &playlist.Multivariant{Version: 10, IndependentSegments: true, Variants: []*playlist.MultivariantVariant{v}}
	for _, s := range m.streams {
		c := s.track.Codec
		if cp := codecparams.Marshal(c); cp != "" && !slices.Contains(v.Codecs, cp) {
			v.Codecs = append(v.Codecs, cp)
		}
		var sps videoSPS
		var rawSPS []byte
		switch c := c.(type) {
		case *codecs.H264:
			sps, rawSPS = &h264.SPS{}, c.SPS
		case *codecs.H265:
			sps, rawSPS = &h265.SPS{}, c.SPS
		}
		if sps != nil {
			if err := sps.Unmarshal(rawSPS); err != nil {
				return nil, err
			}
			v.Resolution = strconv.Itoa(sps.Width()) + "x" + strconv.Itoa(sps.Height())
			if f := sps.FPS(); f != 0 {
				v.FrameRate = &f
			}
		}
		uri := withQuery(s.playlistName, rawQuery)
		if s.leading {
			v.URI = uri
		}
		if s.rendition {
			v.Audio = "audio"
			rd := &playlist.MultivariantRendition{
				Type: playlist.MultivariantRenditionTypeAudio, GroupID: "audio",
				Name: s.name, Language: s.language, Autoselect: true, Default: s.isDefault,
			}
			if !s.leading {
				u := uri
				rd.URI = &u
			}
			pl.Renditions = append(pl.Renditions, rd)
		}
	}
	return pl.Marshal()
}
