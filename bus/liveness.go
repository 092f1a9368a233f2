package bus

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Node liveness: one heartbeat per node, not one lease per stream.
//
// Every origin and every edge publishes a small heartbeat on AliveSubject
// every TTL/4 and follows everyone else's. A heartbeat names the node, its
// instance (a random id drawn at start and again after every lapse), its
// TTL and its roles (origin, edge). A process runs one Liveness for all its
// roles: in the all-in-one the origin and the edge share the node's name,
// and a second heartbeat under that name with another instance would make
// every peer take the two for one node restarting over and over.
//
// Records that name a node instance are valid while that instance is alive
// and are never renewed: owner records (sg_owners, origins), stream records
// (sg_streams, the ingesting edge) and camera leases (sg_sources, the
// pulling edge). When a node's heartbeats stop for its TTL, the others act
// on its records by compare-and-set: origins take its streams over
// (Registry.TakeOverOwner), ranked among the live origins only
// (NodesWith(RoleOrigin)); the first live origin a path ranks removes a dead
// edge's stream record; standby edges take its cameras over.
//
// Invariants, the fencing argument:
//   - A node counts itself alive only for TTL after sending a heartbeat that
//     came back to it through the bus (its own echo: the server took it and
//     delivers it, so a publish the bus refuses, say for want of permission,
//     confirms nothing): Alive() is false from sent+TTL on. Any other node
//     receives that heartbeat at or after sent, so it declares the node dead
//     no earlier than the node itself stops serving.
//   - A node whose own liveness lapsed (paused, starved, cut off from the
//     bus) draws a new instance before it sends again: every record naming
//     the old instance is dead for everyone, itself included.
//   - A node never seen counts as alive until Grace after this tracker
//     started, so a node that starts does not take over live peers' streams
//     before it heard their heartbeats.
//   - A receiver judges a node dead only when the newest heartbeat it has
//     processed from anyone (its own echo included) is TTL newer than that
//     node's last one: a receiver starved of CPU, whose queue of heartbeats
//     waits unread, judges nobody (as memberlist's Lifeguard discounts a
//     slow member's own suspicions). This only ever makes a judgment
//     later, never earlier than TTL after the last heartbeat heard.
//   - Liveness only decides who tries; the owner record's compare-and-set
//     decides who wins, and the epoch (Owner.Epoch) fences the playlist state.
//   - A death notice (gone.go) ends a node's instance at once, before its
//     heartbeats' TTL: the bus server that held the instance's connection
//     read the node's end close it, so the node had stopped serving; gone.go
//     has the one exception (a reset by the network, the process living
//     on) and what it costs.

// AliveSubject carries the nodes' heartbeats.
const AliveSubject = "sg.alive"

// Roles a heartbeat announces.
const (
	RoleOrigin = "origin"
	RoleEdge   = "edge"
)

// DefaultNodeTTL is bus.node_ttl's default.
const DefaultNodeTTL = 750 * time.Millisecond

// heartbeat is one message on AliveSubject, as text: "<ttl ms> <instance>
// <sent> <conn> <roles> <node>" (conn the connection's tag, "-" for none;
// roles comma-separated, "-" for none; a node's
// name may hold spaces, it comes last). Sent is when it was sent, in
// nanoseconds on the sender's own clock: only the sender reads it, in its
// echo. Every node decodes every heartbeat of the cluster, so it is cheap
// to parse.
type heartbeat struct {
	Node     string
	Instance string
	TTLms    int64
	Sent     int64
	Roles    string
	// Conn is the tag of the bus connection the heartbeat was sent on
	// (ConnTag; "" for a connection not opened by Connect): death notices
	// name it (gone.go).
	Conn string
}

func (h heartbeat) marshal() []byte {
	return fmt.Appendf(nil, "%d %s %d %s %s %s", h.TTLms, h.Instance, h.Sent, cmp.Or(h.Conn, "-"), cmp.Or(h.Roles, "-"), h.Node)
}

