package bus

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Death notices: a node's death seen by the bus itself, not by waiting for
// its heartbeats to lapse.
//
// A process killed (SIGKILL, a crash, OOM) loses its TCP connections at
// once: its kernel closes them, and the bus server that held its connection
// reads the end at once and closes the client with reason "Client Closed"
// (or "Read Error" / "Write Error" when the kernel answered with a reset).
// Every bus node we run (the `streamgrid bus` role, and the all-in-one's
// embedded server: both are a Server) follows its system account's client
// disconnect events and, for each client closed that way on itself (so
// once in the cluster, by the server that had the connection), publishes a
// notice on GoneSubject: "<conn> <name>", conn being the connection's tag
// (ConnTag of the server's id and the client id it gave the connection) and
// name its connection name (a node's name: internal/node names its
// connection after the node).
//
// Every heartbeat names the connection it was sent on (its tag), so a
// notice names a node and the connection of its last heartbeat: receivers
// (Liveness.receiveGone) take such a notice as the lapse of that node's
// instance at once, and count the instance alive again at its first
// heartbeat on another connection (the process lived on and reconnected).
// The tag travels in the heartbeat rather than in the connection name,
// because a NATS connection keeps the name it was opened with across
// reconnects while the tag changes with each connection.
//
// Fencing (see also Liveness): a notice is published only when the server
// read the node's end of the connection close (a killed process, a clean
// close, the client's own stale-connection or write-error handling), so in
// every case but one the node had stopped serving before anyone learnt of
// it. The one case is a reset by the network (a middlebox, a half-open
// connection) that the server reads while the process lives on: the others
// take the node's streams over at once, while the node counts itself alive
// until its heartbeats' echoes stop (TTL at most) or it reconnects. It keeps
// its instance across the reconnect (a node cannot tell a reset it caused
// from a bus node that died under it, and after a bus node's death no
// notice exists, so drawing a new instance on every drop turned a bus
// node's death into a failover of every stream of its clients: compose
// runs 16 and 18 in docs/cluster.md). Its heartbeats are ignored for
// (those still in flight from the closed connection carry its tag) until
// one comes on the new connection. Epoch fencing keeps the playlist state
// whole: the successor's owner record has epoch+1, the node sees it and
// yields, the old epoch's state writes are refused, and caches key their
// objects by (origin, epoch). docs/cluster.md has the viewer's side. A
// connection not opened by Connect is not followed, and its instances
// carry no tag: notices never name them.
//
// Heartbeats remain the fallback: an external NATS without our bus nodes,
// a host that vanishes without closing its sockets, a stalled process.

// GoneSubject carries the bus nodes' death notices.
const GoneSubject = "sg.gone"

// goneUser is the embedded server's own notifier, when the server has role
// users: allowed in-process connections only, with a password drawn at start.
const goneUser = "sg-bus-notifier"

// peerClosed says whether a close reason means the client's end closed or
// broke the socket (not the server: a stale connection, a slow consumer or
// the server's shutdown say nothing about the client's process).
func peerClosed(reason string) bool {
	switch reason {
	case server.ClientClosed.String(), server.ReadError.String(), server.WriteError.String():
		return true
	}
	return false
}

// ConnTag is the tag of client connection cid on the bus server serverID:
// 16 hex digits, the same for the server's notice and the client's instance.
func ConnTag(serverID string, cid uint64) string {
	h := fnv.New64a()
	h.Write([]byte(serverID))
	h.Write([]byte{0})
	_ = binary.Write(h, binary.BigEndian, cid)
	return fmt.Sprintf("%016x", h.Sum64())
}

// goneNotice is one message on GoneSubject, as text: "<conn> <name>" (the
// name may hold spaces; it comes last).
type goneNotice struct {
	Conn string
	Name string
}

func (g goneNotice) marshal() []byte { return []byte(g.Conn + " " + g.Name) }

func parseGoneNotice(b []byte) (goneNotice, bool) {
	conn, name, ok := strings.Cut(string(b), " ")
	if !ok || conn == "" || name == "" || strings.ContainsAny(conn, " .") {
		return goneNotice{}, false
	}
	return goneNotice{Conn: conn, Name: name}, true
}

// notifierUser is the server user of the notifier, for a server with role
// users (nil otherwise: the notifier then connects with the server's one
// user, its token or nothing). It draws the notifier's password.
func (s *Server) notifierUser() *server.User {
	if !s.Users.any() {
		return nil
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	s.notifierPass = hex.EncodeToString(b[:])
	return &server.User{
		Username: goneUser,
		Password: s.notifierPass,
		Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{GoneSubject}},
			Subscribe: &server.SubjectPermission{Allow: []string{disconnectEvents(server.DEFAULT_GLOBAL_ACCOUNT)}},
		},
		AllowedConnectionTypes: map[string]struct{}{"IN_PROCESS": {}},
	}
}

func disconnectEvents(account string) string { return "$SYS.ACCOUNT." + account + ".DISCONNECT" }

