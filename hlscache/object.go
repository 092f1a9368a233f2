package hlscache

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Cache lifetimes chosen by the cache itself (the origin's Cache-Control can
// only shorten them, never lengthen them, except where noted).
const (
	// mediaPlaylistTTL: a media playlist without blocking directives is kept
	// this long (or half a part target when shorter), so a burst of viewers
	// makes one upstream request while the playlist stays live.
	mediaPlaylistTTL = 250 * time.Millisecond
	// blockingPlaylistTTL: the answer to a blocking reload for one (msn, part)
	// changes only as the window slides, so it is kept a few seconds.
	blockingPlaylistTTL = 3 * time.Second
	// multivariantTTLCap caps the origin's max-age of a multivariant playlist;
	// multivariantDefaultTTL applies when the origin gives none.
	multivariantTTLCap     = 5 * time.Second
	multivariantDefaultTTL = time.Second
	// notFoundTTL: an upstream 404 is remembered briefly, so a burst of
	// requests for a missing file costs the origin one request.
	notFoundTTL = 500 * time.Millisecond
	// defaultImmutableCacheControl is sent to viewers for segments, parts and
	// init files when the origin gave no Cache-Control: their names are unique
	// per packager instance.
	defaultImmutableCacheControl = "public, max-age=3600"
)

// object is an upstream answer as the cache keeps and serves it. It is never
// modified once built, so it is shared between requests without locking.
type object struct {
	status  int    // 200, or a passed-through 4xx
	body    []byte // the payload (200) or a short text (4xx)
	modTime time.Time
	// header holds the response header values of a 200, see newObjectHeader.
	header  objectHeader
	fetched time.Time
	// expires is when the LRU must stop serving it; zero means never
	// (immutable: kept until evicted).
	expires time.Time
	// storable says the object may enter the LRU at all.
	storable bool
	// window is a full media playlist's window (see window.go); nil otherwise.
	window *playlistWindow
	// hint is the file named by an LL-HLS media playlist's
	// EXT-X-PRELOAD-HINT of TYPE=PART, when it lies in the stream's own
	// directory; "" otherwise. See overtaken.
	hint string
}

// preloadHintPart returns the file of a media playlist's EXT-X-PRELOAD-HINT
// of TYPE=PART, or "" when there is none or it is no plain file name of the
// playlist's directory.
func preloadHintPart(body []byte) string {
	const tag = "#EXT-X-PRELOAD-HINT:"
	i := bytes.LastIndex(body, []byte(tag))
	if i < 0 {
		return ""
	}
	line := body[i+len(tag):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	line = bytes.TrimRight(line, "\r")
	if !bytes.Contains(line, []byte("TYPE=PART")) || bytes.Contains(line, []byte("BYTERANGE-")) {
		return ""
	}
	const uri = `URI="`
	k := bytes.Index(line, []byte(uri))
	if k < 0 {
		return ""
	}
	v := line[k+len(uri):]
	end := bytes.IndexByte(v, '"')
	if end <= 0 || bytes.ContainsAny(v[:end], "/?#\\") {
		return ""
	}
	return string(v[:end])
}

// objectHeader holds the values of an object's response headers, built once
// with the object so that serving it formats and allocates none of them: a
// handler assigns them to its header map under their canonical keys.
//
// Every slice holds one value and has no spare capacity, so a handler that
// adds to one of these headers (Header.Add) appends into a new array and
// never into the shared one; nothing in net/http writes a value in place.
type objectHeader struct {
	contentType   []string
	cacheControl  []string // for viewers of a 200
	etag          []string // nil when the origin sent none
	lastModified  []string // nil when modTime is zero, as http.ServeContent leaves it out
	contentLength []string
}

func newObjectHeader(contentType, cacheControl, etag string, modTime time.Time, size int) objectHeader {
	h := objectHeader{
		contentType:   []string{contentType},
		cacheControl:  []string{cacheControl},
		contentLength: []string{strconv.Itoa(size)},
	}
	if etag != "" {
		h.etag = []string{etag}
	}
	if !modTime.IsZero() && !modTime.Equal(time.Unix(0, 0)) {
		h.lastModified = []string{modTime.UTC().Format(http.TimeFormat)}
	}
	return h
}

// fresh reports whether a stored object may still be served at now.
func (o *object) fresh(now time.Time) bool {
	return o.expires.IsZero() || now.Before(o.expires)
}

// cacheControl is the part of a Cache-Control header the cache acts on.
type cacheControl struct {
	maxAge    time.Duration
	hasMaxAge bool
	noCache   bool
	noStore   bool // no-store or private: a shared cache keeps nothing
}

func parseCacheControl(v string) cacheControl {
	var cc cacheControl
	for d := range strings.SplitSeq(v, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "no-cache":
			cc.noCache = true
		case "no-store", "private":
			cc.noStore = true
		case "max-age", "s-maxage":
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if err != nil || n < 0 {
				continue
			}
			age := time.Duration(min(n, 365*24*3600)) * time.Second
			// s-maxage, meant for shared caches, wins over max-age.
			if !cc.hasMaxAge || strings.EqualFold(strings.TrimSpace(name), "s-maxage") {
				cc.maxAge, cc.hasMaxAge = age, true
			}
		}
	}
	return cc
}

// playlistInfo is what the cache needs to know about a playlist's body.
type playlistInfo struct {
	multivariant bool
	lowLatency   bool          // a media playlist with parts
	partTarget   time.Duration // EXT-X-PART-INF PART-TARGET, 0 when absent
}

func inspectPlaylist(body []byte) playlistInfo {
	var info playlistInfo
	info.multivariant = bytes.Contains(body, []byte("#EXT-X-STREAM-INF"))
	const tag = "#EXT-X-PART-INF:"
	i := bytes.Index(body, []byte(tag))
	if i < 0 {
		return info
	}
	info.lowLatency = true
	line := body[i+len(tag):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	for attr := range strings.SplitSeq(strings.TrimSpace(string(line)), ",") {
		name, val, _ := strings.Cut(attr, "=")
		if name != "PART-TARGET" {
			continue
		}
		if s, err := strconv.ParseFloat(val, 64); err == nil && s > 0 && s < 60 {
			info.partTarget = time.Duration(s * float64(time.Second))
		}
	}
	return info
}

// policy decides how long the cache keeps an upstream answer (ttl 0 and
// immutable false: not at all) and the Cache-Control viewers get with it.
func policy(req *request, status int, originCC string, body []byte) (ttl time.Duration, immutable bool, viewerCC string) {
	cc := parseCacheControl(originCC)
	if status != 200 {
		if status == 404 && req.kind != kindPart && req.kind != kindPlaylist && !cc.noStore {
			// Parts are not remembered: a part missing now may be complete a
			// moment later. Nor are playlists: a new owner may be a moment
			// from serving the stream.
			return notFoundTTL, false, "no-cache"
		}
		return 0, false, "no-cache"
	}
	if req.kind != kindPlaylist {
		viewerCC = originCC
		if viewerCC == "" {
			viewerCC = defaultImmutableCacheControl
		}
		switch {
		case cc.noStore || cc.noCache:
			return 0, false, viewerCC
		case cc.hasMaxAge:
			return cc.maxAge, false, viewerCC
		}
		return 0, true, viewerCC
	}
	info := inspectPlaylist(body)
	if info.multivariant {
		viewerCC = originCC
		if viewerCC == "" {
			viewerCC = "no-cache"
		}
		switch {
		case cc.noStore:
			return 0, false, viewerCC
		case cc.hasMaxAge:
			return min(cc.maxAge, multivariantTTLCap), false, viewerCC
		}
		return multivariantDefaultTTL, false, viewerCC
	}
	viewerCC = originCC
	if viewerCC == "" || info.lowLatency || req.hls.Blocking() {
		// An LL media playlist changes every part: viewers must revalidate.
		viewerCC = "no-cache"
	}
	switch {
	case cc.noStore:
		return 0, false, viewerCC
	case req.hls.Blocking():
		return blockingPlaylistTTL, false, viewerCC
	}
	ttl = mediaPlaylistTTL
	if info.partTarget > 0 {
		ttl = min(ttl, info.partTarget/2)
	}
	if cc.hasMaxAge {
		ttl = min(ttl, cc.maxAge)
	}
	return ttl, false, viewerCC
}