func parseHeartbeat(b []byte) (heartbeat, bool) {
	ttl, rest, ok1 := strings.Cut(string(b), " ")
	inst, rest, ok2 := strings.Cut(rest, " ")
	sent, rest, ok3 := strings.Cut(rest, " ")
	conn, rest, ok4 := strings.Cut(rest, " ")
	roles, node, ok5 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || node == "" || inst == "" || roles == "" || conn == "" {
		return heartbeat{}, false
	}
	if conn == "-" {
		conn = ""
	}
	ms, err1 := strconv.ParseInt(ttl, 10, 64)
	at, err2 := strconv.ParseInt(sent, 10, 64)
	if err1 != nil || err2 != nil || ms <= 0 || at <= 0 {
		return heartbeat{}, false
	}
	if roles == "-" {
		roles = ""
	}
	return heartbeat{Node: node, Instance: inst, TTLms: ms, Sent: at, Roles: roles, Conn: conn}, true
}

// hasRole says whether the comma-separated list roles holds role.
func hasRole(roles, role string) bool {
	for r := range strings.SplitSeq(roles, ",") {
		if r == role {
			return true
		}
	}
	return false
}

// Liveness publishes this node's heartbeats (when Node is set) and tracks
// every other node's. Fill in the fields, then Start; Close stops it.
type Liveness struct {
	NC *nats.Conn
	// Node is this node's name; empty: track only, send nothing.
	Node string
	// Roles are the roles this node's heartbeats announce (RoleOrigin,
	// RoleEdge): one Liveness serves every role of a process. Default
	// RoleOrigin.
	Roles []string
	// TTL is how long this node counts as alive after a confirmed
	// heartbeat; heartbeats go every TTL/4. Default DefaultNodeTTL.
	TTL time.Duration
	// Grace is how long a node never heard from counts as alive after Start.
	// Default 2 × TTL.
	Grace time.Duration
	// OnLapse is called (on the liveness goroutine, must not block) when
	// this node's own liveness lapsed: everything it owned is lost. More
	// callbacks: AddLapseHook.
	OnLapse func()
	Log     *slog.Logger

	roles      string // Roles, joined
	hookMu     sync.Mutex
	lapseHooks []func()
	watchers   []chan struct{}

	instance atomic.Pointer[string]
	// confirmed is the send time (UnixNano, monotonic-derived) of the last
	// heartbeat the server confirmed; 0 before the first.
	confirmed atomic.Int64
	base      time.Time  // monotonic origin for confirmed
	selfMu    sync.Mutex // orders a confirmation against a lapse
	// echoAt is when the last echo of this node's own heartbeat was
	// processed, echoLag how long after its send (both since base), and
	// beatAt when the last heartbeat was handed to the connection,
	// publishTook how long that took: what a lapse's warning reports, so
	// that a lapse says which side held the heartbeat up.
	echoAt, echoLag, beatAt, publishTook atomic.Int64
	gone                                 goneState // death notices (gone.go)

	mu    sync.Mutex
	nodes map[string]peer
	// lastAny is when the newest heartbeat was processed, this node's echo
	// included (since base): atomic, so that this node's own echo is
	// confirmed without waiting for mu, which the claimer's reads hold.
	lastAny   atomic.Int64
	started   time.Time
	graceDone bool
	changed   chan struct{}

	sub         *nats.Subscription
	reconnected chan nats.Status // the connection is up again (StatusChanged)
	stop        chan struct{}
	done        chan struct{}
	once        sync.Once
}

type peer struct {
	instance string
	roles    string
	last     time.Time
	ttl      time.Duration
	dead     bool   // reported dead already
	conn     string // the connection tag of its last heartbeat
	gone     bool   // that connection closed (gone.go): dead until a heartbeat comes on another
}

