package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/sleep"
)

// Source is a camera the edge pulls over RTSP. Every edge may list the same
// sources: a lease in the registry makes exactly one edge pull each camera,
// and another edge takes the camera over when that one dies.
type Source struct {
	// Name is the stream path the camera publishes as, e.g. "cams/door".
	Name string
	// URL is the camera's rtsp:// or rtsps:// URL; credentials may be in its
	// user info. They never appear in logs, errors or the status.
	URL string
	// Transport is "tcp" (default), "udp" or "auto" (UDP, then TCP when no
	// packet arrives).
	Transport string
	// BackoffMin and BackoffMax bound the wait between reconnection
	// attempts: exponential with full jitter. Defaults 1 s and 30 s.
	BackoffMin, BackoffMax time.Duration
	// OnDemand: the camera is pulled only while viewers ask for it (demand
	// messages from the caches, see bus.ServeDemand), not from the start.
	OnDemand bool
	// CloseAfter stops an on-demand pull this long after the last demand.
	// Default 10 s.
	CloseAfter time.Duration
}

// States of a camera pull (SourceStatus.State).
const (
	SourceIdle       = "idle"       // on demand, and no viewer asks for it
	SourceStandby    = "standby"    // wanted, but another edge holds its lease (or the registry is unreachable)
	SourceConnecting = "connecting" // this edge holds the lease and is (re)connecting to the camera
	SourcePulling    = "pulling"    // connected and playing
)

// SourceStatus is the state of one configured camera pull.
type SourceStatus struct {
	Name string `json:"name"`
	// URL is the camera URL without credentials.
	URL string `json:"url"`
	// Held: this edge holds the camera's pull lease.
	Held bool `json:"held"`
	// Pulling: the camera is connected and playing.
	Pulling bool `json:"pulling"`
	// OnDemand: pulled only while viewers ask for it.
	OnDemand bool `json:"on_demand"`
	// State is idle, standby, connecting or pulling.
	State string `json:"state"`
	// Reconnects counts attempts after a failure.
	Reconnects uint64 `json:"reconnects"`
	// LastError is the last failure, without credentials.
	LastError string `json:"last_error,omitempty"`
}

// stableSession is how long a pull must have played for the backoff to start over.
const stableSession = 5 * time.Second

// puller pulls one camera while it holds the camera's lease.
type puller struct {
	e     *Edge
	src   Source
	u     *base.URL
	url   string // u without credentials
	proto *gortsplib.Protocol
	log   *slog.Logger

	mReconnects prometheus.Counter

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// On demand: demand wakes run; lastDemand is the last demand's time
	// (unix ns); sub receives the demand messages.
	demand     chan struct{}
	lastDemand atomic.Int64
	sub        *nats.Subscription
	// vacated wakes run and hold when the camera's lease changed (released,
	// taken over, a standby edge added) or a node's liveness did: a
	// standby edge tries to take a vacated camera at once instead of at its
	// next periodic attempt (see Edge.watchSources, Edge.watchLiveness).
	vacated chan struct{}

	mu         sync.Mutex
	held       bool
	pulling    bool
	reconnects uint64
	lastErr    string
}

// newPullers validates the sources and builds their pullers.
func (e *Edge) newPullers() ([]*puller, error) { return e.buildPullers(e.Sources) }

// buildPullers validates sources and builds their pullers, not started.
func (e *Edge) buildPullers(sources []Source) ([]*puller, error) {
	names := make(map[string]bool)
	var out []*puller
	for i, src := range sources {
		if err := bus.ValidatePath(src.Name); err != nil {
			return nil, fmt.Errorf("edge: Sources[%d].Name: %w", i, err)
		}
		if names[src.Name] {
			return nil, fmt.Errorf("edge: Sources[%d].Name: %q listed twice", i, src.Name)
		}
		names[src.Name] = true
		u, err := base.ParseURL(src.URL)
		if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
			// The URL itself may hold a password: do not echo it.
			return nil, fmt.Errorf("edge: Sources[%d].URL: not an rtsp:// or rtsps:// URL", i)
		}
		p := &puller{e: e, src: src, u: u, url: redactURL(u), demand: make(chan struct{}, 1), vacated: make(chan struct{}, 1)}
		switch strings.ToLower(src.Transport) {
		case "", "tcp":
			p.proto = new(gortsplib.ProtocolTCP)
		case "udp":
			p.proto = new(gortsplib.ProtocolUDP)
		case "auto":
			p.proto = nil
		default:
			return nil, fmt.Errorf("edge: Sources[%d].Transport: %q is not tcp, udp or auto", i, src.Transport)
		}
		if p.src.BackoffMin <= 0 {
			p.src.BackoffMin = time.Second
		}
		if p.src.BackoffMax <= 0 {
			p.src.BackoffMax = 30 * time.Second
		}
		if p.src.BackoffMax < p.src.BackoffMin {
			return nil, fmt.Errorf("edge: Sources[%d]: BackoffMax below BackoffMin", i)
		}
		if p.src.CloseAfter <= 0 {
			p.src.CloseAfter = 10 * time.Second
		}
		out = append(out, p)
	}
	return out, nil
}