// startNotifier makes the clients' account import its own disconnect events
// from the system account and follows them through an in-process
// connection (which TLS does not apply to), publishing a notice for each
// client of this server whose end closed.
func (s *Server) startNotifier(ns *server.Server) error {
	sys, clients := ns.SystemAccount(), ns.GlobalAccount()
	if sys == nil || clients == nil {
		return fmt.Errorf("bus: death notices: the server has no system account")
	}
	subject := disconnectEvents(clients.Name)
	if err := sys.AddStreamExport(subject, []*server.Account{clients}); err != nil {
		return fmt.Errorf("bus: death notices: export: %w", err)
	}
	if err := clients.AddStreamImport(sys, subject, ""); err != nil {
		return fmt.Errorf("bus: death notices: import: %w", err)
	}
	opts := []nats.Option{nats.InProcessServer(ns), nats.Name("streamgrid bus notifier"), nats.NoReconnect()}
	switch {
	case s.notifierPass != "":
		opts = append(opts, nats.UserInfo(goneUser, s.notifierPass))
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	case s.Token != "":
		opts = append(opts, nats.Token(s.Token))
	}
	// The URL is not dialled (the connection is a pipe into the server);
	// nats:// keeps the client from asking for TLS, which an in-process
	// connection does without.
	nc, err := nats.Connect("nats://in-process", opts...)
	if err != nil {
		return fmt.Errorf("bus: death notices: connect: %s", Redact(err.Error()))
	}
	id := ns.ID()
	_, err = nc.Subscribe(subject, func(m *nats.Msg) {
		var ev server.DisconnectEventMsg
		if json.Unmarshal(m.Data, &ev) != nil || ev.Server.ID != id || ev.Client.Name == "" || !peerClosed(ev.Reason) {
			return
		}
		_ = nc.Publish(GoneSubject, goneNotice{Conn: ConnTag(id, ev.Client.ID), Name: ev.Client.Name}.marshal())
	})
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("bus: death notices: subscribe: %w", err)
	}
	s.notifier = nc
	return nil
}

// connTrack follows the TCP connections a connection opened by Connect
// dials, without the NATS client's lock: a client whose socket write is
// stalled holds that lock, and Liveness.Alive must not wait for it.
type connTrack struct {
	current atomic.Pointer[trackedConn]
}

// trackedConn is one dialled connection; down is set before the client
// closes it (before anything leaves for the server) and when a read or a
// write fails.
type trackedConn struct {
	net.Conn
	down atomic.Bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.down.Store(true)
	}
	return n, err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.down.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.down.Store(true)
	return c.Conn.Close()
}

// trackingDialer dials through next (a net.Dialer when nil) and makes each
// connection the track's current one.
type trackingDialer struct {
	next  nats.CustomDialer
	track *connTrack
}

func (d *trackingDialer) Dial(network, address string) (net.Conn, error) {
	c, err := d.next.Dial(network, address)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c}
	if old := d.track.current.Swap(tc); old != nil {
		old.down.Store(true)
	}
	return tc, nil
}

// tracks maps the connections Connect opened to their tracks (removed when
// the connection is closed).
var tracks sync.Map // *nats.Conn → *connTrack

func trackOf(nc *nats.Conn) *connTrack {
	if t, ok := tracks.Load(nc); ok {
		return t.(*connTrack)
	}
	return nil
}

// goneState is Liveness's part in death notices.
type goneState struct {
	tag atomic.Pointer[taggedConn] // see connTag
	sub *nats.Subscription
}

func (l *Liveness) startGone() error {
	sub, err := l.NC.Subscribe(GoneSubject, l.receiveGone)
	if err != nil {
		return fmt.Errorf("bus: liveness: subscribe: %w", err)
	}
	l.gone.sub = sub
	return nil
}

func (l *Liveness) stopGone() {
	if l.gone.sub != nil {
		_ = l.gone.sub.Unsubscribe()
	}
}

// receiveGone: a node's connection closed; when it is the one its last
// heartbeat came on, its instance is dead now, until a heartbeat comes on
// another connection (the process lived on and reconnected).
func (l *Liveness) receiveGone(m *nats.Msg) {
	g, ok := parseGoneNotice(m.Data)
	if !ok || g.Name == l.Node {
		return // this node's own: its client saw the drop first (onConn)
	}
	l.mu.Lock()
	p, seen := l.nodes[g.Name]
	hit := seen && !p.gone && p.conn == g.Conn
	if hit {
		p.gone, p.dead = true, true
		l.nodes[g.Name] = p
	}
	l.mu.Unlock()
	if hit {
		l.Log.Info("node's bus connection closed: its instance is dead", "node", g.Name, "instance", p.instance)
		l.poke()
	}
}

// connTag is the tag of the bus connection heartbeats go out on now, asked
// of the client once per connection (it takes the client's lock; beat runs
// on its own goroutine, outside selfMu). "" for a connection not opened by
// Connect, or none up.
func (l *Liveness) connTag() string {
	t := trackOf(l.NC)
	if t == nil {
		return ""
	}
	c := t.current.Load()
	if c == nil || c.down.Load() {
		return ""
	}
	if k := l.gone.tag.Load(); k != nil && k.conn == c {
		return k.tag
	}
	srv := l.NC.ConnectedServerId()
	cid, err := l.NC.GetClientID()
	if srv == "" || err != nil || t.current.Load() != c {
		return ""
	}
	tag := ConnTag(srv, cid)
	l.gone.tag.Store(&taggedConn{conn: c, tag: tag})
	return tag
}

// taggedConn caches a connection's tag.
type taggedConn struct {
	conn *trackedConn
	tag  string
}
