// Package auth decides who may do what on a node: publish or read a stream,
// use the API, scrape /metrics, take profiles. The rules come from the auth
// section of streamgrid.yml (users with passwords, client networks and
// permissions; an optional external HTTP authorizer) and can be replaced at
// run time. Every protocol (RTSP, RTMP, HTTP) asks the same Authenticator.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/auth/authconf"
	"github.com/streamgrid/streamgrid/internal/auth/authreq"
)

// The request vocabulary (authreq.Request, its actions and the errors of
// Authenticate) lives in authreq, which the edge imports without this
// package.

// Reasons of the denied metric.
const (
	reasonNoCredentials  = "no_credentials"
	reasonBadCredentials = "bad_credentials"
	reasonForbidden      = "forbidden"
	reasonNotLoopback    = "not_loopback"
	reasonAuthorizerDown = "authorizer_down"
)

// maxArgon2Checks bounds the argon2 computations running at once: each
// takes tens of megabytes and tens of milliseconds.
const maxArgon2Checks = 2

// verifiedTTL is how long a password that passed an argon2 check is
// remembered, so an API client sending Basic credentials on every request
// does not pay for the hash every time.
const (
	verifiedTTL = time.Minute
	maxVerified = 1024
)

// Authenticator answers Authenticate from the current rules. Fill in the
// fields, Start, then Update to replace the rules.
type Authenticator struct {
	// Config is the auth section to start with.
	Config authconf.Auth
	// Node and Role label the metrics.
	Node, Role string
	// Log receives refusals (never passwords) and authorizer outages.
	// Default slog.Default().
	Log *slog.Logger
	// Metrics receives streamgrid_auth_denied_total. Default: a private registry.
	Metrics prometheus.Registerer
	// HTTPClient calls the external authorizer. Default: a client that does
	// not follow redirects.
	HTTPClient *http.Client

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration)

	log      *slog.Logger
	rules    atomic.Pointer[rules]
	denied   *prometheus.CounterVec
	fails    failures
	argon2   chan struct{}
	verified sync.Map // [32]byte → time.Time (expiry), argon2 passwords that matched
	nVerify  atomic.Int64
	started  bool
}

// Start compiles the configuration and registers the metric.
func (a *Authenticator) Start() error {
	if a.started {
		return errors.New("auth: already started")
	}
	a.log = a.Log
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "auth")
	if a.now == nil {
		a.now = time.Now
	}
	if a.sleep == nil {
		a.sleep = sleepCtx
	}
	if a.HTTPClient == nil {
		a.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if a.Metrics == nil {
		a.Metrics = prometheus.NewRegistry()
	}
	a.argon2 = make(chan struct{}, maxArgon2Checks)
	if err := a.Update(a.Config); err != nil {
		return err
	}
	a.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "streamgrid", Subsystem: "auth", Name: "denied_total",
		Help: "Requests refused by authentication or permissions, by action, protocol and reason " +
			"(no_credentials is the challenge most RTSP and HTTP clients get before they send credentials).",
		ConstLabels: prometheus.Labels{"node": a.Node, "role": a.Role},
	}, []string{"action", "protocol", "reason"})
	if err := a.Metrics.Register(a.denied); err != nil {
		return fmt.Errorf("auth: register metrics: %w", err)
	}
	a.started = true
	return nil
}

// Close unregisters the metric. Calling it twice is harmless.
func (a *Authenticator) Close() {
	if a.started {
		a.Metrics.Unregister(a.denied)
		a.started = false
	}
}

// Update replaces the rules at once; requests in flight finish under the
// old ones. On error the old rules stay.
func (a *Authenticator) Update(c authconf.Auth) error {
	r, err := compile(c)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.HTTPAddress != "" {
		shown := c.HTTPAddress
		if u, err := url.Parse(c.HTTPAddress); err == nil {
			shown = u.Redacted()
		}
		r.http = &authorizer{
			url: c.HTTPAddress, timeout: c.HTTPTimeout, ttl: c.HTTPCacheTTL,
			fallback: c.HTTPFallback == "allow", client: a.HTTPClient,
			log: a.log.With("authorizer", shown), now: a.now,
			decisions: make(map[[sha256.Size]byte]decision),
		}
		if r.http.timeout <= 0 {
			r.http.timeout = 2 * time.Second
		}
	}
	a.rules.Store(r)
	a.verified.Clear()
	a.nVerify.Store(0)
	return nil
}

// Enabled reports whether an auth section is in force (false: the open defaults).
func (a *Authenticator) Enabled() bool { return a.rules.Load().enabled }

// ReadOpen reports whether every read request is allowed under the rules in
// force, whoever sends it from wherever: no auth section, or a user "any"
// without ips that may read every path (an empty path). A cache may then
// serve viewers without asking (hlscache's fast path).
func (a *Authenticator) ReadOpen() bool { return a.rules.Load().readOpen }

