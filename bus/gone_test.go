package bus

import (
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/crashdial"
	"github.com/streamgrid/streamgrid/internal/testcert"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// goneCluster is a bus for TestGoneNotice: its servers, and how a role
// connects to one of them.
type goneCluster struct {
	servers []*Server
	opts    func(user string) ConnOptions
}

func clusterOf(t *testing.T, n int, setup func(s *Server)) []*Server {
	t.Helper()
	var routes []string
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	var out []*Server
	for i, p := range ports {
		s := &Server{Name: "g" + strconv.Itoa(i), Host: "127.0.0.1", Port: -1, Log: slog.New(slog.DiscardHandler)}
		if n > 1 {
			s.ClusterHost, s.ClusterPort, s.Routes = "127.0.0.1", p, routes
		}
		setup(s)
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

// TestGoneNotice: a node whose bus connection is cut without a NATS close
// (a killed process) is dead for another node at once, through the bus
// server's notice, long before its heartbeats' TTL (30 s here) could say
// so; the notice is published once, by the server that had the connection.
// The cut node reconnects and keeps its instance: its heartbeats on the new
// connection make it alive again for the other node, and a second cut of
// that new connection is noticed as the first was. Open, secured (role users, route
// password, TLS on clients and routes) and token buses.
func TestGoneNotice(t *testing.T) {
	testkit.Slow(t)
	caFile, certFile, keyFile := testcert.WritePKI(t, t.TempDir())
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) goneCluster
	}{
		{"open", func(t *testing.T) goneCluster {
			ss := clusterOf(t, 2, func(*Server) {})
			return goneCluster{ss, func(string) ConnOptions { return ConnOptions{} }}
		}},
		{"secured", func(t *testing.T) goneCluster {
			ss := clusterOf(t, 2, func(s *Server) {
				var err error
				if s.TLS, err = ServerTLS(certFile, keyFile); err != nil {
					t.Fatal(err)
				}
				if s.RouteTLS, err = RouteTLS(certFile, keyFile, caFile); err != nil {
					t.Fatal(err)
				}
				s.Users, s.RoutePassword = testUsers, "rpw"
			})
			return goneCluster{ss, func(user string) ConnOptions {
				return ConnOptions{User: user, Password: testUsers.password(user), TLSCA: caFile, InboxPrefix: InboxPrefix(user)}
			}}
		}},
		{"token", func(t *testing.T) goneCluster {
			ss := clusterOf(t, 1, func(s *Server) { s.Token = "tok-1" })
			return goneCluster{ss, func(string) ConnOptions { return ConnOptions{Token: "tok-1"} }}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.setup(t)
			first, last := c.servers[0], c.servers[len(c.servers)-1]
			connect := func(s *Server, user, name string, d nats.CustomDialer) *nats.Conn {
				o := c.opts(user)
				o.URLs, o.Name, o.Dialer, o.Log = []string{s.ClientURL()}, name, d, slog.New(slog.DiscardHandler)
				nc, err := Connect(o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				return nc
			}
			const ttl = 30 * time.Second
			dialer := &crashdial.Dialer{}
			victimNC := connect(first, UserOrigin, "victim", dialer)
			victim := &Liveness{NC: victimNC, Node: "victim", TTL: ttl}
			observer := &Liveness{NC: connect(last, UserOrigin, "observer", nil), Node: "observer", TTL: ttl}
			for _, l := range []*Liveness{observer, victim} {
				if err := l.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l.Close)
			}
			var notices atomic.Int32
			watcher := connect(last, UserCache, "watcher", nil) // any role may read the notices
			if _, err := watcher.Subscribe(GoneSubject, func(m *nats.Msg) {
				if g, ok := parseGoneNotice(m.Data); ok && g.Name == "victim" {
					notices.Add(1)
				}
			}); err != nil {
				t.Fatal(err)
			}
			if err := watcher.Flush(); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 30*time.Second, "the observer hears the victim (routes up)", func() bool { return slices.Contains(observer.Nodes(), "victim") })
			testkit.WaitFor(t, 30*time.Second, "interest in the notices reaches the victim's server", func() bool { return first.Interest(GoneSubject) >= 2 })
			rec := Owner{Node: "victim", Instance: victim.Instance()}
			if !victim.Alive() || !observer.Holds(rec) {
				t.Fatal("the victim is not alive before the cut")
			}
			// Its heartbeats' TTL is 30 s: only the death notice is this fast.
			seesDeath(t, observer, rec, dialer.Cut, 15*time.Second)
			time.Sleep(300 * time.Millisecond) // time for a second notice, if one were sent
			if n := notices.Load(); n != 1 {
				t.Fatalf("%d notices for the victim's connection, want 1", n)
			}

			// The process lived on: it reconnects and keeps its instance,
			// which the observer holds again once the victim's heartbeats
			// come on the new connection.
			// A heartbeat falls due while the victim is cut off (they go
			// every TTL/4): it must not go out, untagged, on the new
			// connection and hide that connection's notice below.
			time.Sleep(ttl/4 + 200*time.Millisecond)
			dialer.Revive()
			testkit.WaitFor(t, time.Minute, "the observer holds the reconnected victim again", func() bool { return observer.Holds(rec) })
			if victim.Instance() != rec.Instance {
				t.Fatal("the victim drew a new instance for a dropped connection")
			}

			// The new connection is followed too: cut it, and the notice
			// names it.
			for len(observer.Changed()) > 0 {
				<-observer.Changed()
			}
			dialer.Cut()
			testkit.WaitFor(t, 15*time.Second, "the victim's second cut noticed (its heartbeats' TTL is 30 s)", func() bool {
				return !observer.Holds(rec)
			})
			// The watcher is on another server than the observer: its copy
			// of the notice may come a moment later.
			testkit.WaitFor(t, 5*time.Second, "the second notice at the watcher", func() bool { return notices.Load() >= 2 })
			time.Sleep(300 * time.Millisecond) // time for a third notice, if one were sent
			if n := notices.Load(); n != 2 {
				t.Fatalf("%d notices for the victim's two connections, want 2", n)
			}
		})
	}
}

