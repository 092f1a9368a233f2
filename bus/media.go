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

	// Chunked counts access units that needed more than one message.
	Chunked atomic.Uint64
}

// NewPublisher returns a publisher for path's media subject.
func NewPublisher(nc *nats.Conn, path string) *Publisher {
	return &Publisher{nc: nc, subject: MediaSubject(path)}
}

// Publish sends p. The payload is copied into the connection's buffer before
// Publish returns, so p may be reused.
func (p *Publisher) Publish(pkt *media.Packet) error {
	maxMsg := int(p.nc.MaxPayload())
	p.mu.Lock()
	defer p.mu.Unlock()
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

// Subscription delivers a stream's packets, reassembled, in order, to a
// handler running on one goroutine.
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
		sub.Unsubscribe()
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

// Close unsubscribes. Calling it twice is harmless.
func (s *Subscription) Close() {
	_ = s.sub.Unsubscribe() // fails only when already closed
}
