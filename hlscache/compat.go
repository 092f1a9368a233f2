package hlscache

import (
	"net/http"
	"strings"
)

// Players that do not speak Low-Latency HLS get the origin's compatible
// view of a stream (compat.m3u8, see origin/compat.go). A viewer asks for
// it by name, or the cache chooses it for index.m3u8 when the request comes
// from a browser's own media element (Sec-Fetch-Dest: video or audio) in a
// browser whose built-in HLS player has no Low-Latency support: Chromium
// and its derivatives (Chrome, Edge, Opera; "Chrome/" in the User-Agent) and
// Firefox; and VLC 3 (see wantsCompat). Safari's player (no "Chrome/"),
// hls.js and other script players (Sec-Fetch-Dest: empty) and ffmpeg keep
// the Low-Latency playlists. Only the multivariant playlist is chosen this way:
// the media playlists it links have names of their own, so every object
// below it stays cacheable by name alone.
const (
	multivariantName       = "index.m3u8"
	compatMultivariantName = "compat.m3u8"
)

// wantsCompat reports whether a request for index.m3u8 should get the
// compatible view. VLC 3 ("VLC/" User-Agent) gets it too: it plays whole
// segments only (no parts, no blocking reloads), so it loses no latency,
// and it stops with "Failed to create demuxer" on the EXT-X-GAP
// placeholders a Low-Latency stream lists in its first seconds.
func wantsCompat(r *http.Request) bool {
	return wantsCompatFor(r.Header.Get("User-Agent"), r.Header.Get("Sec-Fetch-Dest"))
}

// wantsCompatFor is wantsCompat for a request's User-Agent and
// Sec-Fetch-Dest values (the fast path's, fastconn.go).
func wantsCompatFor(ua, dest string) bool {
	if strings.HasPrefix(ua, "VLC/") {
		return true
	}
	switch dest {
	case "video", "audio":
	default:
		return false
	}
	return strings.Contains(ua, "Chrome/") || strings.Contains(ua, "Firefox/")
}

// varyNegotiated is the Vary value of an answer for index.m3u8.
const varyNegotiated = "Sec-Fetch-Dest, User-Agent"

// negotiate rewrites a request for index.m3u8 to compat.m3u8 when the
// player wants the compatible view, and says so to shared caches.
func negotiate(w http.ResponseWriter, r *http.Request, req *request) {
	if req.file != multivariantName {
		return
	}
	w.Header().Add("Vary", varyNegotiated)
	if wantsCompat(r) {
		req.file = compatMultivariantName
	}
}
