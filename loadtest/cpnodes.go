package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/crashdial"
	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/origin"
)

// simRegistryTimeout bounds one registry call of a simulated edge, as the
// edge's registryTimeout does.
const simRegistryTimeout = 5 * time.Second

// simConn is a simulated node's pair of bus connections, as a real node
// has them (internal/node startBus): one for media and GOP requests, one
// for the registry alone; and the registry on the second.
type simConn struct {
	nc, regNC *nats.Conn
	reg       *bus.Registry
	dialer    *crashdial.Dialer
}

// dialSim connects a simulated node named name and starts its registry.
func dialSim(ctx context.Context, urls []string, name string, rc registryConfig) (*simConn, error) {
	d := &crashdial.Dialer{}
	opts := bus.ConnOptions{URLs: urls, Name: name, ConnectTimeout: 10 * time.Second, Dialer: d, Log: slog.New(slog.DiscardHandler)}
	nc, err := bus.Connect(opts)
	if err != nil {
		return nil, err
	}
	opts.Name = name + "-registry"
	regNC, err := bus.Connect(opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := &simConn{nc: nc, regNC: regNC, dialer: d}
	if c.reg, err = rc.start(ctx, regNC); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// crash cuts both connections' sockets at once, as the kernel does when
// it reaps a process killed with SIGKILL: nothing more is written, nothing
// flushed. close must follow soon, before the clients dial again.
func (c *simConn) crash() { c.dialer.Cut() }

// close closes both connections (see internal/node Crash); after crash it
// sends nothing.
func (c *simConn) close() {
	c.nc.Close()
	c.regNC.Close()
}

// registryOps is how many messages the node's registry connection sent:
// one per registry operation (create, update, put, delete, get), plus the
// few API requests that open its watches.
func (c *simConn) registryOps() uint64 { return c.regNC.Stats().OutMsgs }

// registryIn is how many messages the registry connection received: the
// replies, and every change its watches deliver.
func (c *simConn) registryIn() uint64 { return c.regNC.Stats().InMsgs }

// registryConfig is what every simulated node's bus.Registry gets.
type registryConfig struct {
	replicas int
	leaseTTL time.Duration
	nodeTTL  time.Duration // the nodes' bus.node_ttl
	// metrics receives every origin's collectors (labelled by node).
	metrics prometheus.Registerer
}

func (rc registryConfig) start(ctx context.Context, nc *nats.Conn) (*bus.Registry, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	r := &bus.Registry{JS: js, Replicas: rc.replicas, LeaseTTL: rc.leaseTTL}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// simOrigin is a real origin.Origin (its claimer, its node liveness, its
// watches: the registry calls at the cadence the product makes them) on
// connections of its own. It gets no media: its streams idle, which costs
// the registry nothing more or less than a stream with packets (the
// playlist state is written only when it changes).
type simOrigin struct {
	name string
	conn *simConn
	o    *origin.Origin
}

func startSimOrigin(ctx context.Context, urls []string, name string, rc registryConfig, capacity int, standby []string, log *slog.Logger) (*simOrigin, error) {
	c, err := dialSim(ctx, urls, name, rc)
	if err != nil {
		return nil, err
	}
	o := &origin.Origin{
		Node:        name,
		NC:          c.nc,
		Registry:    c.reg,
		HTTPAddress: "127.0.0.1:0",
		Capacity:    capacity,
		Standby:     standby,
		NodeTTL:     rc.nodeTTL,
		Metrics:     rc.metrics,
		Log:         log.With("node", name),
	}
	if err := o.Start(); err != nil {
		c.close()
		return nil, fmt.Errorf("origin %s: %w", name, err)
	}
	return &simOrigin{name: name, conn: c, o: o}, nil
}

// simEdge stands in for an edge with publishers: the edge's node liveness
// (a real bus.Liveness with the edge role, a heartbeat every NodeTTL/4)
// and, per stream, the registry calls edge/stream.go makes (ClaimStream
// when the publisher starts; UpdateStream only when the record changes,
// here when the edge's liveness lapsed and drew a new instance) and a GOP
// responder. It cannot be the real edge.Edge: that one registers a stream
// only for a live RTSP/RTMP publisher and drops it after
// edge.media_timeout without packets.
type simEdge struct {
	name string
	conn *simConn
	live *bus.Liveness
	wg   sync.WaitGroup

	mu     sync.Mutex
	errs   int
	lastEr error
	recs   map[string]*simRecord
}

// simRecord is one stream record a simulated edge wrote.
type simRecord struct {
	info *bus.StreamInfo
	rev  uint64
}

func startSimEdge(ctx context.Context, urls []string, name string, rc registryConfig, log *slog.Logger) (*simEdge, error) {
	c, err := dialSim(ctx, urls, name, rc)
	if err != nil {
		return nil, err
	}
	l := &bus.Liveness{NC: c.nc, Node: name, Roles: []string{bus.RoleEdge}, TTL: rc.nodeTTL, Log: log.With("node", name)}
	if err := l.Start(); err != nil {
		c.close()
		return nil, fmt.Errorf("edge %s: %w", name, err)
	}
	return &simEdge{name: name, conn: c, live: l, recs: map[string]*simRecord{}}, nil
}

// follow rewrites the edge's records when its liveness drew a new
// instance, as the edge's watchLiveness and stream.update do: an update by
// compare-and-set, or a new claim when an origin removed the record
// meanwhile (it named the dead instance); a failure is retried a second
// later. Until ctx ends.
func (e *simEdge) follow(ctx context.Context) {
	changed := e.live.Watch()
	e.wg.Go(func() {
		retry := time.NewTicker(time.Second)
		defer retry.Stop()
		dead := func(i *bus.StreamInfo) bool { return !e.live.HoldsStream(i) }
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-retry.C:
			}
			if !e.live.Alive() {
				continue
			}
			inst := e.live.Instance()
			e.mu.Lock()
			var stale []*simRecord
			for _, r := range e.recs {
				if r.info.Instance != inst {
					stale = append(stale, r)
				}
			}
			e.mu.Unlock()
			for _, r := range stale {
				info := *r.info
				info.Instance = inst
				cctx, cancel := context.WithTimeout(ctx, simRegistryTimeout)
				rev, err := e.conn.reg.UpdateStream(cctx, &info, r.rev)
				if errors.Is(err, bus.ErrLeaseLost) {
					rev, err = e.conn.reg.ClaimStream(cctx, &info, dead)
				}
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						e.fail(err)
					}
					continue
				}
				e.mu.Lock()
				r.info, r.rev = &info, rev
				e.mu.Unlock()
			}
		}
	})
}

