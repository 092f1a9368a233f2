package hlscache

import (
	"errors"
	"net/http"
	"time"
)

// The viewers' handler: method and URL checks, access, CORS, then
// serveRequest (serve.go) for the answer, and the writing of answers.

// serveHTTP answers one viewer request and counts it.
func (c *Cache) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if c.routes == nil || !c.handlers.enter() {
		writeText(w, http.StatusServiceUnavailable, "cache not running")
		return
	}
	defer c.handlers.leave()

	c.setCORS(w.Header())
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		w.Header().Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeText(w, http.StatusMethodNotAllowed, "method not allowed")
		c.m.badRequests.Inc()
		return
	}
	if r.ContentLength != 0 {
		// GET and HEAD carry no body here; nothing reads one.
		writeText(w, http.StatusRequestEntityTooLarge, "request body not accepted")
		c.m.badRequests.Inc()
		return
	}
	urlPath, tok := r.URL.Path, ""
	if c.verifier != nil {
		// The token is a path prefix: strip it, so that the lookup (and the
		// cached object) is the same for every viewer.
		tok, urlPath, _ = splitSignedPath(urlPath)
	}
	req, err := parseRequest(urlPath, r.URL.RawQuery)
	if err != nil {
		var re *requestError
		if !errors.As(err, &re) {
			re = &requestError{status: http.StatusBadRequest, msg: "bad request"}
		}
		writeText(w, re.status, re.msg)
		c.m.badRequests.Inc()
		return
	}
	if status, reason, msg := c.access(r, req, tok); status != 0 {
		c.deny(w, status, reason, msg)
		return
	}
	c.viewers.seen(req.stream, r.RemoteAddr, r.UserAgent(), req.kind == kindPlaylist, time.Now())
	if req.kind == kindPage {
		servePlayerPage(w, r, req.stream)
		c.m.requestsBy[kindPage][outcomeHit].Inc()
		return
	}
	negotiate(w, r, req)
	vw := newViewerWriter(w)
	res := c.serveRequest(vw, r, req)
	vw.finish()
	c.m.requestsBy[req.kind][res].Inc()
	c.m.servedBy[req.kind].Add(float64(vw.n))
}

// headerValue is one header, its key canonical and its value shared (see objectHeader).
type headerValue struct {
	key   string
	value []string
}

// corsHeader returns the CORS headers for allowOrigin.
func corsHeader(allowOrigin string) []headerValue {
	h := []headerValue{{"Access-Control-Allow-Origin", []string{allowOrigin}}}
	if allowOrigin != "*" {
		h = append(h, headerValue{"Access-Control-Allow-Credentials", []string{"true"}})
	}
	return append(h,
		headerValue{"Access-Control-Allow-Methods", []string{"GET, HEAD, OPTIONS"}},
		headerValue{"Access-Control-Allow-Headers", []string{"Range, Origin, Content-Type, Accept"}},
		headerValue{"Access-Control-Expose-Headers", []string{"Content-Length, Content-Range"}})
}

func (c *Cache) setCORS(h http.Header) {
	for _, v := range c.cors {
		h[v.key] = v.value
	}
}

// ---- writing answers ----

// Header values of stale playlists, shared (see objectHeader).
var (
	staleXCache       = []string{"STALE"}
	staleCacheControl = []string{"no-cache"}
)

// writeObject answers with a stored object: its 200 with the headers built
// with it, or its passed-through 4xx.
func writeObject(w *viewerWriter, r *http.Request, obj *object, res fetchResult) {
	h := w.Header()
	h["X-Cache"] = res.header()
	if obj.status != http.StatusOK {
		writeText(w, obj.status, string(obj.body))
		return
	}
	h["Content-Type"] = obj.header.contentType
	h["Cache-Control"] = obj.header.cacheControl
	if obj.header.etag != nil {
		h["Etag"] = obj.header.etag // the canonical form of "ETag"
	}
	w.serveBody(r, obj.body, obj.modTime, &obj.header)
}

// writeStale serves the last good copy of a playlist during a failover,
// with neither its ETag nor its Last-Modified.
func writeStale(w *viewerWriter, r *http.Request, obj *object) {
	h := w.Header()
	h["X-Cache"] = staleXCache
	h["Content-Type"] = obj.header.contentType
	h["Cache-Control"] = staleCacheControl
	w.serveBody(r, obj.body, time.Time{}, &obj.header)
}

func writeText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}
