package hlscache

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// ErrUnauthenticated is what an Authorize hook returns (wrapped or not) when
// credentials could change the answer: the viewer gets 401 with a Basic
// challenge. Any other error is a 403.
var ErrUnauthenticated = errors.New("credentials required")

// Reasons of streamgrid_cache_denied_total besides the token errors'.
const (
	deniedUnauthenticated = "unauthenticated"
	deniedForbidden       = "forbidden"
)

// tokenReason is the metric label of a token error.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, ErrTokenMissing):
		return "missing"
	case errors.Is(err, ErrTokenVersion):
		return "version"
	case errors.Is(err, ErrTokenSignature):
		return "signature"
	case errors.Is(err, ErrTokenExpired):
		return "expired"
	case errors.Is(err, ErrTokenNetwork):
		return "network"
	}
	return "malformed"
}

var deniedReasons = []string{"missing", "malformed", "version", "signature", "expired", "network",
	deniedUnauthenticated, deniedForbidden}

// access decides whether a parsed request may be served. tok is the token of
// a /s/<token>/ path ("" without one). With a signing key the token is the
// authorization and the Authorize hook is not asked; without one, the hook
// (when set) is. It returns the status to refuse with (0 to serve) and the
// metric reason.
func (c *Cache) access(r *http.Request, req *request, tok string) (status int, reason, msg string) {
	if c.verifier != nil {
		err := c.verifier.verify(tok, req.stream, clientAddr(r), c.now())
		if err == nil {
			return 0, "", ""
		}
		return http.StatusForbidden, tokenReason(err), err.Error()
	}
	if c.Authorize == nil {
		return 0, "", ""
	}
	err := c.Authorize(r, req.stream)
	switch {
	case err == nil:
		return 0, "", ""
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized, deniedUnauthenticated, "credentials required"
	}
	// The hook's error text stays in the logs: it may say more than a
	// stranger should learn.
	c.Log.Debug("viewer refused", "stream", req.stream, "client", r.RemoteAddr, "err", err)
	return http.StatusForbidden, deniedForbidden, "forbidden"
}

// deny answers a refused request and counts it.
func (c *Cache) deny(w http.ResponseWriter, status int, reason, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="streamgrid", charset="UTF-8"`)
	}
	c.m.denied[reason].Inc()
	writeText(w, status, msg)
}

// clientAddr is the address of the peer of r (no proxy headers are believed).
func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
