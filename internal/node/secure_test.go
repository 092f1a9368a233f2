package node

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/testcert"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestInsecureListenersRefused: a bus or gossip listener off loopback needs
// credentials or a key, unless insecure says otherwise.
func TestInsecureListenersRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *config.Config)
		want string
	}{
		{"open bus", func(c *config.Config) { c.Bus.Server.Listen = "0.0.0.0:0" }, "bus.server.listen"},
		{"open routes", func(c *config.Config) {
			c.Bus.Server.Listen = "127.0.0.1:0"
			c.Bus.Server.Users.Run = "pw"
			c.Bus.Server.ClusterListen = "0.0.0.0:0"
			c.Bus.Server.Routes = []string{"nats://127.0.0.1:1"}
		}, "bus.server.cluster_listen"},
		{"open gossip", func(c *config.Config) { c.Gossip.Bind = "0.0.0.0:0" }, "gossip.bind"},
		{"creds file on the embedded server", func(c *config.Config) { c.Bus.CredsFile = "/x.creds" }, "bus.creds_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := allInOneConfig(t)
			tc.edit(c)
			n := &Node{Config: c, Role: RoleRun, Log: testkit.Logger(t)}
			err := testkit.StartRefused(t, n.Start, n.Close)
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}
	// insecure: true says it is meant.
	c := allInOneConfig(t)
	c.Bus.Server.Listen, c.Bus.Server.Insecure = "0.0.0.0:0", true
	c.Gossip.Bind, c.Gossip.Insecure = "0.0.0.0:0", true
	startNode(t, c, RoleRun)
}

// TestGossipMetaAndDraining: the gossip metadata names the API and the
// cache once they listen, as addresses other nodes can dial; /healthz says
// when the node drains.
func TestGossipMetaAndDraining(t *testing.T) {
	c := allInOneConfig(t)
	aio := startNode(t, c, RoleRun)
	cc := roleConfig(t, "cache-x")
	cc.Bus.Replicas = 1
	cc.Bus.LeaseTTL = c.Bus.LeaseTTL
	cc.Bus.URLs = []string{aio.Addrs().NATS}
	cc.Gossip.SecretKey = ""
	cc.Gossip.Seeds = []string{aio.Addrs().Gossip}
	cc.API.Address = "0.0.0.0:0" // a wildcard: announced with the gossip host
	cache := startNode(t, cc, RoleCache)
	ca := cache.Addrs()
	_, apiPort, _ := net.SplitHostPort(ca.API)
	var m gossip.Member
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		m, ok = aio.gossip.Member("cache-x")
		if ok && m.Meta.API != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache-x in gossip: %+v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m.Meta.HTTP != ca.Cache || m.Meta.API != "127.0.0.1:"+apiPort {
		t.Fatalf("cache-x announces http %q api %q; listens on %s and %s", m.Meta.HTTP, m.Meta.API, ca.Cache, ca.API)
	}
	if am, _ := cache.gossip.Member("aio"); am.Meta.API != aio.Addrs().API || am.Meta.HTTP == "" {
		t.Fatalf("aio announces %+v", am.Meta)
	}

	api := "http://127.0.0.1:" + apiPort
	if code, body := httpGet(t, api+"/healthz"); code != 200 || !strings.Contains(body, `"draining": false`) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cache.Drain(ctx)
	if code, body := httpGet(t, api+"/healthz"); code != 503 || !strings.Contains(body, `"status": "draining"`) {
		t.Fatalf("healthz while draining: %d %s", code, body)
	}
}

// TestAllInOneOnTLSBus: the embedded bus with a certificate and role users;
// the all-in-one reaches its own server over TLS, verified with bus.server.tls_ca.
func TestAllInOneOnTLSBus(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testcert.WritePKI(t, dir)
	c := allInOneConfig(t)
	c.Bus.Server.Users = clusterUsers
	c.Bus.Server.TLSCert, c.Bus.Server.TLSKey, c.Bus.Server.TLSCA = certFile, keyFile, caFile
	n := startNode(t, c, RoleRun)
	if !n.nc.TLSRequired() || !n.regNC.TLSRequired() {
		t.Fatal("the node's bus connections do not use TLS")
	}
	if u := n.nc.Opts.User; u != "run" {
		t.Fatalf("connected as %q", u)
	}
}
