package bus

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/media"
)

// Publisher sends one stream's packets on its media subject, splitting units
// larger than the server's max payload. It is safe for concurrent use.
type Publisher struct {
	nc      *nats.Conn
	subject string

	mu  sync.Mutex
	buf []byte

	// Set for a publisher made by a Hub.
	hub       *Hub
	hp        *hubPath
	path      string
	closeOnce sync.Once
	// Outside interest, as last asked (under mu).
	seenSubs int
	recheck  bool
	toNATS   bool

	// Chunked counts access units that needed more than one message.
	Chunked atomic.Uint64
}

// NewPublisher returns a publisher for path's media subject.
func NewPublisher(nc *nats.Conn, path string) *Publisher {
	return &Publisher{nc: nc, subject: MediaSubject(path)}
}

// Publish sends pkt. A publisher made by a Hub hands it to the process's
// subscribers first; they keep it, so it must not be modified afterwards.
// On NATS the payload is copied into the connection's buffer before Publish
// returns.
func (p *Publisher) Publish(pkt *media.Packet) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hub != nil && !p.deliverLocal(pkt) {
		return nil
	}
	maxMsg := int(p.nc.MaxPayload())
	chunks := 0
	buf, err := pkt.Marshal(maxMsg, p.buf, func(b []byte) error {
		chunks++
		return p.nc.Publish(p.subject, b)
	})
	p.buf = buf
	if chunks > 1 {
		p.Chunked.Add(1)
	}
	if err != nil {
		return fmt.Errorf("bus: publish %s: %w", p.subject, err)
	}
	return nil
}

// Close ends a Hub publisher's registration; it is a no-op for others.
// Calling it twice is harmless.
func (p *Publisher) Close() {
	if p.hub != nil {
		p.closeOnce.Do(func() { p.hub.closePublisher(p) })
	}
}

// Subscription delivers a stream's packets, reassembled, in order, to a
// handler that is never called concurrently.
type Subscription struct {
	sub        *nats.Subscription
	asm        media.Assembler
	incomplete atomic.Uint64

	// Set for a subscription made by a Hub: the in-process and the NATS
	// deliveries take mu, so the handler runs for one packet at a time.
	hub          *Hub
	hp           *hubPath
	path         string
	mu           sync.Mutex
	localHandler func(*media.Packet)
	closeOnce    sync.Once
	shadowed     atomic.Uint64

	// Invalid counts messages that did not parse.
	Invalid atomic.Uint64
}

// deliver runs the handler for an in-process packet.
func (s *Subscription) deliver(p *media.Packet) {
	s.mu.Lock()
	s.localHandler(p)
	s.mu.Unlock()
}

// SubscribeMedia subscribes to path's packets. The handler runs on the
// subscription's goroutine and must not block for long: the subscription's
// pending buffer is bounded and NATS drops (and reports) messages past it.
// Every message is a fresh buffer, so the handler owns the packet and its payload.
func SubscribeMedia(nc *nats.Conn, path string, handler func(*media.Packet)) (*Subscription, error) {
	return subscribeMedia(nc, path, handler, &Subscription{})
}

// subscribeMedia subscribes s, whose hub fields are already set.
func subscribeMedia(nc *nats.Conn, path string, handler func(*media.Packet), s *Subscription) (*Subscription, error) {
	sub, err := nc.Subscribe(MediaSubject(path), func(m *nats.Msg) {
		before := s.asm.Incomplete
		pkt, err := s.asm.Push(m.Data)
		if d := s.asm.Incomplete - before; d > 0 {
			s.incomplete.Add(d)
		}
		if err != nil {
			s.Invalid.Add(1)
			return
		}
		if pkt != nil {
			if s.hub != nil {
				s.mu.Lock()
				defer s.mu.Unlock()
			}
			handler(pkt)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", path, err)
	}
	// Bound what may queue for a slow handler: about 10 s of a 20 Mbit/s stream.
	if err := sub.SetPendingLimits(20000, 32<<20); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	s.sub = sub
	return s, nil
}

// Incomplete is the number of access units dropped because a chunk was lost.
func (s *Subscription) Incomplete() uint64 { return s.incomplete.Load() }

// Shadowed is the number of NATS messages a Hub subscription ignored
// because a publisher in this process delivers the stream directly.
func (s *Subscription) Shadowed() uint64 { return s.shadowed.Load() }

// Dropped is the number of messages NATS dropped because the handler fell behind.
func (s *Subscription) Dropped() uint64 {
	n, _ := s.sub.Dropped()
	return uint64(max(n, 0))
}

// Close unsubscribes. For a Hub subscription, once it returns the handler
// is not called again (both deliveries hold mu while they run); NATS may
// still finish a callback of a plain one. Calling it twice is harmless.
func (s *Subscription) Close() {
	_ = s.sub.Unsubscribe() // fails only when already closed
	if s.hub != nil {
		s.closeOnce.Do(func() { s.hub.unsubscribe(s) })
		// A delivery that loaded the old subscriber list may still be running.
		s.mu.Lock()
		s.localHandler = func(*media.Packet) {}
		s.mu.Unlock()
	}
}
