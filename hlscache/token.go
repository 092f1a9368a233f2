package hlscache

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Signed playback URLs.
//
// A token authorizes one stream path (every playlist, part, segment and init
// file under it) until an expiry, optionally for one client network only. It
// is a path prefix, /s/<token>/<stream path>/<file>, so the relative URIs of
// the playlists carry it without rewriting, and any cache checks it with the
// key alone. Version 1, the exact bytes (README.md and docs/security.md show
// the same recipe):
//
//	msg   = "sg1\n" + path + "\n" + exp + "\n" + net
//	sig   = HMAC-SHA256(key, msg)
//	token = "1." + exp + "." + base64url(net) + "." + base64url(sig)
//
// path is the stream path without slashes at either end ("live/cam1"), exp
// the expiry in Unix seconds as a decimal without leading zeros, net the
// client network in CIDR form or "" for any client; base64url is RFC 4648 §5
// without padding. The token holds no '/', so it is one path segment.
const (
	tokenVersion = "1"
	tokenPrefix  = "/s/" // the URL path of a signed request starts with it
	macLabel     = "sg1\n"
	sigLen       = 43 // base64url of a 32-byte HMAC-SHA256, unpadded
	// maxTokenLen bounds what is parsed: version, 19 digits, a base64url
	// IPv6 CIDR (at most 43 characters → 58) and the signature, with dots.
	maxTokenLen = 1 + 1 + 19 + 1 + 60 + 1 + sigLen
)

// Reasons a token is refused, also the "reason" label of
// streamgrid_cache_denied_total.
var (
	ErrTokenMissing   = errors.New("signed URL required")
	ErrTokenMalformed = errors.New("malformed token")
	ErrTokenVersion   = errors.New("unknown token version")
	ErrTokenSignature = errors.New("token signature does not match this stream") // tampered, or another stream
	ErrTokenExpired   = errors.New("token expired")
	ErrTokenNetwork   = errors.New("token not valid from this network")
)

var b64 = base64.RawURLEncoding

// Sign returns a token for stream path p (e.g. "live/cam1") valid until
// expires, for clients in network only when network is not nil.
func Sign(key []byte, p string, expires time.Time, network *net.IPNet) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	var nw string
	if network != nil {
		nw = network.String()
	}
	var b strings.Builder
	b.Grow(len(tokenVersion) + 3 + len(exp) + b64.EncodedLen(len(nw)) + sigLen)
	b.WriteString(tokenVersion)
	b.WriteByte('.')
	b.WriteString(exp)
	b.WriteByte('.')
	b.WriteString(b64.EncodeToString([]byte(nw)))
	b.WriteByte('.')
	b.WriteString(b64.EncodeToString(tokenMAC(key, strings.Trim(p, "/"), exp, nw)))
	return b.String()
}

// SignPath returns the signed URL path of stream p's playlist:
// /s/<token>/<p>/index.m3u8. Every other file of the stream is reached
// relative to it.
func SignPath(key []byte, p string, expires time.Time, network *net.IPNet) string {
	p = strings.Trim(p, "/")
	return tokenPrefix + Sign(key, p, expires, network) + "/" + p + "/index.m3u8"
}

// tokenMAC is HMAC-SHA256(key, "sg1\n" + path + "\n" + exp + "\n" + net).
func tokenMAC(key []byte, p, exp, nw string) []byte {
	var out [sha256.Size]byte
	m := &mac{h: hmac.New(sha256.New, key)}
	m.sum(p, exp, nw, &out)
	return out[:]
}

// mac is an HMAC-SHA256 state of the key and a buffer for the message.
type mac struct {
	h   hash.Hash
	buf []byte
	out []byte // the last sum; its array is reused
}

// sum computes the token MAC into out, reusing m's state and buffer.
func (m *mac) sum(p, exp, nw string, out *[sha256.Size]byte) {
	b := append(m.buf[:0], macLabel...)
	b = append(b, p...)
	b = append(b, '\n')
	b = append(b, exp...)
	b = append(b, '\n')
	b = append(b, nw...)
	m.buf = b
	m.h.Reset()
	m.h.Write(b)
	m.out = m.h.Sum(m.out[:0])
	copy(out[:], m.out)
}

