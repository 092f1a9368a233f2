package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

var testUsers = Users{Edge: "edge-pw-1", Origin: "origin-pw-2", Cache: "cache-pw-3", Run: "run-pw-4", Admin: "admin-pw-5"}

func (u Users) password(user string) string {
	return map[string]string{UserEdge: u.Edge, UserOrigin: u.Origin, UserCache: u.Cache, UserRun: u.Run, UserAdmin: u.Admin}[user]
}

// roleConn is one role's connection, with the asynchronous errors the
// server sent it (permission violations arrive that way).
type roleConn struct {
	nc   *nats.Conn
	reg  *Registry
	mu   sync.Mutex
	errs []string
}

func (c *roleConn) denied(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errs {
		if strings.Contains(e, "Permissions Violation") && strings.Contains(e, subject) {
			return true
		}
	}
	return false
}

func connectRole(t *testing.T, url, user, pass string, replicas int) *roleConn {
	t.Helper()
	c := &roleConn{}
	nc, err := nats.Connect(url, nats.UserInfo(user, pass), nats.CustomInboxPrefix(InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err.Error())
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c.nc = nc
	c.reg = &Registry{JS: js, Replicas: replicas, LeaseTTL: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.reg.Start(ctx); err != nil {
		t.Fatalf("%s: registry: %v", user, err)
	}
	return c
}

func startAuthBus(t *testing.T) *Server {
	t.Helper()
	s := &Server{Host: "127.0.0.1", Port: -1, Users: testUsers, Log: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// shortCtx bounds an operation the server will refuse: a refused publish
// gets no reply, so the caller sees its deadline.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUnauthenticatedRefused(t *testing.T) {
	s := startAuthBus(t)
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"wrong password", []nats.Option{nats.UserInfo(UserEdge, "nope")}},
		{"unknown user", []nats.Option{nats.UserInfo("mallory", "x")}},
		{"route user as client", []nats.Option{nats.UserInfo(UserRoute, "")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(s.ClientURL(), tc.opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("want an authorization error, got %v", err)
			}
		})
	}
	// bus.Connect gives up at once on a refusal, however long it may retry.
	_, err := Connect(ConnOptions{URLs: []string{s.ClientURL()}, User: UserEdge, Password: "nope",
		ConnectTimeout: time.Hour, Log: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("Connect with a wrong password: %v", err)
	}
}

// TestRolePermissions runs each role's real operations under its user, and
// the ones it must not do.
func TestRolePermissions(t *testing.T) {
	testkit.Slow(t)
	s := startAuthBus(t)
	url := s.ClientURL()
	edge := connectRole(t, url, UserEdge, testUsers.Edge, 1)
	origin := connectRole(t, url, UserOrigin, testUsers.Origin, 1)
	cache := connectRole(t, url, UserCache, testUsers.Cache, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The watches below switch to the republished records: a role allowed
	// to watch may subscribe to them.
	switched := make(chan string, 8)
	republishTests.switched = func(b string) { switched <- b }
	t.Cleanup(func() { republishTests.switched = nil })

	// What each role does.
	streams, err := origin.reg.WatchStreams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owners, err := cache.reg.WatchOwners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := &StreamInfo{Path: "live/cam1", Generation: 1, Edge: "e1"}
	rev, err := edge.reg.ClaimStream(ctx, info, nil)
	if err != nil {
		t.Fatalf("edge claims a stream: %v", err)
	}
	if _, err := edge.reg.UpdateStream(ctx, info, rev); err != nil {
		t.Fatalf("edge renews a stream: %v", err)
	}
	if ev := <-streams; ev.Info == nil || ev.Path != "live/cam1" {
		t.Fatalf("origin watching streams: %+v", ev)
	}
	if _, err := edge.reg.AcquireSource(ctx, "cams/a", Owner{Node: "e1"}); err != nil {
		t.Fatalf("edge leases a camera: %v", err)
	}
	lease, err := origin.reg.AcquireOwner(ctx, "live/cam1", Owner{Node: "o1", HTTP: "127.0.0.1:1"})
	if err != nil {
		t.Fatalf("origin takes a lease: %v", err)
	}
	if err := origin.reg.PutState(ctx, "live/cam1", PlaylistState{NextMSN: 7, Epoch: lease.Owner.Epoch, Node: "o1"}); err != nil {
		t.Fatalf("origin writes playlist state: %v", err)
	}
	if ev := <-owners; ev.Owner == nil || ev.Owner.Node != "o1" {
		t.Fatalf("cache watching owners: %+v", ev)
	}
	for want := map[string]bool{BucketStreams: true, BucketOwners: true}; len(want) > 0; {
		select {
		case b := <-switched:
			delete(want, b)
		case <-time.After(10 * time.Second):
			t.Fatalf("watches not switched to the republished records under role users: %v left", want)
		}
	}
	if o, err := cache.reg.OwnerOf(ctx, "live/cam1"); err != nil || o.Node != "o1" {
		t.Fatalf("cache reads an owner: %+v %v", o, err)
	}
	if _, err := cache.reg.Stream(ctx, "live/cam1"); err != nil {
		t.Fatalf("cache reads a stream record: %v", err)
	}

	// Node liveness: an origin's heartbeats come back to it (its echo
	// confirms them), so the role may publish and read sg.alive.
	live := &Liveness{NC: origin.nc, Node: "o1", TTL: time.Second}
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if !live.Alive() {
		t.Fatal("origin's heartbeat not confirmed under its role user")
	}

	// Media from the edge to the origin, and the GOP the origin asks the edge for.
	got := make(chan *media.Packet, 4)
	sub, err := SubscribeMedia(origin.nc, "live/cam1", func(p *media.Packet) { got <- p })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := origin.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := NewPublisher(edge.nc, "live/cam1").Publish(&media.Packet{Codec: media.CodecH264, Seq: 1, Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if p := <-got; p.Seq != 1 {
		t.Fatalf("media: %+v", p)
	}
	gop := []*media.Packet{{Codec: media.CodecH264, Flags: media.FlagKeyframe, Seq: 5, Payload: bytes.Repeat([]byte{9}, 3000)}, {Codec: media.CodecH264, Seq: 6, Payload: []byte{2}}}
	gs, err := ServeGOP(edge.nc, "live/cam1", func() []*media.Packet { return gop })
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Unsubscribe()
	if err := edge.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if pk, err := FetchGOP(ctx, origin.nc, "live/cam1"); err != nil || len(pk) != 2 || pk[0].Seq != 5 {
		t.Fatalf("origin fetches the GOP from the edge: %d packets, %v", len(pk), err)
	}

	// Any node's API may ask for a GOP (the console's snapshots).
	if pk, err := FetchGOP(ctx, cache.nc, "live/cam1"); err != nil || len(pk) != 2 {
		t.Fatalf("a cache fetches the GOP for a snapshot: %d packets, %v", len(pk), err)
	}
	// A cache signals demand for an on-demand camera; the edge listing it answers.
	demanded := make(chan struct{}, 1)
	ds, err := ServeDemand(edge.nc, "cams/od", func() { demanded <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Unsubscribe()
	if err := edge.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if ok, err := (Demander{NC: cache.nc}).Demand(ctx, "cams/od"); !ok || err != nil {
		t.Fatalf("a cache's demand: %v %v", ok, err)
	}
	<-demanded
	// Any node's API asks every other node for its statistics.
	ss, err := edge.nc.Subscribe(StatsSubject, func(m *nats.Msg) { _ = m.Respond([]byte("edge-stats")) })
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Unsubscribe()
	if err := edge.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := cache.nc.Request(StatsSubject, nil, 5*time.Second); err != nil || string(m.Data) != "edge-stats" {
		t.Fatalf("a cache asking for statistics: %v", err)
	}

	// What each role must not do.
	if _, err := cache.reg.AcquireOwner(shortCtx(t), "live/other", Owner{Node: "evil"}); err == nil {
		t.Fatal("a cache took a lease")
	}
	if err := cache.reg.ReleaseOwner(shortCtx(t), lease); err == nil {
		t.Fatal("a cache released an origin's lease")
	}
	if err := edge.reg.PutState(shortCtx(t), "live/cam1", PlaylistState{NextMSN: 1, Epoch: lease.Owner.Epoch + 100, Node: "evil"}); err == nil {
		t.Fatal("an edge wrote playlist state")
	}
	if _, err := edge.reg.AcquireOwner(shortCtx(t), "live/other", Owner{Node: "evil"}); err == nil {
		t.Fatal("an edge took a stream lease")
	}
	if _, err := origin.reg.ClaimStream(shortCtx(t), &StreamInfo{Path: "live/fake"}, nil); err == nil {
		t.Fatal("an origin claimed a stream record")
	}
	if _, err := cache.reg.ClaimStream(shortCtx(t), &StreamInfo{Path: "live/fake"}, nil); err == nil {
		t.Fatal("a cache claimed a stream record")
	}
	// None of it landed: the lease and the state are the origin's still.
	if o, err := origin.reg.OwnerOf(ctx, "live/cam1"); err != nil || o.Node != "o1" {
		t.Fatalf("owner after the refused writes: %+v %v", o, err)
	}
	if err := origin.reg.RenewOwner(ctx, lease); err != nil {
		t.Fatalf("the origin's lease was touched: %v", err)
	}
	if st, _, err := origin.reg.State(ctx, "live/cam1"); err != nil || st.Node != "o1" || st.NextMSN != 7 {
		t.Fatalf("state after the refused writes: %+v %v", st, err)
	}
	for _, p := range []string{"live/other", "live/fake"} {
		if _, err := origin.reg.OwnerOf(ctx, p); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s has an owner: %v", p, err)
		}
		if _, err := origin.reg.Stream(ctx, p); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s has a record: %v", p, err)
		}
	}

	// Subject-level refusals come back as asynchronous permission errors.
	for _, tc := range []struct {
		who     string
		c       *roleConn
		subject string
		sub     bool
	}{
		{"cache publishes media", cache, MediaSubject("live/cam1"), false},
		{"origin publishes media", origin, MediaSubject("live/cam1"), false},
		{"cache subscribes to media", cache, MediaSubject("live/cam1"), true},
		{"edge subscribes to media", edge, MediaSubject("live/cam1"), true},
		{"cache listens for demand", cache, DemandSubject("cams/od"), true},
		{"edge reads the origin's inbox", edge, InboxPrefix(UserOrigin) + ".>", true},
		{"cache deletes a bucket", cache, "$JS.API.STREAM.DELETE.KV_" + BucketOwners, false},
		{"edge updates a bucket", edge, "$JS.API.STREAM.UPDATE.KV_" + BucketOwners, false},
		{"origin purges a bucket", origin, "$JS.API.STREAM.PURGE.KV_" + BucketStreams, false},
	} {
		t.Run(tc.who, func(t *testing.T) {
			if tc.sub {
				s, err := tc.c.nc.SubscribeSync(tc.subject)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Unsubscribe()
			} else if err := tc.c.nc.Publish(tc.subject, []byte("x")); err != nil {
				t.Fatal(err)
			}
			// The server answers a violation before the flush's PONG.
			if err := tc.c.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !tc.c.denied(tc.subject) {
				if time.Now().After(deadline) {
					t.Fatalf("not refused; errors: %v", tc.c.errs)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	select {
	case p := <-got:
		t.Fatalf("the origin received an injected packet: %+v", p)
	default:
	}
	if sub.Invalid.Load() != 0 {
		t.Fatal("the origin received an injected message")
	}
}

// TestRunUserJoinsAsEveryRole: the all-in-one on a separate bus does the
// edge's, the origin's and the cache's work under one user.
func TestRunUserJoinsAsEveryRole(t *testing.T) {
	s := startAuthBus(t)
	run := connectRole(t, s.ClientURL(), UserRun, testUsers.Run, 1)
	ctx := shortCtx(t)
	if _, err := run.reg.ClaimStream(ctx, &StreamInfo{Path: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	l, err := run.reg.AcquireOwner(ctx, "a", Owner{Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := run.reg.PutState(ctx, "a", PlaylistState{Epoch: l.Owner.Epoch}); err != nil {
		t.Fatal(err)
	}
	if _, err := run.reg.WatchOwners(ctx); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestClusterWithAuth: three bus nodes whose routes authenticate with the
// route password, given plain route URLs; role users work across nodes,
// replicated buckets form, a node with a wrong route password is kept out,
// and no password reaches the logs.
func TestClusterWithAuth(t *testing.T) {
	testkit.Slow(t)
	const routePW = "route-secret-xyz"
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(p))
	}
	logs := &testkit.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var servers []*Server
	for i, p := range ports {
		s := &Server{Name: fmt.Sprintf("bus%d", i+1), Host: "127.0.0.1", Port: -1, ClusterHost: "127.0.0.1", ClusterPort: p,
			Routes: routes, Users: testUsers, RoutePassword: routePW, Log: log}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		servers = append(servers, s)
	}
	waitRoutes := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok := true
			for _, s := range servers {
				if s.NATS().NumRoutes() < want {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("routes did not form; log:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitRoutes(2)

	edge := connectRole(t, servers[0].ClientURL(), UserEdge, testUsers.Edge, 3)
	origin := connectRole(t, servers[2].ClientURL(), UserOrigin, testUsers.Origin, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := edge.reg.ClaimStream(ctx, &StreamInfo{Path: "live/x", Edge: "e"}, nil); err != nil {
		t.Fatal(err)
	}
	if info, err := origin.reg.Stream(ctx, "live/x"); err != nil || info.Edge != "e" {
		t.Fatalf("record across nodes: %+v %v", info, err)
	}
	mediaAcross(t, edge.nc, origin.nc, "live/x", func() string { return "" })

	// A fourth node with a wrong route password does not join.
	intruderLogs := &testkit.Buffer{}
	bad := &Server{Name: "intruder", Host: "127.0.0.1", Port: -1, ClusterHost: "127.0.0.1", ClusterPort: -1,
		Routes: routes[:1], Users: testUsers, RoutePassword: "wrong", Log: slog.New(slog.NewTextHandler(intruderLogs, nil))}
	intruderRefused(t, servers, bad, logs, "authentication error - User")
	all := logs.String() + intruderLogs.String()
	for _, secret := range []string{routePW, testUsers.Edge, testUsers.Origin} {
		if strings.Contains(all, secret) {
			t.Fatalf("a password reached the log:\n%s", all)
		}
	}
}

// intruderRefused starts bad, a node that tries to route to the cluster, and
// waits until the cluster's log says refusal and bad's refused route has
// closed; then every one of servers must have as many routes as before.
func intruderRefused(t *testing.T, servers []*Server, bad *Server, logs *testkit.Buffer, refusal string) {
	t.Helper()
	before := make([]int, len(servers))
	for i, s := range servers {
		before[i] = s.NATS().NumRoutes() // pooled: several connections per peer
	}
	if err := bad.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bad.Close)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), refusal) {
		if time.Now().After(deadline) {
			t.Fatalf("the intruder's route was not refused (no %q); log:\n%s", refusal, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its refused route connection may linger a moment after the refusal is
	// logged (seen once under -race): wait for it to go.
	testkit.WaitFor(t, 5*time.Second, "the intruder's refused route to close", func() bool { return bad.NATS().NumRoutes() == 0 })
	for i, s := range servers {
		if n := s.NATS().NumRoutes(); n != before[i] {
			t.Fatalf("%s has %d routes, %d before the intruder", s.Name, n, before[i])
		}
	}
}

func TestServerAuthOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Server
		want string
	}{
		{"token and users", Server{Token: "t", Users: Users{Edge: "x"}}, "token and users"},
		{"token and user", Server{Token: "t", User: "u", Password: "p"}, "token and users"},
		{"user and users", Server{User: "u", Password: "p", Users: Users{Edge: "x"}}, "cannot be combined"},
		{"cluster without route password", Server{Users: Users{Edge: "x"}, ClusterPort: -1, Routes: []string{"nats://127.0.0.1:1"}}, "route password"},
		{"cluster with token, no route password", Server{Token: "t", ClusterPort: -1, Routes: []string{"nats://127.0.0.1:1"}}, "route password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.Host, s.Port, s.Log = "127.0.0.1", -1, slog.New(slog.DiscardHandler)
			err := testkit.StartRefused(t, s.Start, s.Close)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestServerToken(t *testing.T) {
	s := &Server{Host: "127.0.0.1", Port: -1, Token: "tok-123", Log: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected without the token")
	}
	nc, err := Connect(ConnOptions{URLs: []string{s.ClientURL()}, Token: "tok-123", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

// TestConnectRetries: a role started before its bus keeps trying.
func TestConnectRetries(t *testing.T) {
	port := freePort(t)
	url := "nats://edge:" + testUsers.Edge + "@127.0.0.1:" + strconv.Itoa(port)
	logs := &testkit.Buffer{}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := Connect(ConnOptions{URLs: []string{url}, ConnectTimeout: time.Minute, Log: slog.New(slog.NewTextHandler(logs, nil))})
		done <- result{nc, err}
	}()
	// Start the bus once the client has failed at least once.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "retrying") {
		if time.Now().After(deadline) {
			t.Fatal("no retry logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := &Server{Host: "127.0.0.1", Port: port, Users: testUsers, Log: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.nc.Close()
	if strings.Contains(logs.String(), testUsers.Edge) {
		t.Fatalf("the password reached the log:\n%s", logs.String())
	}
}

func TestConnectErrorRedacted(t *testing.T) {
	url := "nats://edge:s3cr%40t@127.0.0.1:" + strconv.Itoa(freePort(t))
	_, err := Connect(ConnOptions{URLs: []string{url}, Log: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if strings.Contains(err.Error(), "s3cr") || strings.Contains(err.Error(), "edge:") {
		t.Fatalf("credentials in %q", err)
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"nats://bus1:4222", "nats://bus1:4222"},
		{"nats://edge:pw@bus1:4222", "nats://***@bus1:4222"},
		{"nats://token@bus1:4222", "nats://***@bus1:4222"},
		{"nats://a:p%40ss@b:1,nats://c:d@e:2", "nats://***@b:1,nats://***@e:2"},
		{"route nats://route:x@10.0.0.1:6222 failed: nats://q@r", "route nats://***@10.0.0.1:6222 failed: nats://***@r"},
		{"mail me at a@b.c", "mail me at a@b.c"},
		{"tls://u:p@h:1/x@y", "tls://***@h:1/x@y"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
