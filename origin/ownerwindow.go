package origin

// The owner records this origin follows (bus/ownerfollow.go): the
// partitions it ranks among the first bus.OwnerWindow live origins for,
// and those of the streams it has. Origins are ranked per partition (rank,
// first, firstExcept), so every path's taker, standby and claimers of a
// new stream are among the origins that follow its partition; the others
// ignore the path (settle, schedule) and get none of its owner records.
// With bus.OwnerWindow live origins or fewer, every origin follows every
// partition, through the full watch.

import (
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/gossip"
)

// narrowDelay is how long after a change of the live origins the
// partitions followed are computed again.
const narrowDelay = 200 * time.Millisecond

// inWindow says whether this origin follows path's owner records.
func (c *claimer) inWindow(path string) bool {
	return c.window == nil || c.window[c.part(path)]
}

// part is path's owner partition (bus.OwnerPart), kept per live stream.
func (c *claimer) part(path string) int {
	if p, ok := c.partOf[path]; ok {
		return int(p)
	}
	return bus.OwnerPart(path)
}

// narrow sets the partitions followed for the live origins as they are
// now. Records of partitions left are forgotten; those of partitions
// joined are read for the live streams in them (until they come, such a
// stream counts as unowned here, and this origin ranks last for it).
func (c *claimer) narrow() {
	f := c.o.follow.Load()
	if f == nil {
		return
	}
	c.refreshPeers()
	var sig [2]uint64
	for _, p := range c.peers {
		sig[0] += p.hash
		sig[1]++
	}
	if sig == c.windowSig && c.window != nil {
		return
	}
	var want []bool
	if len(c.peers)+1 > bus.OwnerWindow && c.o.live.Settled() && !c.gpuFirstChoice() {
		want = c.ranked()
	}
	added, err := f.Follow(want)
	if err != nil {
		c.o.Log.Warn("following owner records failed; following every partition", "err", err)
		return
	}
	if !f.Partitioned() {
		want = nil // the bucket republishes without partitions
	}
	c.windowSig = sig
	was := c.window
	c.window = want
	if want == nil {
		return
	}
	// Partitions left: forget their records (their events stop).
	for path, rec := range c.owner {
		if c.inWindow(path) || c.o.lookup(path) != nil {
			continue
		}
		c.unindex(c.byOwner, instanceKey{rec.owner.Node, rec.owner.Instance}, path)
		delete(c.owner, path)
		delete(c.pending, path)
		delete(c.open, path)
		c.standbyCheck(path)
	}
	for path := range c.pending {
		if !c.inWindow(path) {
			delete(c.pending, path) // scheduled while every partition was followed
		}
	}
	if was == nil || len(added) == 0 {
		return // from every partition: every record is known
	}
	joined := make(map[int]bool, len(added))
	for _, p := range added {
		joined[p] = true
	}
	var read, first []string
	for path := range c.live {
		if joined[c.part(path)] {
			read = append(read, path)
			if c.first(path) {
				first = append(first, path)
			}
		}
	}
	if c.tracing() {
		c.o.Log.Debug("owner partitions joined", "partitions", len(added), "records", len(read), "first", len(first))
	}
	// The streams this origin is first for now are read at once: when
	// three of a partition's first four died, the fifth, which did not
	// follow it, can be first of the two that share it (bus.OwnerShare),
	// and a taker that does not know the owner record waits its load's
	// claim delay (2.4 s in docs/cluster.md's 10 000-stream kill). A
	// record written before the new subscription reaches every bus node
	// is in the second read.
	f.Read(first)
	// After the subscriptions' overlap, and a share of a second from the
	// node's name: a death moves every survivor's window at once, and
	// their reads (~4 per stream the dead origin had) need not all reach
	// the bus in the same instant.
	f.ReadAfter(read, bus.FollowOverlap+time.Duration(bus.HashName(c.o.Node)%1000)*time.Millisecond)
}

// gpuFirstChoice says whether this origin can be a ladder's first choice
// (NVENC on a GPU: placement.go): it follows every partition and may
// claim any stream, so that a ladder whose partition's first four origins
// are CPU origins still reaches a GPU (as before partitions: after its
// rank's delay, while the CPU origins wait a lease TTL for it).
func (c *claimer) gpuFirstChoice() bool {
	tc := c.o.transcodeRecord()
	return tc != nil && tc.GPU > 0 && tc.Encoders&(gossip.NVENCH264|gossip.NVENCHEVC) != 0
}

// ranked is the partitions this origin ranks among the first
// bus.OwnerWindow live origins for, and those of the streams it has.
func (c *claimer) ranked() []bool {
	want := make([]bool, bus.OwnerParts)
	for p := range want {
		hp := bus.PartHash(p)
		mine := bus.RankHashed(c.selfHash, hp)
		above := 0
		for _, peer := range c.peers {
			if bus.RankHashed(peer.hash, hp) > mine {
				if above++; above >= bus.OwnerWindow {
					break
				}
			}
		}
		want[p] = above < bus.OwnerWindow
	}
	for _, s := range c.o.snapshotStreams() {
		want[bus.OwnerPart(s.path)] = true
	}
	return want
}

// ownerStale is told by a claim that found path's owner record other than
// the watch showed (a compare-and-set or a create that failed): the
// record is read again, in case the change that the watch missed is the
// last one.
func (o *Origin) ownerStale(path string) {
	if f := o.follow.Load(); f != nil && !f.FollowsAll() {
		f.Read([]string{path})
	}
}

// FailoverWindow: a claim counts as a failover (OnFailover) when the
// previous owner released the stream this recently (a stream that ended
// and came back later on another origin is not one).
const FailoverWindow = 30 * time.Second

// release is another origin's owner record as its removal left it.
type release struct {
	node string
	at   time.Time
}

// previousOrigin is the origin the stream came from, for OnFailover: the
// dead owner taken over, or the one that released it just before; "" for
// a stream new to the cluster, or one this node held before (a restart).
func (s *stream) previousOrigin() string {
	prev := s.handover
	if t := s.takeover; t != nil {
		if t.owner.Epoch == s.lease.Owner.Epoch {
			return ""
		}
		prev = t.owner.Node
	}
	if prev == s.o.Node {
		return ""
	}
	return prev
}
