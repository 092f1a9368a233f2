package loadtest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/bus"
)

// ownerObserver follows the owner records of the run's streams through the
// registry's owner watch, as a cache or a peer origin sees them, and times
// how long the streams of killed origins stay without a live owner.
type ownerObserver struct {
	conn   *simConn
	js     jetstream.JetStream
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	ours    map[string]bool   // the run's paths
	owner   map[string]string // path → owning node
	killed  map[string]bool   // killed node names
	killAt  time.Time
	pending map[string]bool // orphans not owned again yet
	orphanN int
	reown   []float64 // ms
	slow    []SlowReown
}

// SlowReown is one of the orphans owned again last: its path, how long it
// waited, the origin that took it, and what the bus told: the owner
// record's epoch (how many times it was written before).
//
// ClaimedMS is when, after the kill, the taker's owner record says it
// took the stream (Owner.Since: the same clock, one process); MS less
// ClaimedMS is what the observer's watch added. Trace is what the
// simulated nodes logged at debug level about the path after the kill,
// TakerTrace the taker's node-wide records (killTrace).
type SlowReown struct {
	Path       string       `json:"path"`
	MS         float64      `json:"ms"`
	ClaimedMS  float64      `json:"claimed_ms"`
	Owner      string       `json:"owner"`
	Epoch      uint64       `json:"epoch"`
	Trace      []TraceEvent `json:"trace,omitempty"`
	TakerTrace []TraceEvent `json:"taker_trace,omitempty"`
}

// slowKept is how many of the slowest re-owned orphans the report lists.
const slowKept = 12

func startOwnerObserver(ctx context.Context, urls []string, rc registryConfig, paths []string) (*ownerObserver, error) {
	c, err := dialSim(ctx, urls, "sim-observer", rc)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(c.regNC)
	if err != nil {
		c.close()
		return nil, err
	}
	o := &ownerObserver{
		conn: c, js: js, done: make(chan struct{}),
		ours: make(map[string]bool, len(paths)), owner: map[string]string{},
		killed: map[string]bool{}, pending: map[string]bool{},
	}
	for _, p := range paths {
		o.ours[p] = true
	}
	wctx, cancel := context.WithCancel(context.Background())
	events, err := c.reg.WatchOwners(wctx)
	if err != nil {
		cancel()
		c.close()
		return nil, err
	}
	o.cancel = cancel
	go o.run(events)
	return o, nil
}

func (o *ownerObserver) run(events <-chan bus.OwnerEvent) {
	defer close(o.done)
	for ev := range events {
		now := time.Now()
		o.mu.Lock()
		if o.ours[ev.Path] {
			o.apply(ev, now)
		}
		o.mu.Unlock()
	}
}

func (o *ownerObserver) apply(ev bus.OwnerEvent, now time.Time) {
	if ev.Owner == nil {
		delete(o.owner, ev.Path)
		return
	}
	o.owner[ev.Path] = ev.Owner.Node
	if o.pending[ev.Path] && !o.killed[ev.Owner.Node] {
		delete(o.pending, ev.Path)
		ms := float64(now.Sub(o.killAt).Microseconds()) / 1000
		o.reown = append(o.reown, ms)
		o.slow = append(o.slow, SlowReown{Path: ev.Path, MS: ms, Owner: ev.Owner.Node, Epoch: ev.Owner.Epoch,
			ClaimedMS: float64(ev.Owner.Since.Sub(o.killAt).Microseconds()) / 1000})
		if len(o.slow) > slowKept {
			o.slow = o.slow[1:] // events come in time order: the last are the slowest
		}
	}
}

// markKill records that nodes die at at: the streams they own now are the
// orphans whose re-owning is timed. It returns them.
func (o *ownerObserver) markKill(nodes []string, at time.Time) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.killAt = at
	for _, n := range nodes {
		o.killed[n] = true
	}
	var orphans []string
	for path, n := range o.owner {
		if o.killed[n] {
			o.pending[path] = true
			o.orphanN++
			orphans = append(orphans, path)
		}
	}
	return orphans
}

// owned counts the run's streams whose owner is alive.
func (o *ownerObserver) owned() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, node := range o.owner {
		if !o.killed[node] {
			n++
		}
	}
	return n
}

// spread returns the fewest and the most streams a live origin owns.
func (o *ownerObserver) spread(origins []string) (lo, hi int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := map[string]int{}
	for _, node := range o.owner {
		n[node]++
	}
	lo = -1
	for _, name := range origins {
		if o.killed[name] {
			continue
		}
		if lo < 0 || n[name] < lo {
			lo = n[name]
		}
		hi = max(hi, n[name])
	}
	return max(lo, 0), hi
}

func (o *ownerObserver) orphans() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.orphanN
}

func (o *ownerObserver) reowned() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reown)
}

// slowest is the last orphans owned again, slowest first.
func (o *ownerObserver) slowest() []SlowReown {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := slices.Clone(o.slow)
	slices.Reverse(out)
	return out
}

func (o *ownerObserver) reownTimes() []float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]float64(nil), o.reown...)
}

// bucketSeqs reads the last sequence of each registry bucket's stream: how
// many records the bus has stored in it so far.
func (o *ownerObserver) bucketSeqs(ctx context.Context) map[string]uint64 {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[string]uint64{}
	)
	for _, b := range []string{bus.BucketStreams, bus.BucketOwners, bus.BucketState, bus.BucketSources} {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			s, err := o.js.Stream(cctx, "KV_"+b)
			if err != nil {
				return
			}
			info, err := s.Info(cctx)
			if err != nil {
				return
			}
			mu.Lock()
			out[b] = info.State.LastSeq
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (o *ownerObserver) stop() {
	o.cancel()
	<-o.done
	o.conn.close()
}
