package bus

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/testcert"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestTLS: clients must speak TLS and verify the bus's certificate; routes
// are mutual TLS, and a node whose certificate another CA signed stays out.
func TestTLS(t *testing.T) {
	caFile, certFile, keyFile := testcert.WritePKI(t, t.TempDir())
	_, otherCert, otherKey := testcert.WritePKI(t, t.TempDir())
	ports := []int{freePort(t), freePort(t)}
	routes := []string{"nats://127.0.0.1:" + strconv.Itoa(ports[0]), "nats://127.0.0.1:" + strconv.Itoa(ports[1])}
	logs := &testkit.Buffer{}
	var servers []*Server
	for i, p := range ports {
		st, err := ServerTLS(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := RouteTLS(certFile, keyFile, caFile)
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{Name: "tls" + strconv.Itoa(i), Host: "127.0.0.1", Port: -1, ClusterHost: "127.0.0.1", ClusterPort: p,
			Routes: routes, Users: testUsers, RoutePassword: "rpw", TLS: st, RouteTLS: rt,
			Log: slog.New(slog.NewTextHandler(logs, nil))}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		servers = append(servers, s)
	}

	// Without the CA the client cannot verify the server.
	if _, err := Connect(ConnOptions{URLs: []string{servers[0].ClientURL()}, User: UserEdge, Password: testUsers.Edge,
		Log: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("connected without the CA: %v", err)
	}
	conn := func(s *Server, user, pass string) *nats.Conn {
		nc, err := Connect(ConnOptions{URLs: []string{s.ClientURL()}, User: user, Password: pass, TLSCA: caFile,
			InboxPrefix: InboxPrefix(user), Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if !nc.TLSRequired() {
			t.Fatal("the connection does not use TLS")
		}
		return nc
	}
	edge := conn(servers[0], UserEdge, testUsers.Edge)
	origin := conn(servers[1], UserOrigin, testUsers.Origin)
	mediaAcross(t, edge, origin, "live/tls", func() string { return "log:\n" + logs.String() })

	// A node whose certificate another CA signed: its routes fail the handshake.
	st, _ := ServerTLS(otherCert, otherKey)
	rt, _ := RouteTLS(otherCert, otherKey, caFile)
	bad := &Server{Name: "intruder", Host: "127.0.0.1", Port: -1, ClusterHost: "127.0.0.1", ClusterPort: -1,
		Routes: routes[:1], Users: testUsers, RoutePassword: "rpw", TLS: st, RouteTLS: rt, Log: slog.New(slog.DiscardHandler)}
	intruderRefused(t, servers[:1], bad, logs, "TLS route handshake error")
}