// Start subscribes to the heartbeats and starts sending this node's.
func (l *Liveness) Start() error {
	if l.NC == nil {
		return errors.New("bus: liveness: NC is required")
	}
	if l.TTL <= 0 {
		l.TTL = DefaultNodeTTL
	}
	if l.Grace <= 0 {
		l.Grace = 2 * l.TTL
	}
	if l.Log == nil {
		l.Log = slog.Default()
	}
	if len(l.Roles) == 0 {
		l.Roles = []string{RoleOrigin}
	}
	l.roles = strings.Join(l.Roles, ",")
	l.base = time.Now()
	l.started = l.base
	l.nodes = map[string]peer{}
	l.changed = make(chan struct{}, 1)
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	l.newInstance()
	sub, err := l.NC.Subscribe(AliveSubject, l.receive)
	if err != nil {
		l.stop, l.done = nil, nil // nothing runs: Close has nothing to stop
		return fmt.Errorf("bus: liveness: subscribe: %w", err)
	}
	l.sub = sub
	if err := l.startGone(); err != nil {
		_ = sub.Unsubscribe()
		l.stop, l.done = nil, nil
		return err
	}
	if l.Node != "" {
		// The first heartbeat before Start returns, so that Alive() holds at
		// once when the bus answers in time; if not, claims wait for it.
		l.beat()
		for deadline := time.Now().Add(l.TTL); !l.Alive() && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	l.reconnected = l.NC.StatusChanged(nats.CONNECTED)
	go l.run()
	return nil
}

// Close stops sending and tracking. Calling it twice is harmless.
func (l *Liveness) Close() {
	if l.stop == nil {
		return
	}
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		_ = l.sub.Unsubscribe()
		l.stopGone()
		l.NC.RemoveStatusListener(l.reconnected)
	})
}

// Instance is this node's current instance id: owner records it writes name it.
func (l *Liveness) Instance() string { return *l.instance.Load() }

// Alive says whether this node may act as an owner now: a confirmed
// heartbeat was sent less than TTL ago. A dropped bus connection does not
// end it by itself (gone.go: the node keeps its instance across a
// reconnect when the bus node it was on died).
func (l *Liveness) Alive() bool {
	c := l.confirmed.Load()
	return c != 0 && time.Since(l.base) < time.Duration(c)+l.TTL
}

// Changed is poked whenever a node joins, is found dead or a new instance
// shows up, this node's own lapse included. It is one channel for one reader;
// other readers take their own with Watch.
func (l *Liveness) Changed() <-chan struct{} { return l.changed }

// Watch returns a channel of its own that is poked whenever Changed is:
// for a role that shares the process' Liveness with another.
func (l *Liveness) Watch() <-chan struct{} {
	ch := make(chan struct{}, 1)
	l.hookMu.Lock()
	l.watchers = append(l.watchers, ch)
	l.hookMu.Unlock()
	return ch
}

// AddLapseHook adds a callback that runs, as OnLapse does, when this
// node's own liveness lapsed.
func (l *Liveness) AddLapseHook(f func()) {
	l.hookMu.Lock()
	l.lapseHooks = append(l.lapseHooks, f)
	l.hookMu.Unlock()
}

// Holds says whether the owner record o is held by a live node instance.
func (l *Liveness) Holds(o Owner) bool { return l.Live(o.Node, o.Instance) }

