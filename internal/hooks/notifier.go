// Package hooks delivers events to integrators as HTTP webhooks: one POST of
// JSON per event (stream ready, gone, publisher refused, failover), in the
// spirit of nginx-rtmp's on_publish/on_done and MediaMTX's runOnReady.
//
// Events come from the media path, so Notify never blocks: it puts the event
// in a bounded queue and, when the queue is full, drops it and counts the
// drop. One goroutine delivers the queue in order, each attempt bounded by a
// timeout and retried with exponential backoff.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgrid/streamgrid/internal/promreg"
)

// Config says where events go and how hard to try.
type Config struct {
	// URL receives the events; "" sends none (a reload may set it later).
	URL string
	// Events are the kinds sent (ready, gone, refused, failover).
	Events []string
	// Timeout bounds one attempt. Default 5 s.
	Timeout time.Duration
	// Retries after a failed attempt. 0: one attempt only.
	Retries int
}

// Event is one webhook body.
type Event struct {
	Event string    `json:"event"` // ready, gone, refused, failover
	Time  time.Time `json:"time"`
	Node  string    `json:"node"` // the node that saw it
	Path  string    `json:"path"`
	// Publication (ready, gone, refused).
	Protocol   string  `json:"protocol,omitempty"` // rtsp, rtmp or pull
	Remote     string  `json:"remote,omitempty"`   // publisher address; camera URL without credentials
	Generation uint64  `json:"generation,omitempty"`
	Tracks     string  `json:"tracks,omitempty"`
	Reason     string  `json:"reason,omitempty"`
	Duration   float64 `json:"duration_seconds,omitempty"` // gone: how long it was live
	// Ownership (failover).
	Origin         string `json:"origin,omitempty"`
	PreviousOrigin string `json:"previous_origin,omitempty"`
	Epoch          uint64 `json:"epoch,omitempty"`
}

// Notifier delivers events. Fill in the fields, then Start; Update changes
// the configuration while it runs.
type Notifier struct {
	// Node names this node in every event; Node and Role label the metrics.
	Node, Role string
	Config     Config
	// QueueSize bounds the events waiting for delivery. Default 1024.
	QueueSize int
	// BackoffInitial is the first retry's wait (then doubling, jittered, up
	// to 30 s). Default 500 ms.
	BackoffInitial time.Duration
	// Client posts the events. Default: a client without redirects.
	Client *http.Client
	Log    *slog.Logger
	// Metrics receives the collectors. Default: a private registry.
	Metrics prometheus.Registerer

	cfg    atomic.Pointer[Config]
	queue  chan Event
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	delivered, failed, dropped, retries *prometheus.CounterVec // event
	queued                              prometheus.GaugeFunc
}