// Authenticate decides a request: nil allows it; an error wrapping
// ErrUnauthorized or ErrForbidden says why not. A refusal is counted; wrong
// credentials from an address that keeps failing are answered later and
// later (up to a few seconds), so password guessing is slow.
func (a *Authenticator) Authenticate(ctx context.Context, req authreq.Request) error {
	r := a.rules.Load()
	reason, err := a.decide(ctx, r, &req)
	ip := addrOf(req.IP)
	if err == nil {
		if req.HasCredentials() {
			a.fails.succeed(ip)
		}
		return nil
	}
	a.denied.WithLabelValues(string(req.Action), req.Protocol, reason).Inc()
	if reason == reasonBadCredentials {
		if d := a.fails.fail(ip, a.now()); d > 0 {
			a.sleep(ctx, d)
		}
	}
	return err
}

// decide returns nil, or the refusal and its reason (a label of the denied metric).
func (a *Authenticator) decide(ctx context.Context, r *rules, req *authreq.Request) (string, error) {
	ip := addrOf(req.IP)
	if !validAction(req.Action) {
		return reasonForbidden, fmt.Errorf("%w: unknown action %q", authreq.ErrForbidden, req.Action)
	}
	if !r.enabled {
		switch req.Action {
		case authreq.ActionPublish, authreq.ActionRead:
			return "", nil
		}
		if ip.IsLoopback() {
			return "", nil
		}
		return reasonNotLoopback, fmt.Errorf("%w: %s is served to loopback clients only while no auth section is configured", authreq.ErrForbidden, req.Action)
	}
	credsOK := false // some user accepted the credentials
	for i := range r.users {
		u := &r.users[i]
		if u.any {
			if u.ipAllowed(ip) && u.permits(req.Action, req.Path) {
				return "", nil
			}
			continue
		}
		if req.User == "" || !nameMatches(u.name, req.User) || !a.checkPassword(ctx, u, req) {
			continue
		}
		credsOK = true
		if u.ipAllowed(ip) && u.permits(req.Action, req.Path) {
			return "", nil
		}
	}
	if r.http != nil && !credsOK {
		return a.askAuthorizer(ctx, r.http, req)
	}
	switch {
	case credsOK:
		return reasonForbidden, fmt.Errorf("%w: user %q may not %s %q from %s", authreq.ErrForbidden, req.User, req.Action, req.Path, ip)
	case !req.HasCredentials():
		return reasonNoCredentials, authreq.ErrNoCredentials
	default:
		return reasonBadCredentials, authreq.ErrBadCredentials
	}
}

// checkPassword checks the client's password against u's.
func (a *Authenticator) checkPassword(ctx context.Context, u *user, req *authreq.Request) bool {
	if req.Verify != nil {
		plain, ok := u.pass.plainText()
		return ok && req.Verify(u.name, plain)
	}
	if !u.pass.expensive() {
		return u.pass.matches(req.Pass)
	}
	key := sha256.Sum256([]byte(u.name + "\x00" + req.Pass))
	now := a.now()
	if exp, ok := a.verified.Load(key); ok && now.Before(exp.(time.Time)) {
		return true
	}
	select {
	case a.argon2 <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	ok := u.pass.matches(req.Pass)
	<-a.argon2
	if ok {
		if a.nVerify.Add(1) > maxVerified {
			a.verified.Clear()
			a.nVerify.Store(1)
		}
		a.verified.Store(key, now.Add(verifiedTTL))
	}
	return ok
}

func (a *Authenticator) askAuthorizer(ctx context.Context, h *authorizer, req *authreq.Request) (string, error) {
	if req.Verify != nil {
		// Digest: there is no password to pass on.
		return reasonBadCredentials, fmt.Errorf("%w: the external authorizer needs the password (use Basic)", authreq.ErrBadCredentials)
	}
	ip := ""
	if req.IP != nil {
		ip = req.IP.String()
	}
	status, err := h.ask(ctx, authorizerBody{
		User: req.User, Pass: req.Pass, IP: ip, Action: string(req.Action),
		Path: req.Path, Protocol: req.Protocol, Query: req.Query,
	})
	switch {
	case err != nil && h.fallback:
		return "", nil
	case err != nil:
		return reasonAuthorizerDown, fmt.Errorf("%w: %v (auth.http_fallback is deny)", authreq.ErrForbidden, err)
	case status >= 200 && status < 300:
		return "", nil
	case !req.HasCredentials():
		return reasonNoCredentials, authreq.ErrNoCredentials
	case status == http.StatusUnauthorized:
		return reasonBadCredentials, authreq.ErrBadCredentials
	default:
		return reasonForbidden, fmt.Errorf("%w: the external authorizer answered %d", authreq.ErrForbidden, status)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