// errRedirectElsewhere refuses a camera's redirect to another host: the
// client would send the camera's credentials there.
var errRedirectElsewhere = errors.New("the camera redirected to another host; refused (pulls stay on the configured host)")

// pinnedDial dials only the configured camera's host (any port): gortsplib
// follows DESCRIBE redirects and keeps the URL's credentials.
func (p *puller) pinnedDial(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil || !strings.EqualFold(host, p.u.Hostname()) {
		p.e.m.rejected.WithLabelValues(ProtocolPull, rejectRedirect).Inc()
		return nil, errRedirectElsewhere
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// redactURL returns u as a string without its user info.
func redactURL(u *base.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// redactedError hides a URL's credentials from an error's text while
// keeping the error chain.
type redactedError struct {
	msg string
	err error
}

func (r *redactedError) Error() string { return r.msg }
func (r *redactedError) Unwrap() error { return r.err }

// redact removes u's credentials from err's text.
func redact(err error, u *base.URL) error {
	if err == nil || u.User == nil {
		return err
	}
	msg := err.Error()
	if pass, ok := u.User.Password(); ok && pass != "" {
		msg = strings.ReplaceAll(msg, pass, "xxxxx")
	}
	if name := u.User.Username(); name != "" {
		msg = strings.ReplaceAll(msg, name+":", "xxxxx:")
		msg = strings.ReplaceAll(msg, name+"@", "xxxxx@")
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// start subscribes to the camera's demand (on demand) and starts pulling.
func (p *puller) start() error {
	p.log = p.e.log.With("source", p.src.Name, "url", p.url)
	p.mReconnects = p.e.m.pullReconnects.WithLabelValues(p.src.Name)
	if p.src.OnDemand {
		sub, err := bus.ServeDemand(p.e.NC, p.src.Name, p.onDemand)
		if err != nil {
			return fmt.Errorf("edge: source %s: %w", p.src.Name, err)
		}
		p.sub = sub
	}
	p.ctx, p.cancel = context.WithCancel(p.e.ctx)
	p.done = make(chan struct{})
	go p.run()
	return nil
}

// close stops pulling, releases the lease and waits.
func (p *puller) close() {
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
	}
	p.cancel()
	<-p.done
}

// onDemand records a viewer's demand and wakes run. It runs on the NATS
// connection's goroutine and never blocks.
func (p *puller) onDemand() {
	p.lastDemand.Store(time.Now().UnixNano())
	p.e.m.demands.WithLabelValues(p.src.Name).Inc()
	select {
	case p.demand <- struct{}{}:
	default:
	}
}

// wanted reports whether the camera is to be pulled: always, or on demand
// while the last demand is less than CloseAfter old.
func (p *puller) wanted() bool {
	if !p.src.OnDemand {
		return true
	}
	last := p.lastDemand.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < p.src.CloseAfter
}

func (p *puller) status() SourceStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := SourceStatus{
		Name: p.src.Name, URL: p.url, Held: p.held, Pulling: p.pulling, OnDemand: p.src.OnDemand,
		Reconnects: p.reconnects, LastError: p.lastErr,
	}
	switch {
	case p.held && p.pulling:
		st.State = SourcePulling
	case p.held:
		st.State = SourceConnecting
	case !p.wanted():
		st.State = SourceIdle
	default:
		st.State = SourceStandby
	}
	return st
}

// run takes the camera's lease and pulls the camera while it holds it.
// Camera leases are held by the holder's liveness, never renewed: while
// another live edge holds the camera this one stands by (listed in the
// lease's standby list), woken by the lease watch and by liveness changes,
// or every ~LeaseTTL/2. When the holder is dead, the live standby edge the
// camera ranks first (rendezvous hashing) takes it over at once by
// compare-and-set on the lease; the others a node TTL later, in case that
// one is gone too.
func (p *puller) run() {
	defer close(p.done)
	live := p.e.live
	failing := false
	var deadSeen sourceRecord // the dead holder's lease this edge waits on
	var deadAt time.Time      // when it was first seen dead
	for {
		if !p.wanted() {
			// On demand and nobody watches: wait for a viewer.
			select {
			case <-p.ctx.Done():
				return
			case <-p.demand:
			}
			continue
		}
		wait := jitter(max(p.e.Registry.LeaseTTL/2, 50*time.Millisecond))
		lease, err := p.attempt(&deadSeen, &deadAt)
		switch {
		case p.ctx.Err() != nil:
			if err == nil && lease != nil {
				p.release(lease)
			}
			return
		case err == nil && lease != nil:
			failing = false
			deadSeen, deadAt = sourceRecord{}, time.Time{}
			p.hold(lease)
			wait = 0 // the lease ended or was lost: look again at once (hold waits while fenced)
		case errors.Is(err, errTryAgain):
			wait = 0
		case errors.Is(err, errDeferred):
			wait = max(time.Until(deadAt.Add(live.TTL)), 0)
		case err == nil || errors.Is(err, bus.ErrOwned):
			failing = false // another edge pulls the camera
		default:
			p.e.m.registryErrors.Inc()
			if !failing {
				p.log.Warn("camera lease unavailable", "err", err)
				failing = true
			}
		}
		if wait > 0 && !p.standBy(wait) {
			return
		}
		if !p.src.OnDemand {
			continue
		}
		select { // a demand that came while this edge held the lease or waited is not news
		case <-p.demand:
		default:
		}
	}
}

// Outcomes of attempt besides a lease and a registry error.
var (
	errTryAgain = errors.New("the camera lease changed: try again at once")
	errDeferred = errors.New("the holder is dead and another standby edge ranks first")
)

// jitter returns a duration in [d/2, 3d/2).
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d) }

// attempt tries once to take the camera: a new lease when none exists, a
// take-over when its holder is dead and this edge ranks first among the
// live standby edges (or waited a node TTL since it was first seen dead:
// deadSeen, deadAt). While a live edge holds it, attempt puts this edge on
// the lease's standby list. A nil lease and nil error: stand by.
func (p *puller) attempt(deadSeen *sourceRecord, deadAt *time.Time) (*bus.Lease, error) {
	live, reg := p.e.live, p.e.Registry
	if !live.Alive() {
		return nil, nil // fenced: not before this edge is alive again
	}
	me := bus.Owner{Node: p.e.Node, Instance: live.Instance()}
	ctx, cancel := context.WithTimeout(p.ctx, registryTimeout)
	defer cancel()
	lease, err := reg.AcquireSource(ctx, p.src.Name, me)
	if !errors.Is(err, bus.ErrOwned) {
		return lease, err
	}
	cur, rev, err := reg.Source(ctx, p.src.Name)
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return nil, errTryAgain // released meanwhile (or still being created)
	case err != nil:
		return nil, err
	}
	if cur.Node == me.Node && cur.Instance == me.Instance {
		// This edge's own lease (an acquire whose reply was lost): hold it.
		return &bus.Lease{Key: p.src.Name, Owner: *cur, Rev: rev}, nil
	}
	if live.Holds(*cur) {
		if !slices.Contains(cur.Standby, p.e.Node) {
			if _, err := reg.StandBySource(ctx, p.src.Name, *cur, rev, p.e.Node); err != nil && !errors.Is(err, bus.ErrLeaseLost) {
				return nil, err
			}
		}
		return nil, bus.ErrOwned
	}
	// The holder is dead.
	rec := sourceRecord{owner: *cur, rev: rev}
	if !deadSeen.same(rec) {
		*deadSeen, *deadAt = rec, time.Now()
	}
	standby := liveStandby(cur.Standby, live.NodesWith(bus.RoleEdge), p.e.Node)
	if !p.first(standby) && time.Since(*deadAt) < live.TTL {
		return nil, errDeferred
	}
	me.Standby = standby
	lease, err = reg.TakeOverSource(ctx, p.src.Name, *cur, rev, me)
	if errors.Is(err, bus.ErrOwned) {
		return nil, errTryAgain // taken by another standby edge, or released
	}
	if err == nil {
		p.log.Info("camera taken over from a dead edge", "from", cur.Node, "epoch", lease.Owner.Epoch)
	}
	return lease, err
}

