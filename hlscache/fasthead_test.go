package hlscache

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestParseRange: the single byte ranges the fast path answers, read as
// net/http's parseRange reads them.
func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		v             string
		size          int64
		start, length int64
		ok            bool
	}{
		{"bytes=0-", 100, 0, 100, true},
		{"bytes=0-0", 100, 0, 1, true},
		{"bytes=10-19", 100, 10, 10, true},
		{"bytes=99-", 100, 99, 1, true},
		{"bytes=50-500", 100, 50, 50, true},
		{"bytes=-10", 100, 90, 10, true},
		{"bytes=-1000", 100, 0, 100, true},
		{"bytes=007-008", 100, 7, 2, true},
		{"bytes=100-", 100, 0, 0, false},
		{"bytes=20-10", 100, 0, 0, false},
		{"bytes=-5", 0, 0, 0, false},
		{"bytes=0-", 0, 0, 0, false},
	} {
		if !validRange([]byte(tc.v)) {
			t.Fatalf("%s: not valid", tc.v)
		}
		start, length, ok := parseRange([]byte(tc.v), tc.size)
		if ok != tc.ok || ok && (start != tc.start || length != tc.length) {
			t.Errorf("%s of %d: %d+%d %v, want %d+%d %v", tc.v, tc.size, start, length, ok, tc.start, tc.length, tc.ok)
		}
	}
}

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   headStatus
		path   string
		query  string
		head   bool
		http11 bool
		close  bool // wantsClose
		ua     string
	}{
		{in: "GET /a/b.ts HTTP/1.1\r\nHost: x\r\n\r\n", want: headOK, path: "/a/b.ts", http11: true},
		{in: "HEAD /a/b.ts?q=1&r HTTP/1.1\r\nHost: x\r\nUser-Agent:  ffmpeg/6 \r\n\r\nGET", want: headOK,
			path: "/a/b.ts", query: "q=1&r", head: true, http11: true, ua: "ffmpeg/6"},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n", want: headOK, path: "/a", http11: true, close: true},
		{in: "GET /a HTTP/1.0\r\n\r\n", want: headOK, path: "/a", close: true},
		{in: "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", want: headOK, path: "/a"},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\n", want: headIncomplete},
		{in: "GET /a HTTP/1.1\r\nHo", want: headIncomplete},
		{in: "", want: headIncomplete},
		{in: "GET /a HTTP/1.1\nHost: x\n\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\n\n", want: headFallback}, // net/http takes it
		{in: "GET /a HTTP/1.1\r\nHost: x\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\n\r\n", want: headFallback},                       // no Host
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", want: headFallback}, // two
		{in: "GET /a HTTP/1.1\r\nHost: x y\r\n\r\n", want: headFallback},          // bad Host
		{in: "GET /%61 HTTP/1.1\r\nHost: x\r\n\r\n", want: headFallback},          // escaped
		{in: "GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n", want: headFallback},    // absolute
		{in: "GET * HTTP/1.1\r\nHost: x\r\n\r\n", want: headFallback},             //
		{in: "GET  /a HTTP/1.1\r\nHost: x\r\n\r\n", want: headFallback},           // two spaces
		{in: "GET /a HTTP/1.1 \r\nHost: x\r\n\r\n", want: headFallback},           //
		{in: "get /a HTTP/1.1\r\nHost: x\r\n\r\n", want: headFallback},            // method case
		{in: "POST /a HTTP/1.1\r\nHost: x\r\n\r\n", want: headFallback},           //
		{in: "GET /a HTTP/2.0\r\nHost: x\r\n\r\n", want: headFallback},            //
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n", want: headOK, path: "/a", http11: true},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,3-4\r\n\r\n", want: headFallback}, // a list
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=-\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=-00\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=1234567890123456789-\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nRange: Bytes=0-1\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nIf-Range: x\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nIF-NONE-MATCH: *\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: close\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", want: headFallback}, // obs-fold
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n", want: headFallback},
		{in: "GET /a HTTP/1.1\r\nHost: x\r\nX: caf\xc3\xa9\r\n\r\n", want: headFallback},
		{in: "GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n", want: headFallback},
	} {
		h, st := parseHead([]byte(tc.in))
		if st != tc.want {
			t.Errorf("%q: status %d, want %d", tc.in, st, tc.want)
			continue
		}
		if st != headOK {
			continue
		}
		got := []any{string(h.path), string(h.query), h.head, h.http11, h.wantsClose(), string(h.userAgent)}
		want := []any{tc.path, tc.query, tc.head, tc.http11, tc.close, tc.ua}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%q: got %v, want %v", tc.in, got, want)
				break
			}
		}
		if h.size != strings.Index(tc.in, "\r\n\r\n")+4 {
			t.Errorf("%q: size %d", tc.in, h.size)
		}
	}
}

