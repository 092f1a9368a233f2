package hlscache

import (
	"regexp"
	"strings"
	"testing"
)

// TestPlayerPage: /<path>/ answers the player page, live or not, without
// asking an origin; it names the stream, loads nothing from elsewhere and
// its CSP admits exactly its own script.
func TestPlayerPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, path := range []string{"/live/cam1/", "/rtmp/c1.live/"} {
		r := e.get(path)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %s", path, r.status, r.header.Get("Content-Type"))
		}
		stream := strings.Trim(path, "/")
		if !strings.Contains(r.body, `data-stream="`+stream+`"`) || !strings.Contains(r.body, "<video") {
			t.Fatalf("%s: the page does not name %s: %.300s", path, stream, r.body)
		}
		if regexp.MustCompile(`(src|href)="?(https?:)?//`).MatchString(r.body) || strings.Contains(r.body, "https://") {
			t.Errorf("%s: the page refers to another host", path)
		}
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if r.header.Get("Access-Control-Allow-Origin") == "" {
			t.Errorf("%s: no CORS header", path)
		}
	}
	// A stream path is escaped into the page, never interpreted.
	if r := e.get("/a/b~c.d/"); r.status != 200 || strings.Contains(r.body, "<b~") {
		t.Fatalf("page of a/b~c.d: %d", r.status)
	}
	if r := e.do("HEAD", "/live/cam1/"); r.status != 200 || r.body != "" {
		t.Fatalf("HEAD: %d %q", r.status, r.body)
	}
	if n := e.origin.count("/live/cam1/"); n != 0 {
		t.Fatalf("the page asked the origin %d times", n)
	}
	if got := metricValue(e.cache.m.requestsBy[kindPage][outcomeHit]); got != 4 {
		t.Errorf("page requests counted %v, want 4", got)
	}
}
