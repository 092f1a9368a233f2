package origin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

const (
	// maxHeaderBytes bounds a request's headers: caches send a few short ones.
	maxHeaderBytes = 16 << 10
	// writeSlack is what the write timeout allows beyond the longest hold.
	writeSlack = 30 * time.Second
)

// writeTimeout bounds a whole exchange: the longest blocking hold (three
// target durations and a part, at the configured durations; a playlist's
// larger target raises the hold, so the bound is at least two minutes) plus
// the time to write a segment.
func (o *Origin) writeTimeout() time.Duration {
	hold := 3*o.HLS.SegmentDuration + o.HLS.PartDuration
	if o.blockTimeout > 0 {
		hold = o.blockTimeout
	}
	return max(hold+writeSlack, 2*time.Minute)
}

const (
	mpegurl       = "application/vnd.apple.mpegurl"
	maxFileName   = 128
	streamsPath   = "/_streams"
	multivariant  = "index.m3u8"
	mediaSuffix   = "_stream.m3u8"
	retryAfterSec = "1"
)

func (o *Origin) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !o.started {
		http.Error(w, "origin not started", http.StatusServiceUnavailable)
		return
	}
	if o.secret != nil && subtle.ConstantTimeCompare([]byte(r.Header.Get(hlsproto.HeaderAuth)), o.secret) != 1 {
		o.m.requests.WithLabelValues("unauthorized").Inc()
		http.Error(w, "origins serve caches only", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength != 0 {
		o.m.requests.WithLabelValues("bad").Inc()
		http.Error(w, "request body not accepted", http.StatusRequestEntityTooLarge)
		return
	}
	if r.URL.Path == streamsPath {
		o.m.requests.WithLabelValues("streams").Inc()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		list := o.Streams()
		if list == nil {
			list = []StreamStatus{}
		}
		_ = json.NewEncoder(w).Encode(list)
		return
	}
	path, file, ok := splitRequestPath(r.URL.Path)
	if !ok {
		o.m.requests.WithLabelValues("bad").Inc()
		http.Error(w, "invalid stream path or file name", http.StatusBadRequest)
		return
	}
	s := o.lookup(path)
	if s == nil {
		http.Error(w, "stream not found", http.StatusNotFound)
		return
	}
	s.touch()
	if !s.serves() && !s.awaitServing(r.Context()) {
		// Being claimed right now: a cache routed here by the new lease
		// should come back in a moment, not tell viewers the stream is gone.
		w.Header().Set("Retry-After", retryAfterSec)
		http.Error(w, "stream starting", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set(hlsproto.HeaderOrigin, o.Node)
	h.Set(hlsproto.HeaderEpoch, strconv.FormatUint(s.epoch.Load(), 10))
	switch {
	case file == multivariant || file == compatMultivariant:
		o.m.requests.WithLabelValues("multivariant").Inc()
		s.serveMultivariant(w, r, file == compatMultivariant)
	case strings.HasSuffix(file, mediaSuffix):
		name, compat := strings.CutPrefix(file, compatPrefix)
		s.serveMedia(w, r, name, compat)
	case strings.HasPrefix(file, compatInitPrefix):
		o.m.requests.WithLabelValues("segment").Inc()
		s.serveSelfInitializing(w, r, strings.TrimPrefix(file, compatInitPrefix))
	default:
		o.m.requests.WithLabelValues("segment").Inc()
		s.serveObject(w, r, file)
	}
}

// startingWait bounds how long a request for a stream this origin is
// claiming waits for it to be served (awaitServing).
const startingWait = 500 * time.Millisecond

// awaitServing waits, up to startingWait, for a stream being claimed to be
// served; false when it is not by then (or the request or the origin
// ended). A cache follows the owner watch, so after a take-over it asks
// the new owner as soon as the owner record names it: between that
// compare-and-set and the announce (the playlist state read and written
// back, two registry round trips) the answer was a 503 "stream starting",
// and the cache asked again only after its retry interval (150 ms) — a
// stand-still of its own, longer than the take-over itself (measured in
// the in-process cluster test: 230 ms at the part level where the claim
// to the first playlist took 7 ms).
func (s *stream) awaitServing(ctx context.Context) bool {
	deadline := time.NewTimer(startingWait)
	defer deadline.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for !s.serves() {
		if s.o.lookup(s.path) != s {
			return false // the claim failed: another origin owns the stream
		}
		select {
		case <-poll.C:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-s.o.done:
			return false
		}
	}
	return true
}

// splitRequestPath splits "/<stream path>/<file>" and validates both parts.
func splitRequestPath(p string) (string, string, bool) {
	p = strings.TrimPrefix(p, "/")
	k := strings.LastIndexByte(p, '/')
	if k <= 0 {
		return "", "", false
	}
	path, file := p[:k], p[k+1:]
	if bus.ValidatePath(path) != nil || !validFileName(file) {
		return "", "", false
	}
	return path, file, true
}

// validFileName accepts what gohlslib names files: [A-Za-z0-9_.-], not
// starting with a dot.
func validFileName(f string) bool {
	if f == "" || len(f) > maxFileName || f[0] == '.' {
		return false
	}
	for _, c := range []byte(f) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// waitResult is how a bounded wait ended.
type waitResult int

const (
	waitChanged waitResult = iota
	waitTimeout
	waitGone
)

// wait blocks until what the stream serves changes, the deadline passes,
// the request is cancelled or the origin closes.
func (s *stream) wait(r *http.Request, changed <-chan struct{}, deadline <-chan time.Time) waitResult {
	select {
	case <-changed:
		return waitChanged
	case <-deadline:
		return waitTimeout
	case <-r.Context().Done():
		return waitGone
	case <-s.o.done:
		return waitGone
	}
}

// await waits like wait; when the wait ends without a change it answers
// the request itself (503 on timeout, 404 when gone) and returns false.
func (s *stream) await(w http.ResponseWriter, r *http.Request, changed <-chan struct{}, deadline <-chan time.Time) bool {
	switch s.wait(r, changed, deadline) {
	case waitTimeout:
		s.timedOut(w)
		return false
	case waitGone:
		s.gone(w)
		return false
	}
	return true
}

// blockTimeout bounds a blocking request: three target durations plus a part.
func (s *stream) blockTimeout() time.Duration {
	if s.o.blockTimeout > 0 {
		return s.o.blockTimeout
	}
	target, part := s.hls.SegmentDuration, s.hls.PartDuration
	s.mu.Lock()
	if head := s.headLocked(); head != nil {
		pl := head.snap.media[head.snap.leading].pl
		target = max(target, time.Duration(pl.TargetDuration)*time.Second)
		if pl.PartInf != nil {
			part = max(part, pl.PartInf.PartTarget)
		}
	}
	s.mu.Unlock()
	return 3*target + part
}

func (s *stream) timedOut(w http.ResponseWriter) {
	s.o.m.blockTimeouts.Inc()
	w.Header().Set("Retry-After", retryAfterSec)
	w.Header().Set("Cache-Control", "no-cache")
	http.Error(w, "not available yet", http.StatusServiceUnavailable)
}

func (s *stream) gone(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-cache")
	http.Error(w, "stream not found", http.StatusNotFound)
}

// serveMultivariant answers with the newest instance's multivariant
// playlist (compat: the compatible one), waiting (bounded) for the first
// content.
func (s *stream) serveMultivariant(w http.ResponseWriter, r *http.Request, compat bool) {
	deadline := time.NewTimer(s.blockTimeout())
	defer deadline.Stop()
	if s.plan != nil {
		s.serveMaster(w, r, deadline.C, compat)
		return
	}
	for {
		if !s.serves() {
			s.gone(w)
			return
		}
		s.mu.Lock()
		head, changed := s.headLocked(), s.changed
		var body []byte
		var cc string
		if head != nil {
			body, cc = head.snap.multivariant, head.snap.multivariantCC
		}
		s.mu.Unlock()
		if head != nil {
			if compat {
				body = compatMultivariantBody(body)
			}
			writePlaylist(w, r, body, cc)
			return
		}
		if !s.await(w, r, changed, deadline.C) {
			return
		}
	}
}

// serveMaster answers with the master playlist of a transcoded stream,
// waiting (bounded) until every rendition has content; past the deadline it
// lists the renditions that have.
func (s *stream) serveMaster(w http.ResponseWriter, r *http.Request, deadline <-chan time.Time, compat bool) {
	timedOut := false
	for {
		if !s.serves() {
			s.gone(w)
			return
		}
		s.mu.Lock()
		body, complete, err := s.masterLocked()
		changed := s.changed
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("building the master playlist failed", "err", err)
			http.Error(w, "playlist unavailable", http.StatusInternalServerError)
			return
		}
		if body != nil && (complete || timedOut) {
			if compat {
				body = compatMultivariantBody(body)
			}
			writePlaylist(w, r, body, "no-cache")
			return
		}
		if timedOut {
			s.timedOut(w)
			return
		}
		switch s.wait(r, changed, deadline) {
		case waitTimeout:
			timedOut = true
		case waitGone:
			s.gone(w)
			return
		}
	}
}

// viewState says whether a media playlist can be served.
type viewState int

const (
	viewNoContent viewState = iota // nothing published yet: wait
	viewMissing                    // the current instance has no such playlist
	viewReady
)

// layers collects the versions of a media playlist held by the instances of
// rendition set rend, oldest first, ending with its newest instance with
// content.
func (s *stream) layers(rend int, name string) ([]*layer, map[string]*layer, uint64, <-chan struct{}, viewState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	head := s.headOfLocked(rend)
	if head == nil {
		return nil, nil, s.version, s.changed, viewNoContent
	}
	if head.snap.media[name] == nil {
		return nil, nil, s.version, s.changed, viewMissing
	}
	var ls []*layer
	for _, i := range s.instances {
		if i.rend != rend || i.closed || i.snap == nil {
			continue
		}
		if l := i.snap.media[name]; l != nil {
			ls = append(ls, l)
		}
		if i == head {
			break
		}
	}
	return ls, s.siblingsLocked(), s.version, s.changed, viewReady
}

// siblingsLocked maps the served name of every media playlist of the
// stream (every rendition set's newest instance) to its layer, for
// rendition reports.
func (s *stream) siblingsLocked() map[string]*layer {
	sib := map[string]*layer{}
	for r := 0; r <= len(s.rends); r++ {
		h := s.headOfLocked(r)
		if h == nil || r == 0 && s.plan != nil && !s.plan.rule.Ladder.Passthrough {
			continue // not in the master playlist
		}
		prefix := ""
		if r > 0 {
			prefix = s.rends[r-1].prefix
		}
		for n, l := range h.snap.media {
			sib[prefix+n] = l
		}
	}
	return sib
}

// serveMedia answers a media playlist request, holding blocking requests
// (_HLS_msn, _HLS_part) until the merged playlist satisfies them. compat
// asks for the compatible view (compat.go): delivery directives are
// ignored, and the answer waits (bounded) for compatMinSegments segments.
func (s *stream) serveMedia(w http.ResponseWriter, r *http.Request, name string, compat bool) {
	msn, part, delta, ok := s.directives(w, r)
	if !ok {
		return
	}
	if compat {
		msn, part, delta = -1, -1, false
	}
	if msn >= 0 {
		s.o.m.requests.WithLabelValues("blocking").Inc()
	} else {
		s.o.m.requests.WithLabelValues("media").Inc()
	}

	rend, inner, prefix := s.resolveName(name)
	deadline := time.NewTimer(s.blockTimeout())
	defer deadline.Stop()
	var short *view // a compatible view still too short, served on timeout
	var shortVersion uint64
	for {
		if !s.serves() {
			s.gone(w)
			return
		}
		ls, siblings, version, changed, state := s.layers(rend, inner)
		switch state {
		case viewMissing:
			s.gone(w)
			return
		case viewReady:
			var v *view
			if compat {
				v = compatView(ls, s.hls.SegmentCount)
			} else {
				v = buildView(ls, s.hls.SegmentCount)
			}
			v.uriPrefix = prefix
			v.name, v.siblings = name, siblings
			if compat {
				if v.realSegments() >= min(compatMinSegments, s.hls.SegmentCount) {
					s.writeView(w, r, name, v, version, false, true)
					return
				}
				short, shortVersion = v, version
				break
			}
			if !v.lowLatency() || msn < 0 {
				s.writeView(w, r, name, v, version, delta, false)
				return
			}
			if v.tooFar(msn) {
				w.Header().Set("Cache-Control", "no-cache")
				http.Error(w, "_HLS_msn is too far ahead", http.StatusBadRequest)
				return
			}
			if v.satisfied(msn, part) {
				s.writeView(w, r, name, v, version, delta, false)
				return
			}
		}
		switch s.wait(r, changed, deadline.C) {
		case waitTimeout:
			if short != nil && short.realSegments() > 0 {
				s.writeView(w, r, name, short, shortVersion, false, true)
				return
			}
			s.timedOut(w)
			return
		case waitGone:
			s.gone(w)
			return
		}
	}
}

// maxDirective bounds _HLS_msn and _HLS_part: media sequence numbers and
// part indexes stay far below it, and larger values are answered 400.
const maxDirective = 1<<31 - 1

// directives reads a media playlist request's delivery directives: msn and
// part are -1 when absent. A malformed directive is answered 400 (false)
// and counted as a bad request.
func (s *stream) directives(w http.ResponseWriter, r *http.Request) (msn, part int64, delta, ok bool) {
	d, err := hlsproto.Parse(r.URL.RawQuery)
	msg := ""
	switch {
	case err != nil:
		msg = err.Error()
	case d.MSN > maxDirective:
		msg = "bad " + hlsproto.MSN
	case d.Part > maxDirective:
		msg = "bad " + hlsproto.Part
	}
	if msg != "" {
		s.o.m.requests.WithLabelValues("bad").Inc()
		http.Error(w, msg, http.StatusBadRequest)
		return 0, 0, false, false
	}
	msn, part = -1, -1
	if d.HasMSN {
		msn = int64(d.MSN)
	}
	if d.HasPart {
		part = int64(d.Part)
	}
	return msn, part, d.Delta(), true
}

// writeView renders (or reuses the render of) a view and writes it.
func (s *stream) writeView(w http.ResponseWriter, r *http.Request, name string, v *view, version uint64, delta, compat bool) {
	key := renderKey{name: name, delta: delta, compat: compat}
	s.mu.Lock()
	body, ok := s.rendered[key]
	if s.version != version {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		var err error
		body, err = v.render(delta, compat)
		if err != nil {
			s.log.Warn("rendering a playlist failed", "playlist", name, "err", err)
			http.Error(w, "playlist unavailable", http.StatusInternalServerError)
			return
		}
		s.mu.Lock()
		if s.version == version {
			if s.rendered == nil {
				s.rendered = map[renderKey][]byte{}
			}
			s.rendered[key] = body
		}
		s.mu.Unlock()
	}
	writePlaylist(w, r, body, v.head.cacheControl)
}

func writePlaylist(w http.ResponseWriter, r *http.Request, body []byte, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", mpegurl)
	if cacheControl == "" {
		cacheControl = "no-cache"
	}
	h.Set("Cache-Control", cacheControl)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