// TestGonePermissions: every role may read the death notices; none may
// publish them (only the bus nodes do).
func TestGonePermissions(t *testing.T) {
	testkit.Slow(t)
	s := startAuthBus(t)
	url := s.ClientURL()
	for _, user := range []string{UserEdge, UserOrigin, UserCache, UserRun} {
		c := connectRole(t, url, user, testUsers.password(user), 1)
		if _, err := c.nc.Subscribe(GoneSubject, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		if err := c.nc.Publish(GoneSubject, goneNotice{Conn: "0123456789abcdef", Name: "o1"}.marshal()); err != nil {
			t.Fatal(err)
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 5*time.Second, user+" refused publishing a notice", func() bool { return c.denied(GoneSubject) })
		if c.denied("Subscription") {
			t.Fatalf("%s may not read the notices", user)
		}
	}
	// The notifier's own user is for in-process connections only.
	nc, err := nats.Connect(url, nats.UserInfo(goneUser, s.notifierPass))
	if err == nil {
		nc.Close()
		t.Fatal("the notifier's user connected over TCP")
	}
}

func TestParseGoneNotice(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"0123456789abcdef origin 1", true},
		{"0123456789abcdef", false},
		{" origin", false},
		{"a.b origin", false},
	} {
		g, ok := parseGoneNotice([]byte(tc.in))
		if ok != tc.ok {
			t.Fatalf("%q: ok %v", tc.in, ok)
		}
		if ok && string(g.marshal()) != tc.in {
			t.Fatalf("%q: round trip %q", tc.in, g.marshal())
		}
	}
}

func FuzzParseGoneNotice(f *testing.F) {
	fuzzRoundTrip(f, parseGoneNotice, goneNotice.marshal,
		"0123456789abcdef origin 1", "0123456789abcdef", "a.b origin", "")
}

// TestGoneRevival: after a death notice for the connection of a node's last
// heartbeat, only a heartbeat on another tagged connection makes it alive
// again: neither a late one from the closed connection nor an untagged one
// (sent while its client was reconnecting) may, or the notice for the
// connection it reconnected on would find another tag and be missed.
func TestGoneRevival(t *testing.T) {
	l := &Liveness{Node: "observer", TTL: 30 * time.Second, Log: slog.New(slog.DiscardHandler)}
	l.nodes, l.changed, l.started = map[string]peer{}, make(chan struct{}, 1), time.Now()
	hb := func(conn string) {
		l.receive(&nats.Msg{Data: heartbeat{Node: "victim", Instance: "i1", TTLms: 30000, Sent: 1, Roles: RoleOrigin, Conn: conn}.marshal()})
	}
	gone := func(conn string) {
		l.receiveGone(&nats.Msg{Data: goneNotice{Conn: conn, Name: "victim"}.marshal()})
	}
	for i, step := range []struct {
		notice bool // a death notice, else a heartbeat
		conn   string
		held   bool
	}{
		{false, "c1", true},  // its first heartbeat
		{true, "c0", true},   // a notice for another connection
		{true, "c1", false},  // the notice for its connection
		{false, "c1", false}, // a late heartbeat from the closed connection
		{false, "", false},   // an untagged one (sent while reconnecting)
		{false, "c2", true},  // a heartbeat on a new connection
		{true, "c2", false},  // the notice for the new connection
	} {
		if step.notice {
			gone(step.conn)
		} else {
			hb(step.conn)
		}
		if got := l.Live("victim", "i1"); got != step.held {
			t.Fatalf("step %d (notice %v, connection %q): held %v, want %v", i, step.notice, step.conn, got, step.held)
		}
	}
}

// TestBeatOnReconnect: a node sends a heartbeat as soon as its connection
// is back, not at its next multiple of TTL/4 (an hour here, a quarter of
// that between beats): its peers count it alive again at once after a
// death notice, and its own liveness does not wait out a beat it skipped
// while cut off.
func TestBeatOnReconnect(t *testing.T) {
	testkit.Slow(t)
	s := clusterOf(t, 1, func(*Server) {})[0]
	connect := func(name string, d nats.CustomDialer) *nats.Conn {
		nc, err := Connect(ConnOptions{URLs: []string{s.ClientURL()}, Name: name, Dialer: d, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	const ttl = time.Hour
	dialer := &crashdial.Dialer{}
	victim := &Liveness{NC: connect("victim", dialer), Node: "victim", TTL: ttl}
	observer := &Liveness{NC: connect("observer", nil), Node: "observer", TTL: ttl}
	for _, l := range []*Liveness{observer, victim} {
		if err := l.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
	}
	rec := Owner{Node: "victim", Instance: victim.Instance()}
	testkit.WaitFor(t, 10*time.Second, "the observer hears the victim", func() bool { return observer.Holds(rec) })
	testkit.WaitFor(t, 10*time.Second, "interest in the notices", func() bool { return s.Interest(GoneSubject) >= 2 })
	dialer.Cut()
	testkit.WaitFor(t, 10*time.Second, "the victim's cut noticed", func() bool { return !observer.Holds(rec) })
	dialer.Revive()
	testkit.WaitFor(t, 20*time.Second, "a heartbeat on the new connection (the next on the clock is 15 minutes away)", func() bool {
		return observer.Holds(rec)
	})
}
