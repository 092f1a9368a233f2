package hlscache

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"regexp"
	"strconv"
)

// The player page, GET /<stream path>/: a <video> element that plays the
// stream's index.m3u8 with the browser's own HLS player where it has one,
// and otherwise (or when the native player refuses the playlist, as
// Chromium's does for Low-Latency HLS) with a small player of ours on Media
// Source Extensions: it reads the multivariant and media playlists, appends
// the fMP4 init section and whole segments to SourceBuffers and follows the
// live edge. Nothing is fetched from elsewhere, and every URL it uses is
// relative, so the page works under a path prefix (signed URLs) as well.
// ?player=mse or ?player=native forces one player.
//
//go:embed player.html
var playerHTML string

var (
	playerTmpl = template.Must(template.New("player").Parse(playerHTML))
	// playerCSP allows only the page's own inline script (by hash), the
	// stream's objects from this server and the MSE player's blob: URL.
	playerCSP = "default-src 'none'; script-src '" + scriptHash() + "'; style-src 'unsafe-inline'; " +
		"connect-src 'self'; media-src 'self' blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'"
)

var scriptRE = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// scriptHash is the CSP source expression of the page's one inline script,
// hashed as html/template renders it (it drops JS comments). The script holds
// no template actions, so its text is the same on every page.
func scriptHash() string {
	var page bytes.Buffer
	if err := playerTmpl.Execute(&page, struct{ Path string }{"x"}); err != nil {
		panic("hlscache: player.html: " + err.Error())
	}
	m := scriptRE.FindSubmatch(page.Bytes())
	if m == nil {
		panic("hlscache: player.html has no <script>")
	}
	sum := sha256.Sum256(m[1])
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// servePlayerPage answers the player page of stream. The page is served
// whether or not the stream is live: its player waits and retries, so a
// page opened before the camera (or an on-demand one) starts plays when it does.
//
// The page carries its Content-Length, so that net/http sends it whole and
// not chunked, and the fast path (fastConn.writePage) sends the same bytes.
func servePlayerPage(w http.ResponseWriter, r *http.Request, stream string) {
	page, err := renderPlayerPage(stream)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "player page: "+err.Error())
		return
	}
	h := w.Header()
	for _, v := range playerPageHeader {
		h[v.key] = v.value
	}
	h.Set("Content-Length", strconv.Itoa(len(page)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(page)
	}
}

// playerPageHeader is the player page's header but its Content-Length,
// sorted by key as net/http writes it; servePlayerPage and the fast path's
// appendPageHeader both send it. The values are shared and never written
// to (see objectHeader).
var playerPageHeader = []headerValue{
	{"Cache-Control", []string{"no-cache"}},
	{"Content-Security-Policy", []string{playerCSP}},
	{"Content-Type", []string{"text/html; charset=utf-8"}},
	{"Referrer-Policy", []string{"no-referrer"}},
	{"X-Content-Type-Options", []string{"nosniff"}},
}

// appendPageHeader appends playerPageHeader's lines with a Content-Length
// of n in its sorted place.
func appendPageHeader(b []byte, n int) []byte {
	length := false
	for _, v := range playerPageHeader {
		if !length && v.key > "Content-Length" {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, "\r\n"...)
			length = true
		}
		b = appendHeaderLine(b, v.key, v.value)
	}
	return b
}

// renderPlayerPage returns the player page of stream.
func renderPlayerPage(stream string) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(playerHTML) + 256)
	if err := playerTmpl.Execute(&buf, struct{ Path string }{stream}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
