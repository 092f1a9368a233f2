package node

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestStartUndoesOnFailure: when the last step fails (the API's port is
// taken), every part started before it is closed again: its listeners
// refuse connections.
func TestStartUndoesOnFailure(t *testing.T) {
	taken := testkit.TakenAddr(t)
	c := allInOneConfig(t)
	c.API.Address = taken
	n := &Node{Config: c, Role: RoleRun, Log: testkit.Logger(t)}
	err := testkit.StartRefused(t, n.Start, n.Close) // on a taken API port
	if !strings.HasPrefix(err.Error(), "api:") {
		t.Fatalf("err = %v, want the API step's", err)
	}
	// Addrs asks the (closed) bus server too; the roles' listeners keep
	// their addresses after Close.
	if n.cache == nil || n.origin == nil || n.edge == nil {
		t.Fatalf("a role did not start before the failure: cache %v, origin %v, edge %v", n.cache, n.origin, n.edge)
	}
	addrs := map[string]string{"cache": n.cache.HTTPAddr().String(), "origin": n.origin.HTTPAddr().String()}
	for name, addr := range addrs {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still listens on %s after the failed Start", name, addr)
		}
	}
	n.Close() // harmless after the failed Start's own
}
