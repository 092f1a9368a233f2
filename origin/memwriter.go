package origin

import (
	"bytes"
	"context"
	"io"
	"net/http"
)

// fetch runs a GET for name through the muxer's handler in memory.
func (i *instance) fetch(name string) (int, http.Header, []byte) {
	w := &memWriter{header: http.Header{}}
	i.muxer.Handle(w, newMemRequest(name))
	return w.status(), w.header, w.body.Bytes()
}

// fetchDiscard is fetch without keeping the body.
func (i *instance) fetchDiscard(name string) int {
	w := &memWriter{header: http.Header{}, discard: true}
	i.muxer.Handle(w, newMemRequest(name))
	return w.status()
}

func newMemRequest(name string) *http.Request {
	r, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "/"+name, nil)
	if err != nil {
		// name comes from gohlslib's own playlists; a bad one cannot be fetched anyway
		r, _ = http.NewRequestWithContext(context.Background(), http.MethodGet, "/", nil)
	}
	return r
}

// memWriter is an in-memory http.ResponseWriter for calling the muxer's handler.
type memWriter struct {
	header  http.Header
	code    int
	body    bytes.Buffer
	discard bool
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *memWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.discard {
		return io.Discard.Write(b)
	}
	return w.body.Write(b)
}

// ReadFrom spares io.Copy inside the muxer's handler its 32 KiB buffer
// per response (a part every 200 ms, per stream).
func (w *memWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.discard {
		return io.Copy(io.Discard, r) // io.Discard reads into pooled buffers
	}
	return w.body.ReadFrom(r)
}

// status is the response code; 0 when the handler wrote nothing (gohlslib's
// answer for a name it does not know).
func (w *memWriter) status() int { return w.code }
