package edge

import (
	"context"
	"errors"
	"net"
	"net/url"
	"regexp"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/auth"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/headers"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/streamgrid/streamgrid/internal/auth/authreq"
)

// Authenticator decides whether a client may publish (internal/auth's
// Authenticator is the implementation). An error wrapping
// authreq.ErrUnauthorized asks for credentials; any other error refuses.
type Authenticator interface {
	Authenticate(ctx context.Context, req authreq.Request) error
}

// RTSP authentication methods (Edge.RTSPAuthMethods).
const (
	RTSPAuthBasic  = "basic"
	RTSPAuthDigest = "digest"
)

// rtspAuthMethods maps the configured names; unknown names are refused by Start.
func rtspAuthMethods(names []string) ([]auth.VerifyMethod, error) {
	var out []auth.VerifyMethod
	for _, n := range names {
		switch n {
		case RTSPAuthBasic:
			out = append(out, auth.VerifyMethodBasic)
		case RTSPAuthDigest:
			out = append(out, auth.VerifyMethodDigestMD5)
		default:
			return nil, errors.New("unknown RTSP auth method " + n + " (basic or digest)")
		}
	}
	return out, nil
}

// Reasons of the rejected metric for authentication.
const (
	rejectUnauthorized = "unauthorized" // credentials missing or wrong
	rejectForbidden    = "forbidden"    // no publish permission on the path
)

// rtspAuthenticate checks an ANNOUNCE; it returns nil, nil when the client
// may publish. Without credentials the answer is a 401 with a challenge
// (gortsplib adds WWW-Authenticate when the error is ErrServerAuth and the
// request carried none); with wrong ones a 401 and the connection closes.
func (r *rtspServer) authenticate(ctx *gortsplib.ServerHandlerOnAnnounceCtx, path, remote string) (*base.Response, error) {
	e := r.e
	if e.Auth == nil {
		return nil, nil
	}
	req := authreq.Request{
		IP: remoteIP(ctx.Conn.NetConn().RemoteAddr()), Action: authreq.ActionPublish,
		Path: path, Protocol: ProtocolRTSP, Query: ctx.Query,
	}
	var h headers.Authorization
	if err := h.Unmarshal(ctx.Request.Header["Authorization"]); err == nil {
		switch {
		case h.Method == headers.AuthMethodBasic && r.allows(auth.VerifyMethodBasic):
			req.User, req.Pass = h.Username, h.BasicPass
		case h.Method == headers.AuthMethodDigest && r.allows(auth.VerifyMethodDigestMD5):
			req.User = h.Username
			conn, request := ctx.Conn, ctx.Request
			req.Verify = func(user, pass string) bool { return conn.VerifyCredentials(request, user, pass) }
		}
	}
	err := e.Auth.Authenticate(e.ctx, req)
	switch {
	case err == nil:
		return nil, nil
	case errors.Is(err, authreq.ErrUnauthorized):
		// The challenge's Digest nonce is made on the connection's first
		// VerifyCredentials call; without one it would be empty.
		ctx.Conn.VerifyCredentials(ctx.Request, "-", "")
		if errors.Is(err, authreq.ErrNoCredentials) {
			// The usual first ANNOUNCE before the client answers the
			// challenge: counted, not reported as a refused publisher.
			r.reject(rejectUnauthorized)
		} else {
			r.rejectPublisher(rejectUnauthorized, path, remote)
			e.log.Warn("rtsp publish refused: wrong credentials", "stream", path, "remote", remote, "user", req.User)
		}
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	default:
		r.rejectPublisher(rejectForbidden, path, remote)
		e.log.Warn("rtsp publish refused", "stream", path, "remote", remote, "user", req.User, "err", err)
		return refusal(base.StatusForbidden, "Forbidden (no publish permission on this path)")
	}
}

func (r *rtspServer) allows(m auth.VerifyMethod) bool {
	for _, x := range r.srv.AuthMethods {
		if x == m {
			return true
		}
	}
	return false
}

// rtmpCredentials reads user and pass from the stream name's query
// (rtmp://host/live/cam1?user=admin&pass=adminpw).
func rtmpCredentials(u *url.URL) (user, pass string) {
	if u == nil {
		return "", ""
	}
	q, _ := url.ParseQuery(u.RawQuery) // what parses is used; the rest is ignored
	return q.Get("user"), q.Get("pass")
}

// passParam finds a pass=... query parameter in text.
var passParam = regexp.MustCompile(`(?i)(pass(word)?=)[^&\s"']*`)

// redactQueryPass hides pass= values in an error's text: gortmplib's URL
// errors quote the tcUrl and stream name, query included.
func redactQueryPass(err error) error {
	if err == nil {
		return nil
	}
	msg := passParam.ReplaceAllString(err.Error(), "${1}xxxxx")
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

func remoteIP(a net.Addr) net.IP {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}
