package hlscache

import (
	"bytes"
	"strconv"
	"strings"
	"time"
)

// The caching policy: how long the cache keeps an upstream answer, and the
// Cache-Control its viewers get with it (policy).

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
