package hlscache

import "bytes"

// The fast path's request parser (fastserver.go): it reads an HTTP/1.x
// request head from a byte slice without allocating, and accepts only the
// plain requests the fast path answers itself. Everything else (a method
// other than GET or HEAD, a body, a Range or conditional header, an Expect
// or Upgrade, an escaped or absolute URL, obs-folded or non-ASCII header
// lines, several Host or Connection headers, a Connection value other than
// one "close" or "keep-alive", bare LF line ends) is headFallback: the
// connection goes to net/http, which answers it (or refuses it) as it
// always has. The parser never has to be right about a request it hands
// over; it has to be right about every request it accepts: those are ones
// http.ReadRequest, and net/http's server checks after it, accept with the
// same method, path, query, version and connection semantics
// (FuzzParseHead checks that).

// headStatus is what parseHead made of a buffer.
type headStatus int

const (
	headIncomplete headStatus = iota // no end of head yet: read more
	headOK                           // a request the fast path may answer
	headFallback                     // anything else: hand the connection to net/http
)

// fastHead is a parsed request head. Its slices alias the buffer parsed.
type fastHead struct {
	head      bool   // HEAD, else GET
	path      []byte // the request target's path, not escaped (no '%')
	query     []byte // after the first '?', possibly empty
	http11    bool   // HTTP/1.1, else HTTP/1.0
	close     bool   // Connection: close
	keepAlive bool   // Connection: keep-alive
	userAgent []byte // the User-Agent value, nil without one
	fetchDest []byte // the first Sec-Fetch-Dest value, nil without one
	// rng is a Range value of the one form the fast path answers, a single
	// byte range (parseRange); nil without a Range header.
	rng  []byte
	size int // bytes of the head, its final empty line included
}

// wantsClose reports whether the connection ends after this request's
// answer, as net/http decides for an answer with a Content-Length: HTTP/1.1
// unless "close", HTTP/1.0 only with "keep-alive".
func (h *fastHead) wantsClose() bool {
	if h.http11 {
		return h.close
	}
	return !h.keepAlive
}

// headerAction is what parseHead does with a request header by name.
type headerAction int

const (
	headerIgnore headerAction = iota
	headerHost
	headerConnection
	headerUserAgent
	headerFetchDest
	headerRange
	headerRefuse // a header the fast path does not implement
)

// refusedHeaders are the request headers that send a request to net/http:
// a body, its expectations and upgrades, and the preconditions
// http.ServeContent acts on, in lower case. A Range header is answered here
// in its simplest form (one byte range, as ffmpeg asks "bytes=0-" for
// every file), else it is net/http's too.
var refusedHeaders = []string{
	"content-length", "transfer-encoding", "expect", "upgrade", "http2-settings", "te", "trailer",
	"if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
}

func classifyHeader(name []byte) headerAction {
	switch {
	case asciiEqualFold(name, "host"):
		return headerHost
	case asciiEqualFold(name, "connection"):
		return headerConnection
	case asciiEqualFold(name, "user-agent"):
		return headerUserAgent
	case asciiEqualFold(name, "range"):
		return headerRange
	case asciiEqualFold(name, "sec-fetch-dest"):
		return headerFetchDest
	}
	for _, r := range refusedHeaders {
		if asciiEqualFold(name, r) {
			return headerRefuse
		}
	}
	return headerIgnore
}

// parseHead parses the request head at the start of b.
func parseHead(b []byte) (fastHead, headStatus) {
	var h fastHead
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		// A bare LF anywhere is net/http's to judge (it takes one as a
		// line end): waiting for a CRLFCRLF that may never come would
		// stall a request it answers.
		for i := 0; ; {
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				return h, headIncomplete
			}
			if i+j == 0 || b[i+j-1] != '\r' {
				return h, headFallback
			}
			i += j + 1
		}
	}
	h.size = end + 4
	head := b[:end+2] // every line with its CRLF
	i := bytes.Index(head, crlf)
	if !parseRequestLine(head[:i], &h) {
		return h, headFallback
	}
	var hosts, conns int
	var uaSeen, destSeen bool
	for rest := head[i+2:]; len(rest) > 0; {
		j := bytes.Index(rest, crlf)
		line := rest[:j]
		rest = rest[j+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return h, headFallback // obs-fold, no colon, a bad name
		}
		value, ok := fieldValue(line[colon+1:])
		if !ok {
			return h, headFallback
		}
		switch classifyHeader(line[:colon]) {
		case headerHost:
			hosts++
			if hosts > 1 || !validHost(value) {
				return h, headFallback
			}
		case headerConnection:
			conns++
			switch {
			case conns > 1:
				return h, headFallback
			case asciiEqualFold(value, "close"):
				h.close = true
			case asciiEqualFold(value, "keep-alive"):
				h.keepAlive = true
			default:
				return h, headFallback
			}
		case headerUserAgent:
			// The first one counts, as Header.Get's, even when empty.
			if !uaSeen {
				uaSeen = true
				h.userAgent = value[:len(value):len(value)]
			}
		case headerFetchDest:
			if !destSeen {
				destSeen = true
				h.fetchDest = value[:len(value):len(value)]
			}
		case headerRange:
			if h.rng != nil || !validRange(value) {
				return h, headFallback // two Range headers, or not one byte range
			}
			h.rng = value[:len(value):len(value)]
		case headerRefuse:
			return h, headFallback
		}
	}
	if h.http11 && hosts == 0 {
		return h, headFallback // net/http's 400
	}
	return h, headOK
}

