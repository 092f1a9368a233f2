package bus

import "hash/fnv"

// Rank is a node's rendezvous-hashing score for a path: among the live
// candidates, the one with the highest score acts first (an origin taking
// a dead node's stream over, an edge taking a dead edge's camera). FNV-1a
// of each, mixed by splitmix64's finaliser (FNV alone barely changes its
// high bits for names that differ in their last bytes, and skews the
// ranking).
func Rank(node, path string) uint64 {
	hn, hp := fnv.New64a(), fnv.New64a()
	hn.Write([]byte(node))
	hp.Write([]byte(path))
	x := hn.Sum64() ^ (hp.Sum64() * 0x9e3779b97f4a7c15)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
