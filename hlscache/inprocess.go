package hlscache

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// The in-process path to this node's own origin. In the all-in-one (or any
// node running both roles) the owner of a stream is often this very
// process: its requests then go to the origin's handler directly, as the
// hub does for media, instead of through a loopback TCP connection, the
// HTTP/1.1 codec and the kernel twice. Everything else is unchanged: the
// request carries the same headers (the origin secret, the delivery
// directives), the answer is read the same way, and a route to another
// origin, or to this node under another address, takes the network.

// LocalOrigin is an origin running in this process.
type LocalOrigin struct {
	// Addr is the address the origin advertises (origin.Origin.AdvertiseHTTP):
	// the routes naming it are served in process.
	Addr string
	// Handler is the origin's HTTP handler (origin.Origin.Handler).
	Handler http.Handler
}

// inProcess is a RoundTripper that serves requests for local.Addr with
// local.Handler and passes the others to next.
type inProcess struct {
	local LocalOrigin
	next  http.RoundTripper
}

func (t *inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.local.Addr {
		return t.next.RoundTrip(req)
	}
	w := &memResponse{header: http.Header{}}
	t.local.Handler.ServeHTTP(w, req)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}, nil
}

// memResponse is an http.ResponseWriter that keeps the answer in memory.
// Its body buffer is sized once from the Content-Length the handler set,
// when it set one before writing.
type memResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *memResponse) Header() http.Header { return w.header }

func (w *memResponse) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	if n, err := strconv.Atoi(w.header.Get("Content-Length")); err == nil && n > 0 && n <= maxObjectSize {
		w.body.Grow(n)
	}
}

func (w *memResponse) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.body.Write(p)
}

// CloseIdleConnections passes the call on to the network transport.
func (t *inProcess) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
