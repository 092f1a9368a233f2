package node

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/streamgrid/streamgrid/internal/auth/authreq"
)

// maxProfileSeconds caps /debug/pprof/profile and /debug/pprof/trace: a
// request must not hold a profiler (and a connection) for hours.
const maxProfileSeconds = 60

// apiAuthRealm is the realm of the API's Basic challenge.
const apiAuthRealm = `Basic realm="streamgrid", charset="UTF-8"`

// apiAction is the permission a request to the API server needs; "" for
// the open /healthz (load balancers and orchestrators probe it).
func apiAction(p string) authreq.Action {
	switch {
	case p == "/healthz":
		return ""
	case p == "/metrics":
		return authreq.ActionMetrics
	case p == "/debug/pprof" || strings.HasPrefix(p, "/debug/pprof/"):
		return authreq.ActionPprof
	default: // the console at /, the REST API under /v1/, and anything else
		return authreq.ActionAPI
	}
}

// guard puts authentication in front of the API's routes: HTTP Basic with
// a user holding the route's permission (api, metrics or pprof); without an
// auth section, loopback clients only. 401 with a challenge when
// credentials are missing or wrong, 403 when they do not allow the route.
func (a *apiServer) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := apiAction(r.URL.Path)
		if action == "" {
			next.ServeHTTP(w, r)
			return
		}
		user, pass, _ := r.BasicAuth()
		req := authreq.Request{User: user, Pass: pass, IP: clientIP(r), Action: action, Protocol: "http", Query: r.URL.RawQuery}
		err := a.node.auth.Authenticate(r.Context(), req)
		switch {
		case err == nil:
		case errors.Is(err, authreq.ErrUnauthorized):
			if !errors.Is(err, authreq.ErrNoCredentials) {
				a.node.Log.Warn("api request refused: wrong credentials", "remote", r.RemoteAddr, "user", user, "path", r.URL.Path)
			}
			w.Header().Set("WWW-Authenticate", apiAuthRealm)
			http.Error(w, "401 unauthorized: credentials missing or wrong", http.StatusUnauthorized)
			return
		default:
			a.node.Log.Warn("api request refused", "remote", r.RemoteAddr, "user", user, "path", r.URL.Path, "err", err)
			http.Error(w, "403 forbidden: "+forbiddenHint(a.node.auth.Enabled(), action), http.StatusForbidden)
			return
		}
		if action == authreq.ActionPprof {
			capProfileSeconds(r)
		}
		next.ServeHTTP(w, r)
	})
}

func forbiddenHint(enabled bool, action authreq.Action) string {
	if !enabled {
		return string(action) + " is served to loopback clients only until an auth section grants it (docs/security.md)"
	}
	return "this user lacks the " + string(action) + " permission"
}

// capProfileSeconds bounds the seconds parameter of profile and trace.
func capProfileSeconds(r *http.Request) {
	q := r.URL.Query()
	s := q.Get("seconds")
	if s == "" {
		return
	}
	n, err := strconv.ParseFloat(s, 64)
	if err == nil && n <= maxProfileSeconds {
		return
	}
	q.Set("seconds", strconv.Itoa(maxProfileSeconds))
	r.URL.RawQuery = q.Encode()
}

// clientIP is the address of the peer (proxies' headers are not trusted).
func clientIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}
