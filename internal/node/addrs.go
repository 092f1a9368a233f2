package node

import (
	"net"
	"strconv"

	"github.com/streamgrid/streamgrid/internal/gossip"
	"github.com/streamgrid/streamgrid/internal/version"
)

// meta is what this node gossips about itself.
func (n *Node) meta() gossip.Meta {
	m := gossip.Meta{Role: n.Role, Version: version.String()}
	if n.origin != nil {
		m.HTTP = n.origin.AdvertiseHTTP
		m.Capacity = n.CurrentConfig().Origin.Capacity
		m.Load = len(n.origin.Streams())
	} else if n.cache != nil {
		m.HTTP = n.reachable(n.cache.HTTPAddr())
	}
	if n.cache != nil {
		m.Cache = n.reachable(n.cache.HTTPAddr())
	}
	if n.api != nil {
		m.API = n.reachable(n.api.addr())
	}
	return m
}

// reachable is a listener's address as other nodes can dial it: a wildcard
// host (":9997", "0.0.0.0:8888") becomes the host gossip advertises.
func (n *Node) reachable(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() || n.gossip == nil {
		return a.String()
	}
	host, _, err := net.SplitHostPort(n.gossip.Addr())
	if err != nil {
		return a.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// Addresses the node listens on (tests start nodes on port 0).
type Addrs struct {
	RTSP, RTMP, RTSPS, RTMPS, Cache, Origin, API, NATS, NATSCluster, Gossip string
}

// Addrs reports the bound addresses.
func (n *Node) Addrs() Addrs {
	var a Addrs
	if n.edge != nil {
		if x := n.edge.RTSPAddr(); x != nil {
			a.RTSP = x.String()
		}
		if x := n.edge.RTMPAddr(); x != nil {
			a.RTMP = x.String()
		}
		if x := n.edge.RTSPSAddr(); x != nil {
			a.RTSPS = x.String()
		}
		if x := n.edge.RTMPSAddr(); x != nil {
			a.RTMPS = x.String()
		}
	}
	if n.cache != nil {
		a.Cache = n.cache.HTTPAddr().String()
	}
	if n.origin != nil {
		a.Origin = n.origin.HTTPAddr().String()
	}
	if n.api != nil {
		a.API = n.api.addr().String()
	}
	if n.server != nil {
		a.NATS = n.server.ClientURL()
		a.NATSCluster = n.server.ClusterURL()
	}
	if n.gossip != nil {
		a.Gossip = n.gossip.Addr()
	}
	return a
}

func (n *Node) describeAddrs() []string {
	a := n.Addrs()
	var out []string
	add := func(k, v string) {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	add("rtsp", a.RTSP)
	add("rtmp", a.RTMP)
	add("rtsps", a.RTSPS)
	add("rtmps", a.RTMPS)
	add("hls", a.Cache)
	add("origin", a.Origin)
	add("api", a.API)
	add("nats", a.NATS)
	add("gossip", a.Gossip)
	return out
}

// isLoopback reports whether a listener on host is reachable from this
// machine only: a loopback address or "localhost". "" and 0.0.0.0 are not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitPort parses host:port; port 0 becomes -1, which the NATS server reads as "random".
func splitPort(a string) (string, int, error) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}
