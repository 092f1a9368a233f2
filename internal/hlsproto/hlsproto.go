// Package hlsproto holds the HTTP contract between origins and caches: the
// headers an origin stamps on its answers and the LL-HLS delivery
// directives (_HLS_msn, _HLS_part, _HLS_skip) both sides parse. It is the
// one home of these rules, so the two roles cannot drift apart.
//
// Invariants:
//   - Parse accepts only what the LL-HLS specification lets a client send:
//     decimal integers of at most 19 digits, _HLS_part only with _HLS_msn,
//     _HLS_skip only as YES or v2, no directive twice. Anything else is an
//     error whose text names the directive; servers answer it with 400.
//   - Parameters that are not directives (tokens, cache busters) are
//     ignored: they are never forwarded and never part of a cache key.
//   - Encode renders the directives in one fixed order, so equal requests
//     give equal strings (cache keys, upstream URLs).
package hlsproto

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Headers an origin sets on every answer, and a cache sends on every request.
const (
	// HeaderOrigin is the answering origin's node name.
	HeaderOrigin = "X-Streamgrid-Origin"
	// HeaderEpoch is the origin's lease epoch for the stream, decimal.
	HeaderEpoch = "X-Streamgrid-Epoch"
	// HeaderAuth carries the cluster's origin secret from a cache to an
	// origin; an origin with a secret refuses requests without it.
	HeaderAuth = "X-Streamgrid-Auth"
)

// Directive names.
const (
	MSN  = "_HLS_msn"
	Part = "_HLS_part"
	Skip = "_HLS_skip"
)

// Directives are the LL-HLS delivery directives of a playlist request.
type Directives struct {
	MSN, Part       uint64
	HasMSN, HasPart bool
	Skip            string // "", "YES" or "v2"
}

// Blocking reports a blocking playlist reload (_HLS_msn, optionally _HLS_part).
func (d Directives) Blocking() bool { return d.HasMSN }

// Delta reports a request for a delta update (_HLS_skip).
func (d Directives) Delta() bool { return d.Skip != "" }

// Encode renders the directives in a fixed order: _HLS_msn, _HLS_part,
// _HLS_skip; "" when there are none.
func (d Directives) Encode() string {
	if !d.HasMSN && !d.HasPart && d.Skip == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(64)
	if d.HasMSN {
		b.WriteString(MSN + "=")
		b.WriteString(strconv.FormatUint(d.MSN, 10))
	}
	if d.HasPart {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(Part + "=")
		b.WriteString(strconv.FormatUint(d.Part, 10))
	}
	if d.Skip != "" {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(Skip + "=")
		b.WriteString(d.Skip)
	}
	return b.String()
}

// Error is a malformed directive; its text is safe to send to the client.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

func bad(msg string) error { return &Error{msg: msg} }

// Parse extracts the directives from a raw (still escaped) query.
func Parse(raw string) (Directives, error) {
	var d Directives
	for kv := range strings.SplitSeq(raw, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || !strings.HasPrefix(key, "_HLS_") {
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return d, bad("bad " + key)
		}
		switch key {
		case MSN:
			if err := setUint(MSN, val, &d.MSN, &d.HasMSN); err != nil {
				return d, err
			}
		case Part:
			if err := setUint(Part, val, &d.Part, &d.HasPart); err != nil {
				return d, err
			}
		case Skip:
			if d.Skip != "" {
				return d, bad("repeated " + Skip)
			}
			if val != "YES" && val != "v2" {
				return d, bad("bad " + Skip)
			}
			d.Skip = val
		}
	}
	if d.HasPart && !d.HasMSN {
		return d, bad(Part + " without " + MSN)
	}
	return d, nil
}

var errNotDecimal = errors.New("not a decimal integer")

// parseUint parses a decimal integer: digits only, at most 19 of them.
// setUint sets a numeric directive key from its unescaped value val: *n
// to the number and *has to true; an error for a repeated key (*has already
// set) or a value that is not a decimal number.
func setUint(key, val string, n *uint64, has *bool) error {
	if *has {
		return bad("repeated " + key)
	}
	v, err := parseUint(val)
	if err != nil {
		return bad("bad " + key)
	}
	*n, *has = v, true
	return nil
}

func parseUint(s string) (uint64, error) {
	if s == "" || len(s) > 19 {
		return 0, errNotDecimal
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errNotDecimal
		}
	}
	return strconv.ParseUint(s, 10, 64)
}