// liveStandby returns the live edges of standby, without self, each once.
func liveStandby(standby, liveEdges []string, self string) []string {
	var out []string
	for _, n := range standby {
		if n != self && slices.Contains(liveEdges, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// first says whether this edge ranks first for the camera among itself
// and the others listed (rendezvous hashing, as origins rank streams).
func (p *puller) first(others []string) bool {
	mine := bus.Rank(p.e.Node, p.src.Name)
	for _, n := range others {
		if bus.Rank(n, p.src.Name) > mine {
			return false
		}
	}
	return true
}

// standBy waits d, or less when the camera's lease changes meanwhile or a
// node's liveness does; false when the puller closes.
func (p *puller) standBy(d time.Duration) bool {
	select { // a change seen while this edge held the lease or tried is not news
	case <-p.vacated:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
	case <-p.vacated:
	}
	return true
}

// vacate wakes the puller: the camera's lease changed, or a node's
// liveness did.
func (p *puller) vacate() {
	select {
	case p.vacated <- struct{}{}:
	default:
	}
}

// sourceRecord is a camera lease as the watch last showed it.
type sourceRecord struct {
	owner bus.Owner
	rev   uint64
}

// same says whether r and o are the same lease (holder instance and
// epoch; a standby edge added to its list does not make another).
func (r sourceRecord) same(o sourceRecord) bool {
	return r.owner.Node == o.owner.Node && r.owner.Instance == o.owner.Instance && r.owner.Epoch == o.owner.Epoch
}

// sourceRecord returns the camera lease of name as the watch last showed it.
func (e *Edge) sourceRecord(name string) (sourceRecord, bool) {
	e.srcMu.Lock()
	defer e.srcMu.Unlock()
	r, ok := e.sources[name]
	return r, ok
}

// watchSources follows the camera leases: it keeps the last record of
// each (a holder learns it lost its lease) and wakes the puller of a camera
// whose lease changed: released by an edge that stops or drains, taken
// over, or given a standby edge. Until the watch is up, and if it fails,
// pullers look every ~LeaseTTL/2.
func (e *Edge) watchSources() {
	defer e.bgWG.Done()
	for attempt := 0; e.ctx.Err() == nil; attempt++ {
		if attempt > 0 && !sleep.For(e.ctx, time.Second) {
			return
		}
		events, err := e.Registry.WatchSources(e.ctx)
		if err != nil {
			e.log.Debug("watching the camera leases failed; retrying", "err", err)
			continue
		}
		e.srcMu.Lock()
		clear(e.sources) // the watch replays the current leases
		e.srcMu.Unlock()
		for ev := range events {
			e.srcMu.Lock()
			if ev.Owner == nil {
				delete(e.sources, ev.Path)
			} else {
				e.sources[ev.Path] = sourceRecord{owner: *ev.Owner, rev: ev.Rev}
			}
			e.srcMu.Unlock()
			e.pmu.Lock()
			for _, p := range e.pullers {
				if p.src.Name == ev.Path {
					p.vacate()
				}
			}
			e.pmu.Unlock()
		}
	}
}

func (p *puller) release(l *bus.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), registryTimeout)
	defer cancel()
	if err := p.e.Registry.ReleaseSource(ctx, l); err != nil && !errors.Is(err, bus.ErrLeaseLost) {
		p.log.Debug("camera lease not released; it counts as free once this edge's liveness ends", "err", err)
	}
}

// hold pulls the camera while the lease is this edge's. It returns when
// the puller closes or the camera is no longer wanted (the lease released),
// when the lease watch shows another holder, or when this edge's own
// liveness lapsed (fenced: its lease is dead for everyone, so another
// edge may pull the camera already), after the pull stopped.
func (p *puller) hold(l *bus.Lease) {
	live := p.e.live
	p.setHeld(true)
	p.e.m.sourcesHeld.Inc()
	p.log.Info("camera lease acquired; pulling", "on_demand", p.src.OnDemand, "epoch", l.Owner.Epoch)
	if p.src.OnDemand {
		p.e.m.demandPulls.WithLabelValues(p.src.Name).Inc()
	}

	pullCtx, stopPull := context.WithCancel(p.ctx)
	pullDone := make(chan struct{})
	go func() {
		defer close(pullDone)
		p.pullLoop(pullCtx)
	}()
	defer func() {
		stopPull()
		<-pullDone
		p.setHeld(false)
		p.e.m.sourcesHeld.Dec()
	}()

	mine := sourceRecord{owner: l.Owner}
	ticker := time.NewTicker(max(live.TTL/8, 10*time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case <-p.ctx.Done():
			stopPull()
			<-pullDone
			p.release(l)
			p.log.Info("camera lease released")
			return
		case <-ticker.C:
		case <-p.vacated:
		}
		if live.Instance() != l.Owner.Instance || !live.Alive() {
			p.log.Warn("this edge's liveness lapsed: camera pull stopped (another edge may hold it now)")
			return
		}
		if rec, ok := p.e.sourceRecord(p.src.Name); ok && !rec.same(mine) && rec.owner.Epoch >= l.Owner.Epoch {
			p.log.Warn("camera lease lost; stopping the pull", "holder", rec.owner.Node)
			return
		}
		if !p.wanted() {
			stopPull()
			<-pullDone
			p.release(l)
			p.log.Info("no viewer asked for the camera; pull stopped and lease released", "close_after", p.src.CloseAfter)
			return
		}
	}
}

func (p *puller) setHeld(v bool) {
	p.mu.Lock()
	p.held = v
	p.mu.Unlock()
}

func (p *puller) setPulling(v bool) {
	p.mu.Lock()
	p.pulling = v
	p.mu.Unlock()
}

// pullLoop pulls the camera until ctx ends, reconnecting with backoff.
func (p *puller) pullLoop(ctx context.Context) {
	retry := newPullBackoff(p.src.BackoffMin, p.src.BackoffMax)
	lastMsg := ""
	for {
		began := time.Now()
		played, err := p.pullOnce(ctx)
		p.setPulling(false)
		if ctx.Err() != nil {
			return
		}
		if played && time.Since(began) >= stableSession {
			retry.Reset()
		}
		msg := "camera pull ended"
		if err != nil {
			msg = err.Error()
		}
		p.mu.Lock()
		p.reconnects++
		p.lastErr = msg
		p.mu.Unlock()
		p.mReconnects.Inc()
		// The same failure again (a camera that stays down) is logged at debug level.
		level := slog.LevelWarn
		if msg == lastMsg {
			level = slog.LevelDebug
		}
		lastMsg = msg
		d := max(retry.NextBackOff(), minPullBackoff)
		p.log.Log(ctx, level, "camera pull failed; reconnecting", "err", err, "retry_in", d.Round(time.Millisecond))
		if !sleep.For(ctx, d) {
			return
		}
	}
}

// pullOnce connects to the camera, publishes it until the connection ends
// and reports whether it got to play. Errors carry no credentials.
func (p *puller) pullOnce(ctx context.Context) (played bool, err error) {
	e := p.e
	attempt, kick := context.WithCancel(ctx)
	defer kick()
	c := &gortsplib.Client{
		Scheme:       p.u.Scheme,
		Host:         p.u.Host,
		Protocol:     p.proto,
		ReadTimeout:  e.ReadTimeout,
		WriteTimeout: e.ReadTimeout,
		OnTransportSwitch: func(err error) {
			p.log.Debug("camera transport switched", "err", redact(err, p.u))
		},
		DialContext:   p.pinnedDial,
		OnPacketsLost: func(n uint64) { e.m.packetsLost.WithLabelValues(ProtocolPull).Add(float64(n)) },
		OnDecodeError: func(error) { e.m.decodeErrors.WithLabelValues(ProtocolPull).Inc() },
	}
	if err := c.Start(); err != nil {
		return false, redact(fmt.Errorf("start client: %w", err), p.u)
	}
	stop := context.AfterFunc(attempt, c.Close)
	defer func() {
		stop()
		c.Close()
	}()

	desc, _, err := c.Describe(p.u)
	if err != nil {
		return false, redact(fmt.Errorf("describe: %w", err), p.u)
	}
	tracks, ignored := rtpTracks(desc)
	if len(ignored) > 0 {
		p.log.Debug("ignoring unsupported camera tracks", "codecs", strings.Join(ignored, ","))
	}
	if len(tracks) == 0 {
		return false, errors.New("camera offers no supported track (H264, H265, AAC, Opus)")
	}
	for _, tr := range tracks {
		if _, err := c.Setup(desc.BaseURL, tr.media, 0, 0); err != nil {
			return false, redact(fmt.Errorf("setup: %w", err), p.u)
		}
	}
	s, err := e.openStream(streamRequest{
		path: p.src.Name, protocol: ProtocolPull, remote: p.url,
		tracks: trackInfos(tracks), kick: kick,
	})
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", p.src.Name, err)
	}
	for i, tr := range tracks {
		if err := tr.attach(c, s, i); err != nil {
			s.close(err)
			return false, err
		}
	}
	if _, err := c.Play(nil); err != nil {
		err = redact(fmt.Errorf("play: %w", err), p.u)
		s.close(err)
		return false, err
	}
	p.setPulling(true)
	err = c.Wait()
	if attempt.Err() != nil {
		err = nil // kicked or closing
	} else {
		err = redact(fmt.Errorf("camera connection: %w", err), p.u)
	}
	s.close(err)
	return true, err
}
