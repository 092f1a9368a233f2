package hlscache

import (
	"net/http"
	"time"
)

const (
	// viewerWriteChunk and viewerWriteTimeout: a response body is written in
	// chunks, each with its own write deadline, so a viewer that stops
	// reading is dropped after viewerWriteTimeout without a deadline cutting
	// short a large object sent to a slow but live viewer.
	viewerWriteChunk   = 64 << 10
	viewerWriteTimeout = 20 * time.Second
)

// viewerWriter wraps a viewer's ResponseWriter: it counts the body bytes and
// keeps moving the connection's write deadline while the body is written.
type viewerWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	n        int64
	deadline bool // a write deadline was set
}

func newViewerWriter(w http.ResponseWriter) *viewerWriter {
	return &viewerWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
}

func (v *viewerWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), viewerWriteChunk)]
		if v.rc.SetWriteDeadline(time.Now().Add(viewerWriteTimeout)) == nil {
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