// FuzzParseHead checks that parseHead never panics, and that whatever it
// accepts http.ReadRequest and net/http's server checks accept as the same
// request: method, path, query, version, keep-alive, User-Agent, and no
// header the fast path hands over.
//
//	go test -run '^$' -fuzz FuzzParseHead -fuzztime 60s ./hlscache/
func FuzzParseHead(f *testing.F) {
	for _, tc := range fastCases {
		f.Add([]byte(strings.Join(tc.parts, "")))
	}
	f.Add([]byte("GET /a/b.ts?x HTTP/1.0\r\nConnection: keep-alive\r\nUser-Agent: a\r\nUser-Agent: b\r\n\r\n"))
	// Found by the fuzzer: an empty first User-Agent is the one net/http reads.
	f.Add([]byte("GET / HTTP/1.0\r\nUser-Agent:\r\nUser-Agent:0\r\n\r\n"))
	f.Add([]byte("GET /a/index.m3u8 HTTP/1.1\r\nHost: h\r\nSec-Fetch-Dest:\r\nSec-Fetch-Dest: video\r\nRange: bytes=-7\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, st := parseHead(b)
		if st != headOK {
			return
		}
		if h.size > len(b) || !bytes.HasSuffix(b[:h.size], []byte("\r\n\r\n")) {
			t.Fatalf("size %d of %q", h.size, b)
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:h.size])))
		if err != nil {
			t.Fatalf("accepted %q, ReadRequest: %v", b[:h.size], err)
		}
		method := http.MethodGet
		if h.head {
			method = http.MethodHead
		}
		minor := 0
		if h.http11 {
			minor = 1
		}
		switch {
		case r.Method != method, r.URL.Path != string(h.path), r.URL.RawQuery != string(h.query),
			r.ProtoMajor != 1, r.ProtoMinor != minor:
			t.Fatalf("%q: ReadRequest %s %q %q %s", b[:h.size], r.Method, r.URL.Path, r.URL.RawQuery, r.Proto)
		case r.UserAgent() != string(h.userAgent):
			t.Fatalf("%q: User-Agent %q, parsed %q", b[:h.size], r.UserAgent(), h.userAgent)
		case r.ContentLength != 0 || len(r.TransferEncoding) > 0:
			t.Fatalf("%q: a body", b[:h.size])
		case r.Header.Get("Sec-Fetch-Dest") != string(h.fetchDest):
			t.Fatalf("%q: Sec-Fetch-Dest %q, parsed %q", b[:h.size], r.Header.Get("Sec-Fetch-Dest"), h.fetchDest)
		case h.rng == nil && r.Header.Get("Range") != "":
			t.Fatalf("%q: Range not parsed", b[:h.size])
		}
		// net/http's keep-alive: r.Close, and for HTTP/1.0 the keep-alive token.
		keepAlive10 := r.ProtoMinor == 0 && strings.EqualFold(r.Header.Get("Connection"), "keep-alive")
		closes := r.Close || !r.ProtoAtLeast(1, 1) && !keepAlive10
		if closes != h.wantsClose() {
			t.Fatalf("%q: net/http closes %v, parsed %v", b[:h.size], closes, h.wantsClose())
		}
		// The server's own checks after ReadRequest (conn.readRequest).
		if r.ProtoAtLeast(1, 1) && r.Host == "" { // ReadRequest moves the Host header there
			t.Fatalf("%q: no Host", b[:h.size])
		}
		for k, vv := range r.Header {
			if !isRefToken(k) {
				t.Fatalf("%q: header name %q", b[:h.size], k)
			}
			for _, v := range vv {
				if strings.ContainsFunc(v, func(c rune) bool { return c < ' ' && c != '\t' || c == 0x7f }) {
					t.Fatalf("%q: header value %q", b[:h.size], v)
				}
			}
			if k == "Range" && (len(vv) != 1 || vv[0] != string(h.rng)) {
				t.Fatalf("%q: Range %q, parsed %q", b[:h.size], vv, h.rng)
			}
			for _, refused := range []string{"If-Range", "If-None-Match", "If-Modified-Since", "If-Match",
				"If-Unmodified-Since", "Expect", "Upgrade", "Content-Length", "Transfer-Encoding"} {
				if k == refused {
					t.Fatalf("%q: accepted with %s", b[:h.size], k)
				}
			}
		}
	})
}

// isRefToken is RFC 9110's token, written apart from isToken on purpose.
func isRefToken(s string) bool {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for _, c := range s {
		if !strings.ContainsRune(tchar, c) {
			return false
		}
	}
	return s != ""
}
