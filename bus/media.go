package bus

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/media"
)

// Media carries streams' packets from the edges that publish them to the
// origins that subscribe. It has two implementations, and the node picks
// one when it starts:
//
//   - NATSMedia, the distributed one: every packet goes on the stream's
//     media subject, for roles in separate processes;
//   - Hub, the in-process one (streamgrid run): a packet reaches the
//     process's subscribers by a function call, and goes on NATS only for
//     subscribers elsewhere in the cluster.
type Media interface {
	// NewPublisher returns a publisher for path. Close it when the
	// publication ends.
	NewPublisher(path string) MediaPublisher
	// SubscribeMedia subscribes handler to path's packets. The handler is
	// called with one packet at a time and must not block for long; it
	// must not modify the packet (a Hub shares it with the publisher and
	// every other subscriber).
	SubscribeMedia(path string, handler func(*media.Packet)) (MediaSubscription, error)
}

// MediaPublisher sends one stream's packets. It is safe for concurrent use.
type MediaPublisher interface {
	// Publish sends pkt, which must not be modified afterwards.
	Publish(pkt *media.Packet) error
	// Recheck tells the publisher that a subscriber elsewhere may have
	// just appeared (see Hub); a NATS publisher publishes every packet
	// anyway and ignores it.
	Recheck()
	// Close ends the publication. Calling it twice is harmless.
	Close()
}

// MediaSubscription is a subscription to one stream's packets.
type MediaSubscription interface {
	// Close unsubscribes. Calling it twice is harmless.
	Close()
}

// NATSMedia is the distributed Media: every packet goes through the NATS
// server on the stream's media subject.
type NATSMedia struct {
	// NC is the media connection. Required.
	NC *nats.Conn
}

// NewPublisher returns a NATS publisher for path.
func (m NATSMedia) NewPublisher(path string) MediaPublisher { return NewPublisher(m.NC, path) }

// SubscribeMedia subscribes to path's media subject (see SubscribeMedia).
func (m NATSMedia) SubscribeMedia(path string, handler func(*media.Packet)) (MediaSubscription, error) {
	s, err := SubscribeMedia(m.NC, path, handler)
	if err != nil {
		return nil, err // not a nil *Subscription in an interface
	}
	return s, nil
}

// Publisher sends one stream's packets on its media subject, splitting units
// larger than the server's max payload. It is safe for concurrent use.
type Publisher struct {
	nc      *nats.Conn
	subject string

	// mu serialises Publish (and guards a Hub publisher's state).
	mu  sync.Mutex
	buf []byte

	// Chunked counts access units that needed more than one message.
	Chunked atomic.Uint64
}

// NewPublisher returns a publisher for path's media subject.
func NewPublisher(nc *nats.Conn, path string) *Publisher {
	return &Publisher{nc: nc, subject: MediaSubject(path)}
}

// Publish sends pkt. The payload is copied into the connection's buffer
// before Publish returns.
func (p *Publisher) Publish(pkt *media.Packet) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.send(pkt)
}

// send marshals pkt onto the subject. Called under p.mu.
func (p *Publisher) send(pkt *media.Packet) error {
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

// Recheck does nothing: every packet goes on NATS.
func (p *Publisher) Recheck() {}

// Close does nothing: a NATS publication holds no resources.
func (p *Publisher) Close() {}

// Subscription delivers a stream's packets from its media subject,
// reassembled, in order, to a handler that is never called concurrently.
type Subscription struct {
	sub        *nats.Subscription
	asm        media.Assembler
	incomplete atomic.Uint64

	// Invalid counts messages that did not parse.
	Invalid atomic.Uint64
}

// SubscribeMedia subscribes to path's packets. The handler runs on the
// subscription's goroutine and must not block for long: the subscription's
// pending buffer is bounded and NATS drops (and reports) messages past it.
// Every message is a fresh buffer, so the handler owns the packet and its payload.
func SubscribeMedia(nc *nats.Conn, path string, handler func(*media.Packet)) (*Subscription, error) {
	s := &Subscription{}
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
			handler(pkt)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", path, err)
	}
	// Bound what may queue for a slow handler: about 10 s of a 20 Mbit/s stream.
	if err := sub.SetPendingLimits(20000, 32<<20); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	s.sub = sub
	return s, nil
}

// Incomplete is the number of access units dropped because a chunk was lost.
func (s *Subscription) Incomplete() uint64 { return s.incomplete.Load() }

// Dropped is the number of messages NATS dropped because the handler fell behind.
func (s *Subscription) Dropped() uint64 {
	n, _ := s.sub.Dropped()
	return uint64(max(n, 0))
}

// Close unsubscribes; NATS may still finish a callback that had begun.
// Calling it twice is harmless.
func (s *Subscription) Close() {
	_ = s.sub.Unsubscribe() // fails only when already closed
}

// Both implementations, checked by the compiler.
var (
	_ Media = NATSMedia{}
	_ Media = (*Hub)(nil)
)
