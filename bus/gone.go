package bus

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
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
// A liveness instance carries the tag of the connection it was drawn on
// ("<random>.<conn>"), so a notice names the node and the instance whose
// connection closed: receivers (Liveness.gone) treat a notice that names a
// node's current instance as that instance's lapse at once. The instance
// carries the tag rather than the connection name carrying the instance,
// because a NATS connection keeps the name it was opened with across
// reconnects while the instance changes at every lapse.
//
// Fencing (see also Liveness): a node counts itself alive only while the
// connection its instance was drawn on is up (Liveness.Alive asks the
// client, whose status leaves CONNECTED before it closes a socket itself),
// and a node whose connection dropped, for whatever reason, draws a new
// instance before it counts itself alive again. So when the node's process
// closed the connection (a clean close, its own stale-connection or write
// error handling, its death), it had stopped serving as that instance
// before the server could read the close. The one case where the server
// reads a close the live process has not made is a reset by the network
// (a middlebox, a half-open connection): the node then still counts itself
// alive until its client sees the socket fail (its next heartbeat, within
// TTL/4) or its heartbeats' echoes stop (TTL at most); until then two
// origins may answer for its streams. Epoch fencing keeps the playlist
// state whole either way: the successor's owner record has epoch+1, the
// state writes of the old epoch are refused, and caches key their objects
// by (origin, epoch). docs/cluster.md has the viewer's side.
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

// connIdent is the connection a liveness instance was drawn on.
type connIdent struct {
	server string // the bus server's id; empty: not connected
	cid    uint64
}

// goneState is Liveness's part in death notices.
type goneState struct {
	conn atomic.Pointer[connIdent]
	sub  *nats.Subscription
}

// currentConn is the connection l.NC is on now.
func (l *Liveness) currentConn() connIdent {
	srv := l.NC.ConnectedServerId()
	cid, _ := l.NC.GetClientID()
	return connIdent{server: srv, cid: cid}
}

// drawInstance draws a new instance id, tagged with the connection it is
// drawn on, and remembers that connection.
func (l *Liveness) drawInstance() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	c := l.currentConn()
	if c.server != "" {
		s += "." + ConnTag(c.server, c.cid)
	}
	l.gone.conn.Store(&c)
	return s
}

// onConn says whether the connection the current instance was drawn on is
// still the one up: once it dropped, the instance is over (a notice may
// have named it), even after a reconnect.
func (l *Liveness) onConn() bool {
	c := l.gone.conn.Load()
	if c == nil || c.server == "" {
		return false
	}
	return l.currentConn() == *c
}

// redrawIfStale draws a new instance before a heartbeat when the current
// one was drawn on a connection that is gone and the node holds nothing as
// it (not alive): after a reconnect, the lapse drew it while disconnected.
func (l *Liveness) redrawIfStale() {
	l.selfMu.Lock()
	defer l.selfMu.Unlock()
	if l.confirmed.Load() == 0 && !l.onConn() {
		l.newInstance()
	}
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

// receiveGone: a node's connection closed; when it is the one its current
// instance was drawn on, that instance is dead now.
func (l *Liveness) receiveGone(m *nats.Msg) {
	g, ok := parseGoneNotice(m.Data)
	if !ok || g.Name == l.Node {
		return // this node's own: its client saw the drop first (onConn)
	}
	l.mu.Lock()
	p, seen := l.nodes[g.Name]
	hit := seen && !p.gone && strings.HasSuffix(p.instance, "."+g.Conn)
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