// verifier checks tokens with one key, reusing HMAC states and buffers:
// the check every signed request pays allocates nothing without a network.
type verifier struct {
	macs sync.Pool // of *mac with the key
}

func newVerifier(key []byte) *verifier {
	k := bytes.Clone(key)
	return &verifier{macs: sync.Pool{New: func() any {
		return &mac{h: hmac.New(sha256.New, k), buf: make([]byte, 0, 128), out: make([]byte, 0, sha256.Size)}
	}}}
}

// verify is Verify with the verifier's key.
func (v *verifier) verify(s, p string, client netip.Addr, now time.Time) error {
	t, err := parseToken(s)
	if err != nil {
		return err
	}
	m := v.macs.Get().(*mac)
	var sum [sha256.Size]byte
	m.sum(p, t.exp, t.network, &sum)
	v.macs.Put(m)
	return t.check(sum[:], client, now)
}

// token is a parsed, not yet verified token.
type token struct {
	exp     string // as signed
	expires int64  // Unix seconds
	network string // as signed; "" for any client
	sig     [32]byte
}

// parseToken splits a token into its fields, checking their form only.
func parseToken(s string) (token, error) {
	var t token
	if s == "" {
		return t, ErrTokenMissing
	}
	if len(s) > maxTokenLen {
		return t, ErrTokenMalformed
	}
	ver, rest, ok := strings.Cut(s, ".")
	if !ok {
		return t, ErrTokenMalformed
	}
	if ver != tokenVersion {
		return t, ErrTokenVersion
	}
	exp, rest, ok1 := strings.Cut(rest, ".")
	nw, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || exp == "" || len(exp) > 19 || !allDigits(exp) || exp[0] == '0' && len(exp) > 1 {
		return t, ErrTokenMalformed
	}
	var err error
	if t.expires, err = strconv.ParseInt(exp, 10, 64); err != nil {
		return t, ErrTokenMalformed
	}
	t.exp = exp
	if len(sig) != sigLen {
		return t, ErrTokenMalformed
	}
	if n, err := b64.Strict().Decode(t.sig[:], []byte(sig)); err != nil || n != len(t.sig) {
		return t, ErrTokenMalformed
	}
	if nw != "" {
		raw, err := b64.Strict().DecodeString(nw)
		if err != nil || len(raw) == 0 {
			return t, ErrTokenMalformed
		}
		t.network = string(raw)
	}
	return t, nil
}

// Verify checks token s for stream path p (without slashes at either end),
// asked by client at now. It returns nil or one of the ErrToken errors. The
// signature is checked before anything it covers is believed.
func Verify(key []byte, s, p string, client netip.Addr, now time.Time) error {
	t, err := parseToken(s)
	if err != nil {
		return err
	}
	return t.check(tokenMAC(key, p, t.exp, t.network), client, now)
}

// check compares the token's signature with mac, the one computed for the
// asked stream, then the claims it covers.
func (t *token) check(mac []byte, client netip.Addr, now time.Time) error {
	if !hmac.Equal(t.sig[:], mac) {
		return ErrTokenSignature
	}
	if now.Unix() >= t.expires {
		return ErrTokenExpired
	}
	if t.network != "" {
		pfx, err := netip.ParsePrefix(t.network)
		if err != nil {
			return ErrTokenMalformed // signed, but by a signer that wrote no CIDR
		}
		if !pfx.Contains(client.Unmap()) && !pfx.Contains(client) {
			return ErrTokenNetwork
		}
	}
	return nil
}

// splitSignedPath splits /s/<token>/<rest> into the token and /<rest>;
// ok is false when urlPath does not start with /s/.
func splitSignedPath(urlPath string) (tok, rest string, ok bool) {
	after, found := strings.CutPrefix(urlPath, tokenPrefix)
	if !found {
		return "", urlPath, false
	}
	i := strings.IndexByte(after, '/')
	if i < 0 {
		return after, "/", true
	}
	return after[:i], after[i:], true
}
