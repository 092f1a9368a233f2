// Package gossip is the cluster membership every role joins through
// memberlist: each node gossips its role, HTTP address and load in a small
// metadata record (well under memberlist's 512-byte limit), and readers see
// the alive members through an atomically swapped table.
package gossip

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells the others about itself.
type Meta struct {
	Role     string `json:"r"`           // edge, origin, cache, run (all-in-one)
	HTTP     string `json:"h,omitempty"` // host:port of its HTTP service (origin HLS for origins, viewers for caches)
	API      string `json:"a,omitempty"` // host:port of its API
	Load     int    `json:"l,omitempty"` // streams held
	Capacity int    `json:"c,omitempty"` // streams it will hold
	Draining bool   `json:"d,omitempty"`
	// Cache is host:port of the viewers' HTTP server of a node that runs a
	// cache (the cache role, and the all-in-one whose HTTP is its origin's).
	Cache string `json:"ch,omitempty"`
	// Version is the node's streamgrid version.
	Version string `json:"v,omitempty"`
	// Transcode is an origin's transcoding capacity; nil when it runs no
	// ladder (it never probed its encoders).
	Transcode *Transcode `json:"t,omitempty"`
}

// Transcode is what an origin can transcode and how many more streams it
// can take, kept to a few bytes ({"e":31,"g":8,"gf":7,"c":2,"cf":2}: about
// 40) so the record stays far below memberlist's 512-byte limit.
type Transcode struct {
	// Encoders usable on this origin (after its configuration: an origin
	// told to encode with x264 announces no NVENC).
	Encoders Encoders `json:"e,omitempty"`
	// GPU and CPU are the transcode slots; GPUFree and CPUFree those not
	// taken.
	GPU     int `json:"g,omitempty"`
	GPUFree int `json:"gf,omitempty"`
	CPU     int `json:"c,omitempty"`
	CPUFree int `json:"cf,omitempty"`
}

// Encoders is a set of encoder capabilities, as bits.
type Encoders uint8

// Encoder capabilities.
const (
	// NVENCH264 and NVENCHEVC: the whole GPU pipeline (CUDA decode,
	// scale_cuda, the NVENC encoder) works for that codec.
	NVENCH264 Encoders = 1 << iota
	NVENCHEVC
	// X264 and X265: libx264 / libx265 on the CPU.
	X264
	X265
	// NVDEC: ffmpeg opened a CUDA device (hardware decoding).
	NVDEC
)

// Has reports whether every capability of want is in e.
func (e Encoders) Has(want Encoders) bool { return e&want == want }

