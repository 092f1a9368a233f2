package hlscache

import (
	"net/http"
	"strings"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

// maxFileLen bounds the file name of a request.
const maxFileLen = 200

// kind is what a requested file is, for caching policy and metrics.
type kind int

const (
	kindPlaylist kind = iota
	kindSegment
	kindPart
	kindInit
	kindPage // the player page, /<stream path>/
	numKinds // the number of kinds, for tables indexed by kind
)

func (k kind) String() string {
	switch k {
	case kindPlaylist:
		return "playlist"
	case kindPart:
		return "part"
	case kindInit:
		return "init"
	case kindPage:
		return "page"
	}
	return "segment"
}

// kindOther labels metrics of requests rejected before their kind is known.
const kindOther = "other"

// mimeTypes are the Content-Types of the files the cache serves, by extension.
var mimeTypes = map[string]string{
	".m3u8": "application/vnd.apple.mpegurl",
	".ts":   "video/mp2t",
	".mp4":  "video/mp4",
	".m4s":  "video/mp4",
	".aac":  "audio/aac",
}

// request is a viewer request that passed validation.
type request struct {
	stream string // stream path, valid per bus.ValidatePath
	file   string // file name within the stream
	ext    string // one of the keys of mimeTypes
	kind   kind
	hls    hlsproto.Directives // zero unless kind is kindPlaylist
}

// upstreamPath is the path and normalised query asked of the origin.
func (r *request) upstreamPath() string {
	q := r.hls.Encode()
	var b strings.Builder
	b.Grow(r.upstreamPathLen(q))
	r.writeUpstreamPath(&b, q)
	return b.String()
}

// upstreamPathLen is the length of upstreamPath, q being r.hls.Encode().
func (r *request) upstreamPathLen(q string) int {
	n := 2 + len(r.stream) + len(r.file)
	if q != "" {
		n += 1 + len(q)
	}
	return n
}

// writeUpstreamPath writes upstreamPath to b, q being r.hls.Encode().
func (r *request) writeUpstreamPath(b *strings.Builder, q string) {
	b.WriteByte('/')
	b.WriteString(r.stream)
	b.WriteByte('/')
	b.WriteString(r.file)
	if q != "" {
		b.WriteByte('?')
		b.WriteString(q)
	}
}

// requestError is a request rejected before routing, with the status to answer.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(msg string) error { return &requestError{status: http.StatusBadRequest, msg: msg} }
func notFound(msg string) error   { return &requestError{status: http.StatusNotFound, msg: msg} }

// parseRequest validates a viewer's URL path (as decoded by net/http) and
// raw query. The path is /<stream path>/<file>: the stream path is everything
// before the last '/'; an empty file (/<stream path>/) asks for the player page. A "." or ".." segment, an empty segment or a stream
// path that breaks bus.ValidatePath is a bad request (400); a file name or
// extension the cache does not serve is not found (404).
func parseRequest(urlPath, rawQuery string) (*request, error) {
	if !strings.HasPrefix(urlPath, "/") {
		return nil, badRequest("bad path")
	}
	p := urlPath[1:]
	if p == "" {
		return nil, notFound("not found")
	}
	if len(p) > bus.MaxPathLen+1+maxFileLen {
		return nil, badRequest("path too long")
	}
	if stream, ok := strings.CutSuffix(p, "/"); ok {
		if bus.ValidatePath(stream) != nil {
			return nil, badRequest("bad stream path")
		}
		return &request{stream: stream, kind: kindPage}, nil
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return nil, badRequest("bad path")
		}
	}
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return nil, notFound("not found")
	}
	stream, file := p[:i], p[i+1:]
	if err := bus.ValidatePath(stream); err != nil {
		return nil, badRequest("bad stream path")
	}
	if !validFileName(file) {
		return nil, notFound("not found")
	}
	ext := file[strings.LastIndexByte(file, '.'):] // validFileName guarantees a known extension
	req := &request{stream: stream, file: file, ext: ext, kind: fileKind(file, ext)}
	if req.kind == kindPlaylist {
		// Only the LL-HLS directives are kept: they alone are forwarded
		// and make part of cache keys. A malformed one is a 400 whose
		// text names it.
		d, err := hlsproto.Parse(rawQuery)
		if err != nil {
			return nil, badRequest(err.Error())
		}
		req.hls = d
	}
	return req, nil
}

// validFileName reports a name matching [A-Za-z0-9][A-Za-z0-9_.-]* that ends
// in an extension the cache serves.
func validFileName(f string) bool {
	if f == "" || len(f) > maxFileLen {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	dot := strings.LastIndexByte(f, '.')
	if dot <= 0 {
		return false
	}
	_, ok := mimeTypes[f[dot:]]
	return ok
}

// fileKind classifies a valid file name. gohlslib names its files
// <prefix>_<stream>_init.mp4, <prefix>_<stream>_seg<N>.mp4|.ts and
// <prefix>_<stream>_part<N>.mp4; other packagers' "init.mp4" and "partN.m4s"
// forms are recognised as well.
func fileKind(file, ext string) kind {
	if ext == ".m3u8" {
		return kindPlaylist
	}
	base := strings.ToLower(file[:len(file)-len(ext)])
	last := base
	if i := strings.LastIndexAny(base, "_.-"); i >= 0 {
		last = base[i+1:]
	}
	switch {
	case last == "init" || strings.HasPrefix(base, "init_") || strings.HasPrefix(base, "init-"):
		return kindInit
	case len(last) > len("part") && strings.HasPrefix(last, "part") && allDigits(last[len("part"):]):
		return kindPart
	}
	return kindSegment
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
