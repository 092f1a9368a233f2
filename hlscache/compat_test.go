package hlscache

import (
	"net/http/httptest"
	"testing"
)

func TestNegotiateCompat(t *testing.T) {
	t.Parallel()
	const (
		chrome  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"
		safari  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
		firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	)
	for _, tc := range []struct {
		name, file, ua, dest, want string
	}{
		{"chromium video element", "index.m3u8", chrome, "video", "compat.m3u8"},
		{"firefox video element", "index.m3u8", firefox, "video", "compat.m3u8"},
		{"chromium hls.js (fetch)", "index.m3u8", chrome, "empty", "index.m3u8"},
		{"safari video element", "index.m3u8", safari, "video", "index.m3u8"},
		{"ffmpeg", "index.m3u8", "Lavf/59.27.100", "", "index.m3u8"},
		{"media playlist untouched", "video1_stream.m3u8", chrome, "video", "video1_stream.m3u8"},
		{"asked by name", "compat.m3u8", "Lavf/59.27.100", "", "compat.m3u8"},
		{"vlc 3", "index.m3u8", "VLC/3.0.21 LibVLC/3.0.21", "", "compat.m3u8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/live/cam1/"+tc.file, nil)
			r.Header.Set("User-Agent", tc.ua)
			if tc.dest != "" {
				r.Header.Set("Sec-Fetch-Dest", tc.dest)
			}
			req, err := parseRequest(r.URL.Path, r.URL.RawQuery)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			negotiate(w, r, req)
			if req.file != tc.want {
				t.Fatalf("file %s, want %s", req.file, tc.want)
			}
			if tc.file == "index.m3u8" && w.Header().Get("Vary") == "" {
				t.Fatal("no Vary header on index.m3u8")
			}
		})
	}
}