// String lists the capabilities, "+"-separated ("nvenc_h264+x264"); "none" when empty.
func (e Encoders) String() string {
	var out []string
	for i, name := range []string{"nvenc_h264", "nvenc_hevc", "x264", "x265", "nvdec"} {
		if e&(1<<i) != 0 {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "+")
}

// Member is an alive node of the cluster.
type Member struct {
	Name string
	Addr string // gossip address host:port
	Meta Meta
}

// Node is this process's membership. Fill in the fields, then Start.
type Node struct {
	// Name must be unique in the cluster.
	Name string
	// BindAddr/BindPort: where gossip listens (TCP and UDP). Port 0 picks a free port.
	BindAddr string
	BindPort int
	// AdvertiseAddr/AdvertisePort: what others dial. Default: the bind address.
	AdvertiseAddr string
	AdvertisePort int
	// Seeds are other members' gossip addresses (host:port). Join retries in the background until one answers.
	Seeds []string
	// SecretKey, when set (16, 24 or 32 bytes), encrypts gossip with AES-GCM.
	SecretKey []byte
	// OldKeys are further keys accepted from others but never sent with:
	// during a rotation, the new key (before it is SecretKey everywhere) or
	// the old one (until no node sends with it any more).
	OldKeys [][]byte
	// ReclaimAfter is how long after a member was declared dead another
	// address may take its name. A node that left cleanly can be replaced at
	// once. Default 10 s: a restarted container with a new address rejoins
	// within seconds, a name cannot be snatched the moment its node fails.
	ReclaimAfter time.Duration
	// Meta is the initial metadata.
	Meta Meta
	// OnChange, if set, is called (from one goroutine, never concurrently) after membership changed.
	OnChange func()
	// Log. Default slog.Default().
	Log *slog.Logger

	ml      *memberlist.Memberlist
	addr    string
	refMu   sync.Mutex // serializes writers of members
	setMu   sync.Mutex // serializes SetMeta
	meta    atomic.Pointer[[]byte]
	members atomic.Pointer[map[string]Member]
	changed chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	closeMu sync.Once
}

// Start creates the memberlist and starts joining the seeds.
func (n *Node) Start() error {
	if n.Log == nil {
		n.Log = slog.Default()
	}
	if err := n.encodeMeta(n.Meta); err != nil {
		return err
	}
	empty := map[string]Member{}
	n.members.Store(&empty)
	n.changed = make(chan struct{}, 1)
	n.done = make(chan struct{})

	cfg := memberlist.DefaultLANConfig()
	cfg.Name = n.Name
	cfg.BindAddr = n.BindAddr
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	cfg.BindPort = n.BindPort
	cfg.AdvertiseAddr = n.AdvertiseAddr
	cfg.AdvertisePort = n.AdvertisePort
	if cfg.AdvertisePort == 0 {
		cfg.AdvertisePort = n.BindPort
	}
	if len(n.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(n.OldKeys, n.SecretKey)
		if err != nil {
			return fmt.Errorf("gossip: keys: %w", err)
		}
		cfg.Keyring = kr
	}
	// A node restarted under the same name may come back with a new address
	// (a container's IP changes): let it rejoin rather than after
	// memberlist's reaping (never, without a reclaim time). Not at once,
	// though: the name of a member that just failed is not free for anyone
	// who reaches the gossip port (with an encryption key, anyone who holds it).
	cfg.DeadNodeReclaimTime = n.ReclaimAfter
	if cfg.DeadNodeReclaimTime <= 0 {
		cfg.DeadNodeReclaimTime = 10 * time.Second
	}
	// Faster failure detection than the LAN preset: a dead origin should be noticed in ~2 s.
	cfg.ProbeInterval = 500 * time.Millisecond
	cfg.ProbeTimeout = 300 * time.Millisecond
	cfg.SuspicionMult = 2
	cfg.PushPullInterval = 10 * time.Second
	cfg.Delegate = delegate{n}
	cfg.Events = events{n}
	cfg.Logger = log.New(&logWriter{n.Log.With("component", "memberlist")}, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	n.ml = ml
	// Read the local node once, before anything can change it (memberlist
	// rewrites it under its own lock on every metadata update).
	ln := ml.LocalNode()
	n.addr = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	if cfg.BindPort == 0 {
		// memberlist picked a port; advertise what it bound.
		n.BindPort = int(ln.Port)
	}
	n.wg.Add(2)
	go n.notifyLoop()
	go n.joinLoop()
	return nil
}

// Addr is this node's gossip address, for other nodes' seeds.
func (n *Node) Addr() string { return n.addr }

// Members returns the alive members, this node included.
func (n *Node) Members() []Member {
	m := *n.members.Load()
	out := make([]Member, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Member returns an alive member by name.
func (n *Node) Member(name string) (Member, bool) {
	m, ok := (*n.members.Load())[name]
	return m, ok
}

// CurrentMeta returns this node's current metadata.
func (n *Node) CurrentMeta() Meta {
	var m Meta
	if b := n.meta.Load(); b != nil {
		_ = json.Unmarshal(*b, &m)
	}
	return m
}

// SetMeta changes this node's metadata and gossips it. It is safe for
// concurrent use (memberlist's UpdateNode is not).
func (n *Node) SetMeta(m Meta) error {
	n.setMu.Lock()
	defer n.setMu.Unlock()
	if err := n.encodeMeta(m); err != nil {
		return err
	}
	if n.ml != nil {
		return n.ml.UpdateNode(time.Second)
	}
	return nil
}

// Leave announces departure and waits up to timeout for it to spread.
func (n *Node) Leave(timeout time.Duration) error {
	if n.ml == nil {
		return nil
	}
	return n.ml.Leave(timeout)
}

// Close leaves (briefly) and shuts memberlist down. Calling it twice is harmless.
func (n *Node) Close() { n.stop(true) }

// Shutdown stops gossiping without announcing a departure, as a crash would:
// the others find out by failed probes. Used to rehearse failures.
func (n *Node) Shutdown() { n.stop(false) }

func (n *Node) stop(leave bool) {
	n.closeMu.Do(func() {
		if n.ml == nil {
			return
		}
		close(n.done)
		if leave {
			_ = n.ml.Leave(500 * time.Millisecond)
		}
		_ = n.ml.Shutdown()
		n.wg.Wait()
	})
}

func (n *Node) encodeMeta(m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("gossip: metadata is %d bytes, over memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	n.meta.Store(&b)
	return nil
}

// apply copies one membership event into the member table. memberlist calls
// its event delegate synchronously under its own lock, which is the only
// moment its *Node may be read without racing memberlist's writers: copy
// every field here, swap the table, poke the notify loop, never block.
func (n *Node) apply(node *memberlist.Node, alive bool) {
	n.refMu.Lock()
	defer n.refMu.Unlock()
	cur := *n.members.Load()
	t := make(map[string]Member, len(cur)+1)
	for k, v := range cur {
		t[k] = v
	}
	var meta Meta
	if alive && json.Unmarshal(node.Meta, &meta) == nil {
		t[node.Name] = Member{Name: node.Name, Addr: node.Address(), Meta: meta}
	} else {
		delete(t, node.Name)
	}
	n.members.Store(&t)
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

func (n *Node) notifyLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case <-n.changed:
			if n.OnChange != nil {
				n.OnChange()
			}
		}
	}
}

// joinLoop joins the seeds, retrying until one answers, and re-joins when
// this node finds itself alone (a partition healed, or every seed restarted).
func (n *Node) joinLoop() {
	defer n.wg.Done()
	var seeds []string
	for _, s := range n.Seeds {
		if s != "" && s != n.Addr() {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return
	}
	wait := 200 * time.Millisecond
	for {
		if n.ml.NumMembers() <= 1 {
			if _, err := n.ml.Join(seeds); err != nil {
				n.Log.Debug("gossip join failed, retrying", "seeds", seeds, "err", err)
				wait = min(wait*2, 5*time.Second)
			} else {
				wait = 2 * time.Second
			}
		}
		select {
		case <-n.done:
			return
		case <-time.After(wait):
		}
	}
}

type delegate struct{ n *Node }

func (d delegate) NodeMeta(limit int) []byte {
	b := *d.n.meta.Load()
	if len(b) > limit {
		return nil // never happens: encodeMeta refuses oversize metadata
	}
	return b
}
func (d delegate) NotifyMsg([]byte)                           {}
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d delegate) LocalState(join bool) []byte                { return nil }
func (d delegate) MergeRemoteState(buf []byte, join bool)     {}

// events are called by memberlist, serialized, under its lock: they copy
// what they need and return.
type events struct{ n *Node }

func (e events) NotifyJoin(node *memberlist.Node)   { e.n.apply(node, true) }
func (e events) NotifyLeave(node *memberlist.Node)  { e.n.apply(node, false) }
func (e events) NotifyUpdate(node *memberlist.Node) { e.n.apply(node, true) }

// logWriter routes memberlist's log lines to slog: errors as warnings, the rest at debug level.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	s := string(p)
	if len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	if strings.HasPrefix(s, "[ERR] ") {
		w.log.Warn(s)
	} else {
		w.log.Debug(s)
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
