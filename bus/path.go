package bus

import (
	"errors"
	"fmt"
	"strings"
)

// MaxPathLen bounds a stream path.
const MaxPathLen = 256

// ErrInvalidPath is returned for a stream path that breaks the naming rules.
var ErrInvalidPath = errors.New("invalid stream path")

// ValidatePath checks a stream path: one or more '/'-separated segments of
// letters, digits, '-', '_', '.', '~'; no empty, "." or ".." segment; at most
// MaxPathLen bytes. A leading or trailing '/' is not part of a path.
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPath)
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidPath, MaxPathLen)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: segment %q", ErrInvalidPath, seg)
		}
		for i := 0; i < len(seg); i++ {
			if !pathByte(seg[i]) {
				return fmt.Errorf("%w: character %q", ErrInvalidPath, seg[i])
			}
		}
	}
	return nil
}

func pathByte(c byte) bool {
	return tokenByte(c) || c == '.' || c == '~'
}

// tokenByte reports the bytes that are kept as they are in a subject token
// and in a KV key.
func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

const hexDigits = "0123456789ABCDEF"

// EncodePath maps any string to one NATS subject token that is also a valid
// JetStream KV key: bytes in [A-Za-z0-9_-] stay, every other byte becomes
// '=' and two upper-case hex digits. "live/cam1" becomes "live=2Fcam1". The
// mapping is injective, so DecodePath inverts it.
func EncodePath(p string) string {
	n := 0
	for i := 0; i < len(p); i++ {
		if !tokenByte(p[i]) {
			n++
		}
	}
	if n == 0 {
		return p
	}
	var b strings.Builder
	b.Grow(len(p) + 2*n)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if tokenByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String()
}

// DecodePath inverts EncodePath.
func DecodePath(tok string) (string, error) {
	if !strings.Contains(tok, "=") {
		for i := 0; i < len(tok); i++ {
			if !tokenByte(tok[i]) {
				return "", fmt.Errorf("%w: token byte %q", ErrInvalidPath, tok[i])
			}
		}
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case tokenByte(c):
			b = append(b, c)
		case c == '=' && i+2 < len(tok):
			hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("%w: bad escape in %q", ErrInvalidPath, tok)
			}
			v := byte(hi<<4 | lo)
			if tokenByte(v) {
				return "", fmt.Errorf("%w: needless escape in %q", ErrInvalidPath, tok)
			}
			b = append(b, v)
			i += 2
		default:
			return "", fmt.Errorf("%w: bad token %q", ErrInvalidPath, tok)
		}
	}
	return string(b), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Subject prefixes. Every subject the cluster uses starts with "sg.".
const (
	mediaPrefix = "sg.media."
	gopPrefix   = "sg.gop."
)

// MediaSubject is the subject carrying a stream's packets.
func MediaSubject(path string) string { return mediaPrefix + EncodePath(path) }

// GOPSubject is the subject on which the edge answers requests for a stream's last GOP.
func GOPSubject(path string) string { return gopPrefix + EncodePath(path) }

// StatsSubject is where a node's API asks every other node for its
// first-hand figures (scatter-gather: each answers on the reply inbox) to
// build the cluster-wide stream list. Every role publishes requests on it,
// subscribes to it and answers.
const StatsSubject = "sg.api.stats"