// Start validates the configuration, registers the metrics and starts the delivery goroutine.
func (n *Notifier) Start() error {
	if err := validate(n.Config); err != nil {
		return err
	}
	if n.QueueSize <= 0 {
		n.QueueSize = 1024
	}
	if n.BackoffInitial <= 0 {
		n.BackoffInitial = 500 * time.Millisecond
	}
	if n.Client == nil {
		n.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if n.Log == nil {
		n.Log = slog.Default()
	}
	n.Log = n.Log.With("component", "hooks")
	if n.Metrics == nil {
		n.Metrics = prometheus.NewRegistry()
	}
	cfg := withDefaults(n.Config)
	n.cfg.Store(&cfg)
	n.queue = make(chan Event, n.QueueSize)
	labels := prometheus.Labels{"node": n.Node, "role": n.Role}
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "streamgrid", Subsystem: "hooks", Name: name, Help: help, ConstLabels: labels,
		}, []string{"event"})
	}
	n.delivered = vec("delivered_total", "Webhook events the receiver accepted (2xx).")
	n.failed = vec("failed_total", "Webhook events given up after every retry.")
	n.dropped = vec("dropped_total", "Webhook events dropped because the delivery queue was full.")
	n.retries = vec("retries_total", "Webhook delivery attempts after a failure.")
	n.queued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "streamgrid", Subsystem: "hooks", Name: "queued", ConstLabels: labels,
		Help: "Webhook events waiting for delivery.",
	}, func() float64 { return float64(len(n.queue)) })
	if err := promreg.Register(n.Metrics, n.collectors()...); err != nil {
		return fmt.Errorf("hooks: metrics: %w", err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.done = make(chan struct{})
	go n.run()
	return nil
}

// Close stops delivering; events still queued are dropped. Calling it twice is harmless.
func (n *Notifier) Close() {
	if n.done == nil {
		return
	}
	n.once.Do(func() {
		n.cancel()
		<-n.done
		promreg.Unregister(n.Metrics, n.collectors()...)
	})
}

func (n *Notifier) collectors() []prometheus.Collector {
	return []prometheus.Collector{n.delivered, n.failed, n.dropped, n.retries, n.queued}
}

// Update replaces the URL, events, timeout and retries (a configuration
// reload). Events already queued go to the new URL.
func (n *Notifier) Update(c Config) error {
	if err := validate(c); err != nil {
		return err
	}
	c = withDefaults(c)
	n.cfg.Store(&c)
	n.Log.Info("hooks configuration changed", "url_set", c.URL != "", "events", c.Events)
	return nil
}

func validate(c Config) error {
	if c.Retries < 0 {
		return errors.New("hooks: Retries must not be negative")
	}
	return nil
}

func withDefaults(c Config) Config {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	c.Events = slices.Clone(c.Events)
	return c
}

// Notify queues ev for delivery when hooks are on and its kind is wanted.
// It never blocks: with the queue full the event is dropped and counted.
func (n *Notifier) Notify(ev Event) {
	if n == nil || n.done == nil {
		return
	}
	c := n.cfg.Load()
	if c.URL == "" || !slices.Contains(c.Events, ev.Event) {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Node = n.Node
	select {
	case n.queue <- ev:
	default:
		n.dropped.WithLabelValues(ev.Event).Inc()
	}
}

func (n *Notifier) run() {
	defer close(n.done)
	for {
		select {
		case <-n.ctx.Done():
			return
		case ev := <-n.queue:
			n.deliver(ev)
		}
	}
}

// deliver posts ev, retrying with backoff; it gives up after the retries,
// at once on a 4xx other than 408 and 429, and when the notifier closes.
func (n *Notifier) deliver(ev Event) {
	c := n.cfg.Load()
	if c.URL == "" {
		return
	}
	body, err := json.Marshal(ev)
	if err != nil {
		n.failed.WithLabelValues(ev.Event).Inc()
		return
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = n.BackoffInitial
	eb.MaxInterval = 30 * time.Second
	op := func() (struct{}, error) { return struct{}{}, n.post(c, body) }
	_, err = backoff.Retry(n.ctx, op,
		backoff.WithBackOff(eb),
		backoff.WithMaxTries(uint(c.Retries)+1),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, d time.Duration) {
			n.retries.WithLabelValues(ev.Event).Inc()
			n.Log.Debug("webhook delivery failed; retrying", "event", ev.Event, "path", ev.Path, "retry_in", d, "err", err)
		}))
	if err != nil {
		n.failed.WithLabelValues(ev.Event).Inc()
		if n.ctx.Err() == nil {
			n.Log.Warn("webhook event not delivered", "event", ev.Event, "path", ev.Path, "err", err)
		}
		return
	}
	n.delivered.WithLabelValues(ev.Event).Inc()
}

// post makes one attempt.
func (n *Notifier) post(c *Config, body []byte) error {
	ctx, cancel := context.WithTimeout(n.ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "streamgrid-hooks")
	resp, err := n.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return backoff.Permanent(fmt.Errorf("receiver answered %s", resp.Status))
	}
	return fmt.Errorf("receiver answered %s", resp.Status)
}
