package origin

import (
	"testing"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
)

// A packet that needs the stream's record read from the registry (its
// generation not shown by the watch yet) is not packaged on the
// subscription's goroutine, which must never wait on JetStream: it and every
// packet after it wait, in order, for the run goroutine. The origin here has
// no registry at all, so a read on this goroutine would panic.
func TestInlineNeverReadsTheRegistry(t *testing.T) {
	s := &stream{o: &Origin{}}
	s.queue = media.NewQueue[*media.Packet](queueSize)
	s.inline.Store(true)
	var want []*media.Packet
	for seq := range uint64(3) {
		p := &media.Packet{Codec: media.CodecH264, Flags: media.FlagKeyframe, Generation: 7, Seq: seq, Payload: []byte{0, 0, 0, 1, 5}}
		want = append(want, p)
		s.enqueue(p)
	}
	// The first waits in held, the rest in the queue behind it.
	if len(s.held) != 1 || s.held[0] != want[0] || s.queue.Len() != len(want)-1 {
		t.Fatalf("held %d, queued %d: want the first held, the rest queued", len(s.held), s.queue.Len())
	}
	select {
	case <-s.queue.Ready():
	default:
		t.Fatal("the run goroutine was not woken for the held packets")
	}

	// Once the watch shows the generation, the record needs no read.
	s.info.Store(&bus.StreamInfo{Generation: 7})
	if s.needsRecord(want[0]) {
		t.Fatal("a generation the watch has shown still needs a registry read")
	}
}