// Live says whether node's instance is alive: this node's current one
// while it is alive, another node's while its heartbeats go on (or, for a
// node never heard from, during Grace after Start).
func (l *Liveness) Live(node, instance string) bool {
	if node == l.Node && l.Node != "" {
		return instance == l.Instance() && l.Alive()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.nodes[node]
	if !ok {
		return time.Since(l.started) < l.Grace
	}
	return p.instance == instance && !l.deadLocked(p, time.Now())
}

// NodeAlive says whether node is alive under any instance: this node while
// it is alive, another while the heartbeats of its current instance go on.
// A record naming an older instance of a node alive under a newer one is
// about to be written again by that node (its instance was redrawn after a
// lapse or a bus connection's drop), not left by a dead node.
func (l *Liveness) NodeAlive(node string) bool {
	if node == l.Node && l.Node != "" {
		return l.Alive()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.nodes[node]
	return ok && !l.deadLocked(p, time.Now())
}

// HoldsStream says whether a stream record is held by its edge's live
// instance. A record that names no instance (written by a test, or by
// hand) holds while it exists.
func (l *Liveness) HoldsStream(info *StreamInfo) bool {
	return info.Instance == "" || l.Live(info.Edge, info.Instance)
}

// deadLocked: p's heartbeats stopped, judged as the package comment says.
func (l *Liveness) deadLocked(p peer, now time.Time) bool {
	return p.gone || now.Sub(p.last) >= p.ttl && l.base.Add(time.Duration(l.lastAny.Load())).Sub(p.last) >= p.ttl
}

func (l *Liveness) newInstance() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	l.instance.Store(&s)
}

func (l *Liveness) receive(m *nats.Msg) {
	hb, ok := parseHeartbeat(m.Data)
	if !ok {
		return
	}
	now := time.Now()
	if hb.Node == l.Node {
		// Not under mu: a heartbeat's echo must not wait for the readers
		// of the other nodes' liveness (the claimer's, many a second).
		l.lastAny.Store(int64(now.Sub(l.base)))
		l.confirm(hb)
		return
	}
	l.mu.Lock()
	// Under mu with the peer's record, so that nobody sees this heartbeat
	// counted as the newest before it is counted as the peer's.
	l.lastAny.Store(int64(now.Sub(l.base)))
	p, seen := l.nodes[hb.Node]
	fresh := !seen || p.instance != hb.Instance
	if !fresh && p.gone && (hb.Conn == p.conn || hb.Conn == "") {
		// A late heartbeat from the connection that closed, or one that
		// names no connection: only a heartbeat on another tagged
		// connection shows the process lived on.
		l.mu.Unlock()
		return
	}
	l.nodes[hb.Node] = peer{instance: hb.Instance, roles: hb.Roles, conn: hb.Conn, last: now, ttl: time.Duration(hb.TTLms) * time.Millisecond}
	l.mu.Unlock()
	switch {
	case !seen:
		l.poke() // a node joined: rankings among the live nodes changed
	case fresh:
		l.poke() // a restarted node: its former instance's records are dead
	case p.dead || p.gone:
		l.poke() // found dead, and heard again: its records hold again
	}
}

func (l *Liveness) poke() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
	l.hookMu.Lock()
	defer l.hookMu.Unlock()
	for _, ch := range l.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// run checks this node's own liveness and the others' every TTL/8. The
// heartbeats go from a goroutine of their own (beats): a publish or a flush
// that blocks on a stalled connection must not hold up noticing the lapse.
func (l *Liveness) run() {
	defer close(l.done)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		if l.Node != "" {
			// A heartbeat also goes out as soon as the connection is back
			// (beat skips those due while it is down): the node's liveness
			// and its peers' view of it do not wait for the next multiple
			// of TTL/4, which after a slow reconnect could come after the
			// node's own lapse.
			l.every(l.TTL/4, true, l.reconnected, l.beat)
		}
	}()
	defer func() { <-beating }()
	l.every(l.TTL/8, false, nil, func() {
		if l.Node != "" {
			l.check()
		}
		l.expire()
	})
}

// every calls f every d (at least 10 ms) until Close. aligned: at the
// multiples of d on the wall clock instead, for the heartbeats: every node
// with the same TTL so sends at about the same moment, and the bus hands
// each follower the whole round in a few socket writes instead of one per
// heartbeat (with O nodes the fan-out is O² messages a round, and their
// per-message writes were most of the bus's CPU at a hundred nodes, see
// docs/cluster.md). A receive from also calls f at once.
func (l *Liveness) every(d time.Duration, aligned bool, also <-chan nats.Status, f func()) {
	d = max(d, 10*time.Millisecond)
	next := func() time.Duration {
		if aligned {
			return time.Until(nextMultiple(time.Now(), d))
		}
		return d
	}
	t := time.NewTimer(next())
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-also:
			f()
			continue
		case <-t.C:
		}
		f()
		t.Reset(next())
	}
}

// nextMultiple is the first multiple of d on the wall clock after now.
func nextMultiple(now time.Time, d time.Duration) time.Time {
	return now.Truncate(d).Add(d)
}

