// Package testbus starts an embedded bus (NATS with JetStream) for the tests
// of the packages that sit on it (edge, origin, hlscache, node): a server on a
// random loopback port, connections to it and a started registry, each undone
// at the test's cleanup.
//
// It is apart from testkit because it imports bus: bus's own tests cannot
// import it (that would be a cycle) and start their servers themselves.
package testbus

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/bus"
)

// StartServer starts a bus server on 127.0.0.1, port chosen by the system,
// logging nowhere; mod, when not nil, adjusts it before Start. The server is
// closed at cleanup.
func StartServer(t testing.TB, mod func(*bus.Server)) *bus.Server {
	t.Helper()
	s := &bus.Server{Host: "127.0.0.1", Port: -1, Log: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Connect opens a client connection to s, closed at cleanup.
func Connect(t testing.TB, s *bus.Server) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnOptions{URLs: []string{s.ClientURL()}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// StartRegistry starts a registry over nc with the given lease TTL (claim
// pacing; the registry's default where 0).
func StartRegistry(t testing.TB, nc *nats.Conn, leaseTTL time.Duration) *bus.Registry {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	reg := &bus.Registry{JS: js, LeaseTTL: leaseTTL}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return reg
}
