// Package authconf is the auth section of streamgrid.yml: users, their
// passwords, client networks and permissions, the external authorizer and
// the keys. It imports nothing of streamgrid's, so that internal/auth can
// read its rules without depending on internal/config (which calls the
// roles' own checks, and the roles' tests use internal/auth).
// internal/config re-exports every name here.
package authconf

import "time"

// Auth is who may do what (publish, read, api, metrics, pprof), on every
// protocol, plus the keys for signed playback URLs and for origin requests.
// Without users and without http_address, publishing and reading are open
// and api/metrics/pprof are served to loopback clients only.
type Auth struct {
	// Users and their permissions; "any" as user means no credentials needed.
	Users []AuthUser `yaml:"users"`
	// HTTPAddress is an optional external authorizer (http://host/path): it
	// receives POST JSON {user, pass, ip, action, path, protocol, query}; a 2xx
	// answer allows.
	HTTPAddress string `yaml:"http_address"`
	// HTTPTimeout bounds one call to the external authorizer.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// HTTPCacheTTL is how long an authorizer decision (allow or deny) is reused.
	HTTPCacheTTL time.Duration `yaml:"http_cache_ttl"`
	// HTTPFallback is deny or allow: what applies when the authorizer is down.
	HTTPFallback string `yaml:"http_fallback"`
	// SigningKey is base64 of an HMAC key (at least 16 bytes); when set,
	// viewers need signed URLs (/s/<token>/<path>/...) at the caches.
	SigningKey string `yaml:"signing_key"`
	// OriginSecret is a secret shared by caches and origins: caches send it
	// with every upstream request and origins refuse requests without it.
	// Empty: origins serve anyone who reaches their HLS port.
	OriginSecret string `yaml:"origin_secret"`
}

// AuthUser is one user and what it may do.
type AuthUser struct {
	// User is the name clients give; "any" matches clients without one.
	User string `yaml:"user"`
	// Pass is plain, "sha256:<base64 of the digest>" or "argon2:<PHC string>".
	Pass string `yaml:"pass"`
	// IPs are the client networks (CIDR, or a bare address) this user may
	// come from; empty means anywhere.
	IPs         []string         `yaml:"ips"`
	Permissions []AuthPermission `yaml:"permissions"`
}

// AuthPermission grants an action on the stream paths Path matches
// (path.Match; empty = every path).
type AuthPermission struct {
	Action string `yaml:"action"` // publish, read, api, metrics or pprof
	Path   string `yaml:"path"`
}

// Enabled reports whether an auth section says anything about users: without
// it the node keeps the open defaults (publish and read for anyone; api,
// metrics and pprof for loopback clients only).
func (a Auth) Enabled() bool { return len(a.Users) > 0 || a.HTTPAddress != "" }
