package bus

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/media"
)

// Hub is the in-process Media, for an edge and an origin that run in one
// process (streamgrid run). A packet an edge of this process publishes
// reaches this process's subscribers by a function call: no marshalling, no
// copy, no socket, no goroutine hand-off. It still goes on NATS when
// somebody outside the process subscribes to the stream (an origin of
// another node that claimed it), so the all-in-one stays a full member of a
// cluster.
//
// Subscriptions made through the hub also subscribe on NATS, for streams
// published by edges of other processes; while a stream has a publisher in
// this process, its NATS copies are ignored, so a subscriber never sees a
// packet twice.
//
// Packets delivered in process are shared: the publisher and every
// subscriber see the same *media.Packet and payload, and none may modify
// them.
type Hub struct {
	// NC is the process's media connection. Required.
	NC *nats.Conn
	// Interest, when set, returns how many subscriptions the NATS server
	// holds for a subject (the embedded server's account interest). A
	// published packet then goes on NATS only when there are more than this
	// process's own. Nil: unknown, and every packet is also published on NATS.
	Interest func(subject string) int
	// Subscriptions, when set with Interest, returns how many subscriptions
	// the server holds in all (the account's total). A publisher asks
	// Interest again only when that number moved, or after Recheck: the
	// exact question walks the server's subject tree, and at a packet per
	// access unit it was 4 % of the all-in-one's CPU.
	Subscriptions func() int

	mu    sync.Mutex
	paths map[string]*hubPath
}

// hubPath is one stream's entry in the hub; it lives while it has a
// publisher or a subscriber.
type hubPath struct {
	publishers atomic.Int32
	natsSubs   atomic.Int32                       // this process's NATS subscriptions to the subject
	subs       atomic.Pointer[[]*hubSubscription] // copy on write, under Hub.mu
	refs       int                                // under Hub.mu
}

// acquire returns path's entry, creating it. Called under h.mu.
func (h *Hub) acquire(path string) *hubPath {
	if h.paths == nil {
		h.paths = make(map[string]*hubPath)
	}
	hp := h.paths[path]
	if hp == nil {
		hp = &hubPath{}
		hp.subs.Store(&[]*hubSubscription{})
		h.paths[path] = hp
	}
	hp.refs++
	return hp
}

// release drops a reference to path's entry. Called under h.mu.
func (h *Hub) release(path string, hp *hubPath) {
	hp.refs--
	if hp.refs == 0 && h.paths[path] == hp {
		delete(h.paths, path)
	}
}

// hubPublisher is a Hub's publication: the process's subscribers first,
// NATS when somebody outside the process subscribes.
type hubPublisher struct {
	nats      *Publisher // its mu also guards the interest fields below
	hub       *Hub
	hp        *hubPath
	path      string
	closeOnce sync.Once

	// Outside interest, as last asked (under nats.mu).
	seenSubs int
	recheck  bool
	toNATS   bool
}

// NewPublisher returns a publisher for path that delivers to this process's
// subscribers directly. Close it when the publication ends.
func (h *Hub) NewPublisher(path string) MediaPublisher {
	h.mu.Lock()
	hp := h.acquire(path)
	hp.publishers.Add(1)
	h.mu.Unlock()
	return &hubPublisher{nats: NewPublisher(h.NC, path), hub: h, hp: hp, path: path, recheck: true}
}

// Publish hands pkt to the process's subscribers, which keep it (so it must
// not be modified afterwards), then puts it on NATS if somebody outside
// the process subscribes. On NATS the payload is copied into the
// connection's buffer before Publish returns.
func (p *hubPublisher) Publish(pkt *media.Packet) error {
	p.nats.mu.Lock()
	defer p.nats.mu.Unlock()
	for _, s := range *p.hp.subs.Load() {
		s.deliver(pkt)
	}
	if !p.outside() {
		return nil
	}
	return p.nats.send(pkt)
}