// check notices this node's own lapse: no confirmed heartbeat for TTL.
func (l *Liveness) check() {
	l.selfMu.Lock()
	if l.confirmed.Load() == 0 || l.Alive() {
		l.selfMu.Unlock()
		return
	}
	old := l.Instance()
	confirmed := time.Duration(l.confirmed.Load())
	l.newInstance()
	l.confirmed.Store(0)
	l.selfMu.Unlock()
	now := time.Since(l.base)
	ago := func(v *atomic.Int64) time.Duration { return (now - time.Duration(v.Load())).Round(time.Millisecond) }
	heard := ago(&l.lastAny)
	var pending int
	if l.sub != nil {
		pending, _, _ = l.sub.Pending()
	}
	// What held the heartbeat up: echo_ago against heard_ago says whether
	// this node still hears the others (its own heartbeats are not coming
	// back: the publish side) or nobody (the receive side); pending is how
	// many heartbeats wait for the handler.
	l.Log.Warn("this node's liveness lapsed (paused, starved or cut off from the bus): its streams are given up",
		"node", l.Node, "instance", old, "ttl", l.TTL,
		"confirmed_ago", (now - confirmed).Round(time.Millisecond), "echo_ago", ago(&l.echoAt),
		"echo_lag", time.Duration(l.echoLag.Load()).Round(time.Millisecond), "heard_ago", heard,
		"beat_ago", ago(&l.beatAt), "publish_took", time.Duration(l.publishTook.Load()).Round(time.Microsecond),
		"pending", pending)
	if l.OnLapse != nil {
		l.OnLapse()
	}
	l.hookMu.Lock()
	hooks := slices.Clone(l.lapseHooks)
	l.hookMu.Unlock()
	for _, f := range hooks {
		f()
	}
	l.poke()
}

// beat sends one heartbeat; its echo confirms it (confirm).
func (l *Liveness) beat() {
	sent := max(time.Since(l.base), 1)
	tag := l.connTag()
	if tag == "" && trackOf(l.NC) != nil {
		// The connection is down or not yet through its handshake: a
		// heartbeat now would wait in the client's reconnect buffer and go
		// out untagged on the next connection, where it would stand for
		// that connection until the next beat and hide its death notice.
		// The next beat comes TTL/4 later, well inside TTL.
		return
	}
	b := heartbeat{Node: l.Node, Instance: l.Instance(), TTLms: l.TTL.Milliseconds(), Sent: int64(sent), Roles: l.roles,
		Conn: tag}.marshal()
	_ = l.NC.Publish(AliveSubject, b) // a failure confirms nothing: check notices the lapse
	l.beatAt.Store(int64(sent))
	l.publishTook.Store(int64(time.Since(l.base) - sent))
}

// confirm extends this node's liveness from the moment hb, its own
// heartbeat's echo, was sent.
func (l *Liveness) confirm(hb heartbeat) {
	sent := time.Duration(hb.Sent)
	if now := time.Since(l.base); hb.Instance == l.Instance() {
		l.echoAt.Store(int64(now))
		l.echoLag.Store(int64(now - sent))
	}
	l.selfMu.Lock()
	defer l.selfMu.Unlock()
	if hb.Instance != l.Instance() || time.Since(l.base) >= sent+l.TTL || int64(sent) <= l.confirmed.Load() {
		return // an instance given up, too late to count (check notices the lapse), or an older echo
	}
	l.confirmed.Store(int64(sent))
}

// expire reports nodes whose heartbeats stopped.
func (l *Liveness) expire() {
	now := time.Now()
	var died bool
	l.mu.Lock()
	for n, p := range l.nodes {
		if !p.dead && l.deadLocked(p, now) {
			p.dead = true
			l.nodes[n] = p
			died = true
		}
	}
	if !l.graceDone && now.Sub(l.started) >= l.Grace {
		l.graceDone = true
		died = true // records of nodes never heard from are dead from now on
	}
	l.mu.Unlock()
	if died {
		l.poke()
	}
}

// Settled says whether Grace has passed since Start: from then on the list
// of live nodes (NodesWith) holds every node whose heartbeats go on, not
// only those heard since Start.
func (l *Liveness) Settled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.graceDone
}

// Nodes lists the nodes alive now, this one included while it is.
func (l *Liveness) Nodes() []string { return l.NodesWith("") }

// NodesWith lists the nodes alive now that announce role (every live node
// when role is empty), this one included while it is alive and has role.
func (l *Liveness) NodesWith(role string) []string {
	var out []string
	if l.Node != "" && l.Alive() && (role == "" || slices.Contains(l.Roles, role)) {
		out = append(out, l.Node)
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, p := range l.nodes {
		if !l.deadLocked(p, now) && (role == "" || hasRole(p.roles, role)) {
			out = append(out, n)
		}
	}
	return out
}
