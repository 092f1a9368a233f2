package origin

import (
	"net/http"
	"strconv"
	"time"
)

// Media objects: segments, parts and initialization sections, served by
// the muxer instance whose prefix their name carries. An instance stays
// until caches can no longer list its objects (see muxerSet), so a name a
// playlist listed is found or, once gone for good, answered 404.

// serveObject serves a segment, part or initialization section from the
// instance whose prefix the name carries. A Low-Latency part that is not
// complete yet (the preload hint) is waited for, bounded.
func (s *stream) serveObject(w http.ResponseWriter, r *http.Request, file string) {
	prefix, ok := filePrefix(file)
	if !ok {
		s.gone(w)
		return
	}
	sid, partID, isPart := parsePartName(file)
	var deadline *time.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	for {
		s.mu.Lock()
		var inst *instance
		for _, i := range s.instances {
			if !i.closed && i.snap != nil && i.snap.prefix == prefix {
				inst = i
				break
			}
		}
		changed := s.changed
		pending := false
		if inst != nil && isPart {
			if l := inst.snap.media[sid+mediaSuffix]; l != nil && l.hintPart >= 0 && partID >= l.hintPart {
				if inst.frozen || partID > l.hintPart+1 {
					inst = nil // never coming, or not announced yet
				} else {
					pending = true
				}
			}
		}
		s.mu.Unlock()
		if inst == nil {
			s.gone(w)
			return
		}
		if !pending {
			pw := &probeWriter{ResponseWriter: w}
			inst.muxer.Handle(pw, r)
			if !pw.wrote {
				s.gone(w)
			}
			return
		}
		if deadline == nil {
			deadline = time.NewTimer(s.blockTimeout())
		}
		if !s.await(w, r, changed, deadline.C) {
			return
		}
	}
}

// probeWriter records whether the muxer's handler answered at all: gohlslib
// writes nothing for a name it does not know.
type probeWriter struct {
	http.ResponseWriter
	wrote bool
}

func (p *probeWriter) WriteHeader(code int) {
	p.wrote = true
	p.ResponseWriter.WriteHeader(code)
}

func (p *probeWriter) Write(b []byte) (int, error) {
	p.wrote = true
	return p.ResponseWriter.Write(b)
}

// serveSelfInitializing answers compat_init_<seg>: the initialization
// section of the fMP4 segment seg followed by the segment (see
// compatInitPrefix). Only a complete segment a muxer still lists, with an
// EXT-X-MAP, has one; anything else is not found.
func (s *stream) serveSelfInitializing(w http.ResponseWriter, r *http.Request, seg string) {
	prefix, ok := filePrefix(seg)
	if _, _, isPart := parsePartName(seg); !ok || isPart {
		s.gone(w)
		return
	}
	var inst *instance
	mapURI := ""
	s.mu.Lock()
	for _, i := range s.instances {
		if i.closed || i.snap == nil || i.snap.prefix != prefix {
			continue
		}
		for _, l := range i.snap.media {
			for _, ms := range l.pl.Segments {
				if ms.URI == seg && !ms.Gap {
					inst, mapURI = i, l.mapURI
				}
			}
		}
	}
	s.mu.Unlock()
	if inst == nil || mapURI == "" {
		s.gone(w)
		return
	}
	code, _, init := inst.fetch(mapURI)
	if code != http.StatusOK {
		s.gone(w)
		return
	}
	code, hdr, body := inst.fetch(seg)
	if code != http.StatusOK {
		s.gone(w)
		return
	}
	h := w.Header()
	for _, k := range []string{"Content-Type", "Cache-Control"} {
		if v := hdr.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(init)+len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := w.Write(init); err == nil {
		_, _ = w.Write(body)
	}
}
