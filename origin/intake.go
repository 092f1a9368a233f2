package origin

import (
	"sync"
	"sync/atomic"

	"github.com/streamgrid/streamgrid/internal/media"
)

// queueSize bounds the packets waiting to be packaged per stream.
const queueSize = 1024

// intake is the queue between a stream's subscription and its packaging.
//
// Invariants:
//   - enqueue, on the subscription's goroutine (an edge's, for the
//     in-process hub), never blocks: a full queue drops the packet, counted,
//     and video then resumes at its next keyframe (media.Queue).
//   - procMu is held by whoever packages: the run goroutine, or the
//     subscription goroutine itself when inline is set and procMu is free,
//     so a packet needs no goroutine hand-off. Otherwise the queue's Ready
//     wakes the run goroutine.
//   - inline is set only while the stream is passthrough and runs: stopping
//     a transcoder may take seconds, never on an edge's goroutine.
//   - spare, the batch buffer handed back to the queue, is used under procMu.
//   - Packaging on a subscription goroutine never waits on the registry: a
//     packet that needs the stream's record read first (needsRecord) stops
//     the inline drain, and it and the rest of its batch wait in held for the
//     run goroutine, which packages held before the queue. While held is not
//     empty nothing is packaged inline, so packets keep their order.
type intake struct {
	queue  *media.Queue[*media.Packet]
	spare  []*media.Packet
	held   []*media.Packet
	procMu sync.Mutex
	inline atomic.Bool
}

// enqueue runs on the subscription's goroutine. It never blocks: a full
// queue drops the packet (counted), and video then waits for a keyframe.
func (s *stream) enqueue(p *media.Packet) {
	if s.queue.PushQuiet(p, p.Tag()) != media.DropNone {
		s.drop()
		return
	}
	if s.inline.Load() && s.procMu.TryLock() {
		done := s.inline.Load() && s.drain(true)
		s.procMu.Unlock()
		if done {
			return
		}
	}
	s.queue.Notify() // the run goroutine packages it
}

// drain packages every queued packet, held ones first, and says whether it
// did. Called under procMu. inline: on a subscription goroutine, which
// leaves a packet that needs the registry, and those after it, in held.
func (s *stream) drain(inline bool) bool {
	if len(s.held) > 0 {
		if inline {
			return false
		}
		for i, p := range s.held {
			s.handlePacket(p, false)
			s.held[i] = nil
		}
		s.held = s.held[:0]
	}
	for {
		batch := s.queue.Take(s.spare)
		if len(batch) == 0 {
			s.spare = batch
			return true
		}
		for i, p := range batch {
			if inline && s.needsRecord(p) {
				s.held = append(s.held, batch[i:]...)
				clear(batch)
				s.spare = batch[:0]
				return false
			}
			s.handlePacket(p, false)
			batch[i] = nil
		}
		s.spare = batch[:0]
	}
}
