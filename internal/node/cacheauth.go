package node

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/auth/authreq"
)

// cacheAuthorize is the cache's Authorize hook: a viewer request needs the
// read permission on its stream (HTTP Basic credentials, or a user "any"
// holding read). Without an auth section read is open; with a signing key
// the cache checks tokens instead and never asks this hook.
func (n *Node) cacheAuthorize(r *http.Request, stream string) error {
	user, pass, _ := r.BasicAuth()
	err := n.auth.Authenticate(r.Context(), authreq.Request{
		User: user, Pass: pass, IP: clientIP(r), Action: authreq.ActionRead, Path: stream,
		Protocol: "hls", Query: r.URL.RawQuery,
	})
	if errors.Is(err, authreq.ErrUnauthorized) {
		return fmt.Errorf("%w: %w", hlscache.ErrUnauthenticated, err)
	}
	return err
}
