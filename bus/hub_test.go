package bus

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// collector gathers delivered packets.
type collector struct {
	mu   sync.Mutex
	pkts []*media.Packet
}

func (c *collector) add(p *media.Packet) {
	c.mu.Lock()
	c.pkts = append(c.pkts, p)
	c.mu.Unlock()
}

func (c *collector) seqs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, len(c.pkts))
	for i, p := range c.pkts {
		out[i] = p.Seq
	}
	return out
}

func otherConn(t *testing.T, s *Server) *nats.Conn {
	t.Helper()
	nc, err := Connect(ConnOptions{URLs: []string{s.ClientURL()}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startHub starts a bus (startBus's) and a Hub on its connection that asks
// the server for interest and its count of subscriptions.
func startHub(t *testing.T, maxPayload int32) (*Server, *nats.Conn, *Hub) {
	t.Helper()
	s, nc := startBus(t, maxPayload)
	return s, nc, &Hub{NC: nc, Interest: s.Interest, Subscriptions: s.Subscriptions}
}

// localCollector subscribes a collector to path through h; the caller closes
// the subscription.
func localCollector(t *testing.T, h *Hub, path string) (*collector, MediaSubscription) {
	t.Helper()
	var c collector
	sub, err := h.SubscribeMedia(path, c.add)
	if err != nil {
		t.Fatal(err)
	}
	return &c, sub
}

// remoteCollector subscribes to path over a second connection to s, closed at
// cleanup, and waits until the server counts want subscriptions on the
// stream's subject.
func remoteCollector(t *testing.T, s *Server, path string, want int) *collector {
	t.Helper()
	var c collector
	sub, err := SubscribeMedia(otherConn(t, s), path, c.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	testkit.WaitFor(t, 5*time.Second, "the remote subscription at the server", func() bool { return s.Interest(MediaSubject(path)) == want })
	return &c
}

func hubPacket(seq uint64) *media.Packet {
	return &media.Packet{Codec: media.CodecH264, Flags: media.FlagKeyframe, Seq: seq, PTS: int64(seq) * 3600, Payload: []byte{0, 0, 0, 1, 0x65}}
}

func TestHubDeliversInProcessWithoutNATS(t *testing.T) {
	t.Parallel()
	_, nc, h := startHub(t, 0)
	got, sub := localCollector(t, h, "live/cam.1")
	defer sub.Close()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	pub := h.NewPublisher("live/cam.1")
	defer pub.Close()
	before := nc.Stats().OutMsgs
	sent := make([]*media.Packet, 5)
	for i := range sent {
		sent[i] = hubPacket(uint64(i))
		if err := pub.Publish(sent[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Delivery is synchronous: every packet is there, the same object, in order.
	got.mu.Lock()
	n := len(got.pkts)
	for i := 0; i < n && i < len(sent); i++ {
		if got.pkts[i] != sent[i] {
			t.Errorf("packet %d: a copy was delivered, want the publisher's packet", i)
		}
	}
	got.mu.Unlock()
	if n != len(sent) {
		t.Fatalf("got %d packets, want %d", n, len(sent))
	}
	if d := nc.Stats().OutMsgs - before; d != 0 {
		t.Fatalf("%d messages went on NATS with no subscriber outside the process", d)
	}
}

func TestHubPublishesOnNATSForRemoteSubscribers(t *testing.T) {
	t.Parallel()
	s, _, h := startHub(t, 0)
	local, lsub := localCollector(t, h, "live/cam.1")
	defer lsub.Close()
	remote := remoteCollector(t, s, "live/cam.1", 2) // with the hub's own

	pub := h.NewPublisher("live/cam.1")
	defer pub.Close()
	for i := range 10 {
		if err := pub.Publish(hubPacket(uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "10 packets at the remote subscriber", func() bool { return len(remote.seqs()) == 10 })
	testkit.WaitFor(t, 5*time.Second, "the NATS copies ignored", func() bool { return lsub.(*hubSubscription).Shadowed() == 10 })
	seqs := local.seqs()
	if len(seqs) != 10 {
		t.Fatalf("local subscriber got %d packets (%v), want each of 10 once", len(seqs), seqs)
	}
	for i, q := range seqs {
		if q != uint64(i) {
			t.Fatalf("local subscriber got %v, want 0..9 in order", seqs)
		}
	}
}

func TestHubReceivesFromRemotePublishers(t *testing.T) {
	t.Parallel()
	s, nc, h := startHub(t, 1024)
	got, sub := localCollector(t, h, "live/cam.1")
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	remote := NewPublisher(otherConn(t, s), "live/cam.1")
	big := &media.Packet{Codec: media.CodecH264, Flags: media.FlagKeyframe, Seq: 1, Payload: make([]byte, 5000)}
	if err := remote.Publish(big); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the remote packet", func() bool { return len(got.seqs()) == 1 })

	// A local publisher takes over the path: NATS copies are ignored while it lives.
	local := h.NewPublisher("live/cam.1")
	if err := remote.Publish(hubPacket(2)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the remote packet ignored", func() bool { return sub.(*hubSubscription).Shadowed() == 1 })
	if err := local.Publish(hubPacket(3)); err != nil {
		t.Fatal(err)
	}
	local.Close()
	local.Close() // harmless
	if err := remote.Publish(hubPacket(4)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the remote packet after the local publisher left", func() bool { return len(got.seqs()) == 3 })
	if seqs := got.seqs(); seqs[1] != 3 || seqs[2] != 4 {
		t.Fatalf("got %v, want [1 3 4]", seqs)
	}

	sub.Close()
	sub.Close() // harmless
	p := h.NewPublisher("live/cam.1")
	if err := p.Publish(hubPacket(5)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n := len(got.seqs()); n != 3 {
		t.Fatalf("a closed subscription got a packet (%d)", n)
	}
	h.mu.Lock()
	left := len(h.paths)
	h.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d paths left in the hub after every publisher and subscriber closed", left)
	}
}

func TestHubWithoutInterestPublishesOnNATS(t *testing.T) {
	t.Parallel()
	s, nc := startBus(t, 0)
	h := &Hub{NC: nc} // an external NATS: interest unknown
	remote := remoteCollector(t, s, "live/x", 1)
	pub := h.NewPublisher("live/x")
	defer pub.Close()
	if err := pub.Publish(hubPacket(1)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the packet on NATS", func() bool { return len(remote.seqs()) == 1 })
}

func TestHubExactInterestWithoutSubscriptionCount(t *testing.T) {
	t.Parallel()
	s, nc := startBus(t, 0)
	h := &Hub{NC: nc, Interest: s.Interest} // asks the server on every packet
	pub := h.NewPublisher("live/x")
	defer pub.Close()
	if err := pub.Publish(hubPacket(0)); err != nil { // nobody outside: not on NATS
		t.Fatal(err)
	}
	remote := remoteCollector(t, s, "live/x", 1)
	if err := pub.Publish(hubPacket(1)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the packet on NATS", func() bool { return len(remote.seqs()) == 1 })
	if got := remote.seqs(); got[0] != 1 {
		t.Fatalf("remote got %v, want [1]", got)
	}
}

func TestHubRecheckSeesACountNeutralChange(t *testing.T) {
	t.Parallel()
	s, _, h := startHub(t, 0)
	other := otherConn(t, s)
	unrelated, err := other.SubscribeSync("unrelated")
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the unrelated subscription", func() bool { return s.Interest("unrelated") == 1 })
	pub := h.NewPublisher("live/x")
	defer pub.Close()
	if err := pub.Publish(hubPacket(0)); err != nil { // decides: nobody outside
		t.Fatal(err)
	}
	// One subscription goes, the stream's comes: the total does not move.
	before := s.Subscriptions()
	var remote collector
	if err := unrelated.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	rsub, err := SubscribeMedia(other, "live/x", remote.add)
	if err != nil {
		t.Fatal(err)
	}
	defer rsub.Close()
	testkit.WaitFor(t, 5*time.Second, "the swap at the server", func() bool {
		return s.Interest(MediaSubject("live/x")) == 1 && s.Interest("unrelated") == 0
	})
	if s.Subscriptions() != before {
		t.Skipf("the server's total moved (%d → %d): nothing to show", before, s.Subscriptions())
	}
	pub.Recheck() // what the edge does when it answers a GOP request
	if err := pub.Publish(hubPacket(1)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the packet on NATS after Recheck", func() bool { return len(remote.seqs()) == 1 })
}