// maxRangeDigits bounds a range's numbers: any of them fits an int64.
const maxRangeDigits = 18

// validRange accepts the byte ranges the fast path answers: "bytes=" and
// one range "first-", "first-last" or "-suffix" of decimal digits, the
// suffix not 0; no white space, no list. parseRange reads them as
// net/http's parseRange does.
func validRange(v []byte) bool {
	rest, ok := bytes.CutPrefix(v, []byte("bytes="))
	if !ok {
		return false
	}
	first, last, ok := bytes.Cut(rest, []byte("-"))
	if !ok || !digits(first, true) || !digits(last, true) || len(first)+len(last) == 0 {
		return false
	}
	// A suffix of 0 bytes is net/http's to answer.
	return len(first) > 0 || len(bytes.TrimLeft(last, "0")) > 0
}

// digits reports b all decimal digits, at most maxRangeDigits of them
// (empty when empty is allowed).
func digits(b []byte, empty bool) bool {
	if len(b) == 0 {
		return empty
	}
	if len(b) > maxRangeDigits {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// atoi is the value of validRange's digits.
func atoi(b []byte) int64 {
	var n int64
	for _, c := range b {
		n = n*10 + int64(c-'0')
	}
	return n
}

// parseRange is the byte range a validRange value asks of a body of size
// bytes, as http.ServeContent reads it (a last byte past the end is the
// end; a suffix longer than the body is the body): start and length. ok
// false when it is not satisfiable (ServeContent's 416, net/http's to send).
func parseRange(v []byte, size int64) (start, length int64, ok bool) {
	first, last, _ := bytes.Cut(v[len("bytes="):], []byte("-"))
	if len(first) == 0 {
		n := min(atoi(last), size)
		return size - n, n, n > 0
	}
	start = atoi(first)
	if start >= size {
		return 0, 0, false
	}
	end := size - 1
	if len(last) > 0 {
		if e := atoi(last); e < start {
			return 0, 0, false // net/http's "invalid range" (416)
		} else if e < end {
			end = e
		}
	}
	return start, end - start + 1, true
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// parseRequestLine parses "GET|HEAD SP origin-form SP HTTP/1.0|1.1".
func parseRequestLine(line []byte, h *fastHead) bool {
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		h.head = true
		line = line[5:]
	default:
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return false
	}
	target, proto := line[:sp], line[sp+1:]
	switch string(proto) { // no allocation: a conversion compared
	case "HTTP/1.1":
		h.http11 = true
	case "HTTP/1.0":
	default:
		return false
	}
	if len(target) == 0 || target[0] != '/' {
		return false
	}
	h.path = target
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		h.path, h.query = target[:q], target[q+1:]
	}
	for _, c := range h.path {
		if !pathChar(c) {
			return false
		}
	}
	for _, c := range h.query {
		if !pathChar(c) && c != '/' && c != '?' && c != '%' {
			return false
		}
	}
	return true
}

// pathChar reports an RFC 3986 pchar other than a percent-escape, or '/':
// bytes net/url keeps as they are in a path.
func pathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/':
		return true
	}
	return false
}

// isToken reports an RFC 9110 token (a header name).
func isToken(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return len(b) > 0
}

// fieldValue trims a header value of its optional white space, as
// net/textproto does, and accepts visible ASCII, spaces and tabs only.
func fieldValue(v []byte) ([]byte, bool) {
	for _, c := range v {
		if c != '\t' && (c < ' ' || c > '~') {
			return nil, false
		}
	}
	return bytes.Trim(v, " \t"), true
}

// validHost accepts a non-empty Host of letters, digits and ".-_:[]", a
// subset of what net/http accepts.
func validHost(v []byte) bool {
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '.', '-', '_', ':', '[', ']':
			continue
		}
		return false
	}
	return len(v) > 0
}

// asciiEqualFold reports b equal to lower, an ASCII lower-case string,
// ignoring case.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
