package node

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"
)

// httpRecord keeps, in memory, every request a test viewer made: when it was
// sent and answered, its status and X-Cache, and the body of each playlist.
// Logging the viewer instead changes its timing; the record is dumped only
// when the test fails.
type httpRecord struct {
	start time.Time
	next  http.RoundTripper
	mu    sync.Mutex
	lines []string
}

func newHTTPRecord() *httpRecord {
	return &httpRecord{start: time.Now(), next: http.DefaultTransport}
}

// client returns an HTTP client like the Reader's default one (cookie jar, no
// timeout) that records through r.
func (r *httpRecord) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: r}
}

func (r *httpRecord) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Since(r.start)
	resp, err := r.next.RoundTrip(req)
	got := time.Since(r.start)
	if err != nil {
		r.add(fmt.Sprintf("%8.3f %8.3f ERR %s: %v", sent.Seconds(), got.Seconds(), req.URL.RequestURI(), err))
		return resp, err
	}
	line := fmt.Sprintf("%8.3f %8.3f %d %s %s", sent.Seconds(), got.Seconds(), resp.StatusCode, resp.Header.Get("X-Cache"), req.URL.RequestURI())
	if strings.HasSuffix(req.URL.Path, ".m3u8") {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			line += fmt.Sprintf(" (read: %v)", rerr)
		}
		line += "\n" + indent(string(body))
	} else {
		// The body arrives while the client reads it; record its end too.
		resp.Body = &recordedBody{ReadCloser: resp.Body, r: r, uri: req.URL.RequestURI()}
	}
	r.add(line)
	return resp, nil
}

type recordedBody struct {
	io.ReadCloser
	r    *httpRecord
	uri  string
	n    int
	done bool
}

func (b *recordedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += n
	if err != nil && !b.done {
		b.done = true
		b.r.add(fmt.Sprintf("%8.3f          body end %s %d bytes (%v)", time.Since(b.r.start).Seconds(), b.uri, b.n, err))
	}
	return n, err
}

func (r *httpRecord) add(s string) {
	r.mu.Lock()
	r.lines = append(r.lines, s)
	r.mu.Unlock()
}

// dumpOnFailure logs the record at the end of a failed test.
func (r *httpRecord) dumpOnFailure(t *testing.T, name string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Logf("requests of %s (seconds since start: sent, answered):\n%s", name, strings.Join(r.lines, "\n"))
	})
}

func indent(s string) string {
	return "\t" + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n\t")
}

// frames wraps a Reader's OnVideo: frames that do not move forward are
// recorded between the requests.
func (r *httpRecord) frames(next func(time.Duration, [][]byte, time.Time)) func(time.Duration, [][]byte, time.Time) {
	var last time.Duration
	var n int
	return func(pts time.Duration, nalus [][]byte, recv time.Time) {
		n++
		if n > 1 && pts <= last {
			r.add(fmt.Sprintf("%8.3f          frame %d pts %v after %v", recv.Sub(r.start).Seconds(), n, pts, last))
		}
		last = max(last, pts)
		next(pts, nalus, recv)
	}
}
