package auth

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"

	"github.com/streamgrid/streamgrid/internal/auth/authconf"
	"github.com/streamgrid/streamgrid/internal/auth/authreq"
)

// rules is the compiled auth section; it is replaced whole by Update.
type rules struct {
	enabled bool
	// readOpen: every read is allowed, whoever asks from wherever (no auth
	// section, or a user "any" from anywhere may read every path).
	readOpen bool
	users    []user
	http     *authorizer // nil without auth.http_address
}

type user struct {
	name  string
	any   bool // "any": no credentials needed
	pass  password
	nets  []netip.Prefix // empty: anywhere
	perms []authconf.AuthPermission
}

// compile checks and compiles an auth section; errors name the key.
func compile(c authconf.Auth) (*rules, error) {
	r := &rules{enabled: c.Enabled()}
	for i, cu := range c.Users {
		key := fmt.Sprintf("auth.users[%d]", i)
		u := user{name: cu.User, any: cu.User == "any", perms: cu.Permissions}
		if !u.any {
			p, err := parsePassword(cu.Pass)
			if err != nil {
				return nil, fmt.Errorf("%s.pass: %w", key, err)
			}
			u.pass = p
		}
		for j, s := range cu.IPs {
			pfx, err := parseNet(s)
			if err != nil {
				return nil, fmt.Errorf("%s.ips[%d]: %w", key, j, err)
			}
			u.nets = append(u.nets, pfx)
		}
		for j, p := range cu.Permissions {
			if !validAction(authreq.Action(p.Action)) {
				return nil, fmt.Errorf("%s.permissions[%d].action: %q is not one of publish, read, api, metrics, pprof", key, j, p.Action)
			}
			if _, err := path.Match(p.Path, "x"); err != nil {
				return nil, fmt.Errorf("%s.permissions[%d].path: %q: %w", key, j, p.Path, err)
			}
		}
		r.users = append(r.users, u)
	}
	r.readOpen = !r.enabled || slices.ContainsFunc(r.users, opensReads)
	return r, nil
}

// opensReads reports a user that allows every read: "any", from anywhere,
// with a read permission on every path. decide then allows every read once
// it reaches that user, and nothing before it refuses.
func opensReads(u user) bool {
	return u.any && len(u.nets) == 0 && slices.ContainsFunc(u.perms, func(p authconf.AuthPermission) bool {
		return authreq.Action(p.Action) == authreq.ActionRead && p.Path == ""
	})
}

// parseNet reads a CIDR network or a bare address (a /32 or /128).
func parseNet(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR network nor an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func validAction(a authreq.Action) bool {
	switch a {
	case authreq.ActionPublish, authreq.ActionRead, authreq.ActionAPI, authreq.ActionMetrics, authreq.ActionPprof:
		return true
	}
	return false
}

// ipAllowed reports whether ip is in one of the user's networks.
func (u *user) ipAllowed(ip netip.Addr) bool {
	if len(u.nets) == 0 {
		return true
	}
	for _, n := range u.nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// permits reports whether the user may do action on p. The path of a
// permission matters for publish and read only; api, metrics and pprof
// are not about a stream.
func (u *user) permits(action authreq.Action, p string) bool {
	for _, perm := range u.perms {
		if authreq.Action(perm.Action) != action {
			continue
		}
		if perm.Path == "" || (action != authreq.ActionPublish && action != authreq.ActionRead) {
			return true
		}
		if ok, _ := path.Match(perm.Path, p); ok {
			return true
		}
	}
	return false
}

// nameMatches compares user names in constant time.
func nameMatches(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// addrOf converts a net.IP (nil allowed) to a netip.Addr.
func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
