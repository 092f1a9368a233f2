package bus

import (
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/media"
)

// benchBus starts a server and the publisher's connection, with a Hub on
// it. With outside, a second connection subscribes to live/b, standing for
// an origin of another process.
func benchBus(b *testing.B, outside bool) (*nats.Conn, *Hub) {
	s := &Server{Host: "127.0.0.1", Port: -1, Log: slog.New(slog.DiscardHandler)}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	conns := make([]*nats.Conn, 2)
	for i := range conns {
		nc, err := Connect(ConnOptions{URLs: []string{s.ClientURL()}, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		conns[i] = nc
	}
	if outside {
		sub, err := SubscribeMedia(conns[1], "live/b", func(*media.Packet) {})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(sub.Close)
		if err := conns[1].Flush(); err != nil {
			b.Fatal(err)
		}
	}
	return conns[0], &Hub{NC: conns[0], Interest: s.Interest, Subscriptions: s.Subscriptions}
}

// benchPublish publishes a 10 kB access unit per iteration. (The
// interface is the method alone, so that the benchmarks also build
// against the bus of before Media, for comparison.)
func benchPublish(b *testing.B, pub interface{ Publish(*media.Packet) error }) {
	pkt := &media.Packet{Codec: media.CodecH264, Payload: make([]byte, 10000)}
	b.ReportAllocs()
	for b.Loop() {
		pkt.Seq++
		if err := pub.Publish(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHubPublish is the all-in-one's path: the packet reaches the
// process's subscriber by a function call and nobody outside wants it.
func BenchmarkHubPublish(b *testing.B) {
	_, h := benchBus(b, false)
	ch := make(chan *media.Packet, 1024)
	sub, err := h.SubscribeMedia("live/b", func(p *media.Packet) {
		select {
		case ch <- p:
		default:
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	go func() {
		for range ch {
		}
	}()
	defer close(ch)
	pub := h.NewPublisher("live/b")
	defer pub.Close()
	benchPublish(b, pub)
}

// BenchmarkHubPublishOutside is the all-in-one with an origin of another
// process subscribed: each packet goes to the local subscriber and on NATS.
func BenchmarkHubPublishOutside(b *testing.B) {
	nc, h := benchBus(b, true)
	sub, err := h.SubscribeMedia("live/b", func(*media.Packet) {})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	if err := nc.Flush(); err != nil { // the server counts the hub's own subscription before the first packet
		b.Fatal(err)
	}
	pub := h.NewPublisher("live/b")
	defer pub.Close()
	benchPublish(b, pub)
}

// BenchmarkNATSPublish is the distributed path: every packet marshalled
// onto the stream's subject, which a subscriber elsewhere holds.
func BenchmarkNATSPublish(b *testing.B) {
	nc, _ := benchBus(b, true)
	benchPublish(b, NewPublisher(nc, "live/b"))
}
