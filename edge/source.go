package edge

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
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

// puller pulls one camera while it holds the camera's lease. This file
// builds, starts and reports pullers; source_lease.go takes, holds and
// hands over the camera's lease; source_pull.go is the RTSP client that
// pulls the camera while the lease is held.
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