// outside reports whether a packet must go on NATS as well. Called under
// p.nats.mu.
func (p *hubPublisher) outside() bool {
	h := p.hub
	if h.Interest == nil {
		return true
	}
	if h.Subscriptions == nil {
		return h.Interest(p.nats.subject) > int(p.hp.natsSubs.Load())
	}
	// A subscription added and another removed between two packets leave the
	// total unchanged; an origin elsewhere that subscribes then asks for the
	// GOP, and the edge calls Recheck before it answers.
	if n := h.Subscriptions(); n != p.seenSubs || p.recheck {
		p.seenSubs, p.recheck = n, false
		p.toNATS = h.Interest(p.nats.subject) > int(p.hp.natsSubs.Load())
	}
	return p.toNATS
}

// Recheck makes the publisher ask the server about outside interest again
// before its next packet. The edge calls it when it answers a GOP request:
// the origin asking has subscribed to the stream just before, so every
// packet after the GOP it gets also reaches it.
func (p *hubPublisher) Recheck() {
	p.nats.mu.Lock()
	p.recheck = true
	p.nats.mu.Unlock()
}

// Close removes the publication from its path. Calling it twice is harmless.
func (p *hubPublisher) Close() {
	p.closeOnce.Do(func() {
		h := p.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		p.hp.publishers.Add(-1)
		h.release(p.path, p.hp)
	})
}

// hubSubscription is a Hub's subscription: packets of this process's
// publishers by function call, the others' through its NATS subscription.
// Both deliveries take mu, so the handler runs for one packet at a time.
type hubSubscription struct {
	nats      *Subscription
	hub       *Hub
	hp        *hubPath
	path      string
	closeOnce sync.Once
	shadowed  atomic.Uint64

	mu      sync.Mutex
	handler func(*media.Packet) // a no-op once closed
}

// SubscribeMedia subscribes to path's packets from publishers in this
// process and, through NATS, from edges elsewhere. The handler is called
// with one packet at a time, from the publisher's goroutine or the NATS
// subscription's; it must not block and must not modify the packet. Once
// Close returns, the handler is not called again.
func (h *Hub) SubscribeMedia(path string, handler func(*media.Packet)) (MediaSubscription, error) {
	h.mu.Lock()
	hp := h.acquire(path)
	h.mu.Unlock()
	s := &hubSubscription{hub: h, hp: hp, path: path, handler: handler}
	ns, err := SubscribeMedia(h.NC, path, func(p *media.Packet) {
		if hp.publishers.Load() > 0 {
			s.shadowed.Add(1) // the in-process copy was (or will be) delivered
			return
		}
		s.deliver(p)
	})
	if err != nil {
		h.mu.Lock()
		h.release(path, hp)
		h.mu.Unlock()
		return nil, err
	}
	s.nats = ns
	h.mu.Lock()
	old := *hp.subs.Load()
	subs := make([]*hubSubscription, len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, s)
	hp.subs.Store(&subs)
	hp.natsSubs.Add(1)
	h.mu.Unlock()
	return s, nil
}

// deliver runs the handler for one packet.
func (s *hubSubscription) deliver(p *media.Packet) {
	s.mu.Lock()
	s.handler(p)
	s.mu.Unlock()
}

// Shadowed is the number of NATS messages the subscription ignored
// because a publisher in this process delivers the stream directly.
func (s *hubSubscription) Shadowed() uint64 { return s.shadowed.Load() }

// Close unsubscribes; once it returns, the handler is not called again.
// Calling it twice is harmless.
func (s *hubSubscription) Close() {
	s.nats.Close()
	s.closeOnce.Do(func() {
		h := s.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		old := *s.hp.subs.Load()
		subs := make([]*hubSubscription, 0, len(old))
		for _, o := range old {
			if o != s {
				subs = append(subs, o)
			}
		}
		s.hp.subs.Store(&subs)
		s.hp.natsSubs.Add(-1)
		h.release(s.path, s.hp)
	})
	// A delivery that loaded the old subscriber list may still be running.
	s.mu.Lock()
	s.handler = func(*media.Packet) {}
	s.mu.Unlock()
}
