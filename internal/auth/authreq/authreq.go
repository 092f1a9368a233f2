// Package authreq is the vocabulary of an authorization request: what a
// client wants to do (Request, Action) and the refusals a decision returns.
// It imports nothing of streamgrid's, so that a role (the edge) can ask an
// authenticator without depending on internal/auth. internal/auth
// re-exports every name here.
package authreq

import (
	"errors"
	"fmt"
	"net"
)

// Action is what a client wants to do.
type Action string

// Actions, as the permissions in streamgrid.yml name them.
const (
	ActionPublish Action = "publish"
	ActionRead    Action = "read"
	ActionAPI     Action = "api"
	ActionMetrics Action = "metrics"
	ActionPprof   Action = "pprof"
)

// Refusals. Callers map ErrUnauthorized to 401 (ask for credentials) and
// ErrForbidden to 403.
var (
	// ErrUnauthorized: the credentials are missing or wrong.
	ErrUnauthorized = errors.New("auth: credentials missing or wrong")
	// ErrNoCredentials is ErrUnauthorized when the client sent none: the
	// usual first step of RTSP and HTTP clients, answered with a challenge.
	ErrNoCredentials = fmt.Errorf("%w (none sent)", ErrUnauthorized)
	// ErrBadCredentials is ErrUnauthorized when the client sent wrong ones.
	ErrBadCredentials = fmt.Errorf("%w (wrong user or password)", ErrUnauthorized)
	// ErrForbidden: the client is known (or needs none) but may not do this.
	ErrForbidden = errors.New("auth: forbidden")
)

// Request is one thing a client wants to do.
type Request struct {
	// User and Pass are the credentials the client sent ("" when none).
	User, Pass string
	// IP is the client's address.
	IP net.IP
	// Action and Path (the stream path, for publish and read).
	Action Action
	Path   string
	// Protocol is rtsp, rtmp or http; it goes to the external authorizer
	// and into the denied metric.
	Protocol string
	// Query is the request's query string, for the external authorizer.
	Query string
	// Verify, when set, checks credentials the client proved without
	// sending the password (RTSP Digest): it is called with a configured
	// user and its plain password. User is then the name the client claimed
	// and Pass is empty. Hashed passwords and the external authorizer need
	// the password itself, so they never match this way.
	Verify func(user, pass string) bool
}

// HasCredentials reports whether the client sent or proved any credentials.
func (r *Request) HasCredentials() bool { return r.User != "" || r.Pass != "" || r.Verify != nil }
