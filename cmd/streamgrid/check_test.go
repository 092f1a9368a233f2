package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A finished (EXT-X-ENDLIST) playlist of short segments: check follows it
// once, fetches every segment while listed and after, and exits 0, or 1
// when a segment is missing; 2 when nothing can be checked.
func TestCheckCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good.m3u8", "/broken.m3u8":
			missing := r.URL.Path == "/broken.m3u8"
			var b strings.Builder
			b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n")
			for k := range 3 {
				name := fmt.Sprintf("s%d.ts", k)
				if missing && k == 1 {
					name = "gone.ts"
				}
				fmt.Fprintf(&b, "#EXTINF:0.100,\n%s\n", name)
			}
			b.WriteString("#EXT-X-ENDLIST\n")
			_, _ = w.Write([]byte(b.String()))
		case "/s0.ts", "/s1.ts", "/s2.ts":
			_, _ = w.Write(make([]byte, 188))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{srv.URL + "/good.m3u8", "--duration", "2s"}, 0, "OK: no violation"},
		{[]string{srv.URL + "/broken.m3u8", "--duration", "2s"}, 1, "VIOLATION availability"},
		{[]string{"--json", srv.URL + "/broken.m3u8"}, 1, `"rule": "availability"`},
		{[]string{srv.URL + "/nothing.m3u8"}, 2, ""},
		{nil, 2, ""},
	} {
		var stdout, stderr bytes.Buffer
		if code := runCheck(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stdout.String(), tc.out) {
			t.Errorf("check %v: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", tc.args, code, tc.code, stdout.String(), stderr.String())
		}
	}
}