// publish starts one stream at at and keeps its record until ctx ends.
func (e *simEdge) publish(ctx context.Context, path string, at time.Time) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		e.keep(ctx, path)
	}()
}

// keep claims path's record and serves its GOP until ctx ends, as the
// edge does for a publisher. The record is not renewed: it holds while the
// edge's liveness does.
func (e *simEdge) keep(ctx context.Context, path string) {
	info := simStreamInfo(path, e.name)
	info.Instance = e.live.Instance()
	sub, err := bus.ServeGOP(e.conn.nc, path, func() []*media.Packet { return nil })
	if err != nil {
		e.fail(err)
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	dead := func(i *bus.StreamInfo) bool { return !e.live.HoldsStream(i) }
	for {
		cctx, cancel := context.WithTimeout(ctx, simRegistryTimeout)
		rev, err := e.conn.reg.ClaimStream(cctx, info, dead)
		cancel()
		if err == nil {
			e.mu.Lock()
			e.recs[path] = &simRecord{info: info, rev: rev}
			e.mu.Unlock()
			break
		}
		if ctx.Err() != nil {
			return
		}
		e.fail(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	<-ctx.Done()
}

func (e *simEdge) fail(err error) {
	e.mu.Lock()
	e.errs++
	e.lastEr = err
	e.mu.Unlock()
}

// errors returns how many registry calls failed, and the last failure.
func (e *simEdge) errors() (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errs, e.lastEr
}

// simStreamInfo is a stream record the size of a real one: an H264 track
// with its parameter sets and an AAC track.
func simStreamInfo(path, edge string) *bus.StreamInfo {
	return &bus.StreamInfo{
		Path:       path,
		Generation: uint64(time.Now().UnixNano()),
		Edge:       edge,
		Protocol:   "rtsp",
		Tracks: []bus.TrackInfo{
			{ID: 0, Codec: media.CodecH264, ClockRate: 90000,
				SPS: []byte{0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60},
				PPS: []byte{0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0}},
			{ID: 1, Codec: media.CodecAAC, ClockRate: 48000, AudioConfig: []byte{0x11, 0x90}, Channels: 2},
		},
		Started: time.Now().UTC(),
	}
}
