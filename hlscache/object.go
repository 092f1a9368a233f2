package hlscache

import (
	"bytes"
	"net/http"
	"strconv"
	"time"
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
