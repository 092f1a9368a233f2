package hlscache

import (
	"bytes"
	"net/http"
	"time"
)

const (
	// viewerWriteChunk and viewerWriteTimeout: a response body is written in
	// chunks, each with its own write deadline, so a viewer that stops
	// reading is dropped after viewerWriteTimeout without a deadline cutting
	// short a large object sent to a slow but live viewer. A chunk is large
	// enough that a segment goes out in one Write: every Write is at least
	// one write(2), and on loopback or a fast network the syscalls, not the
	// bytes, are what a segment costs. The price is the slowest viewer kept
	// through an object larger than the socket buffers: one that takes a
	// chunk within the timeout, about 52 kB/s (420 kbit/s), against 3.3 kB/s
	// with 64 KiB chunks — too slow for any video stream anyway.
	viewerWriteChunk   = 1 << 20
	viewerWriteTimeout = 20 * time.Second
)

// rangeOrPrecondition are the request headers http.ServeContent acts on for
// a GET. A GET with none of them gets the whole body (If-Range matters only
// with Range).
var rangeOrPrecondition = [...]string{"Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"}

// acceptRanges is the Accept-Ranges value, shared (see objectHeader).
var acceptRanges = []string{"bytes"}

// viewerWriter wraps a viewer's ResponseWriter: it counts the body bytes and
// keeps moving the connection's write deadline while the body is written.
type viewerWriter struct {
	http.ResponseWriter
	// rc is held by value, so that a request costs one allocation here, not two.
	rc       http.ResponseController
	timeout  time.Duration // each chunk's write deadline: viewerWriteTimeout, shorter in tests
	n        int64
	deadline bool // a write deadline was set
}

func newViewerWriter(w http.ResponseWriter) *viewerWriter {
	return &viewerWriter{ResponseWriter: w, rc: *http.NewResponseController(w), timeout: viewerWriteTimeout}
}

// serveBody answers 200 with body, whose Content-Type, Cache-Control and
// ETag the caller has set, hdr holding the rest of body's header values.
// A plain GET (no Range, no precondition) gets Last-Modified (when modTime
// is set), Accept-Ranges and Content-Length, the headers http.ServeContent
// would send, and the body in one Write, sent with the headers in one
// system call over plain HTTP (viewerconn.go). HEAD, Range and conditional
// requests go through http.ServeContent, which answers them with 206, 304,
// 412 or 416 as they ask.
func (v *viewerWriter) serveBody(r *http.Request, body []byte, modTime time.Time, hdr *objectHeader) {
	if r.Method != http.MethodGet || hasAnyHeader(r.Header, rangeOrPrecondition[:]) {
		http.ServeContent(v, r, "", modTime, bytes.NewReader(body))
		return
	}
	h := v.Header()
	if !modTime.IsZero() && hdr.lastModified != nil {
		h["Last-Modified"] = hdr.lastModified
	}
	h["Accept-Ranges"] = acceptRanges
	h["Content-Length"] = hdr.contentLength
	v.WriteHeader(http.StatusOK)
	// The headers wait in net/http's buffer: they go out with the body's
	// first bytes in one write (viewerconn.go).
	vc := viewerConnOf(r)
	vc.gather()
	_, _ = v.Write(body) // a failed write means the viewer left; net/http closes the connection
	vc.release()
}

// hasAnyHeader reports whether h has a non-empty value under any of the
// canonical keys, as h.Get(key) != "" would.
func hasAnyHeader(h http.Header, keys []string) bool {
	for _, k := range keys {
		if v := h[k]; len(v) > 0 && v[0] != "" {
			return true
		}
	}
	return false
}

func (v *viewerWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), viewerWriteChunk)]
		if v.rc.SetWriteDeadline(time.Now().Add(v.timeout)) == nil {
			v.deadline = true
		}
		n, err := v.ResponseWriter.Write(chunk)
		written += n
		v.n += int64(n)
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Unwrap lets http.ResponseController reach the server's writer.
func (v *viewerWriter) Unwrap() http.ResponseWriter { return v.ResponseWriter }

// finish flushes what is buffered (still under the last chunk's deadline)
// and clears the deadline, so it does not outlive this response on a
// kept-alive connection of a server without its own WriteTimeout.
func (v *viewerWriter) finish() {
	if !v.deadline {
		return
	}
	_ = v.rc.Flush()
	_ = v.rc.SetWriteDeadline(time.Time{})
}
