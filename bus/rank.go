package bus

// Rank is a node's rendezvous-hashing score for a path: among the live
// candidates, the one with the highest score acts first (an origin taking
// a dead node's stream over, an edge taking a dead edge's camera). FNV-1a
// of each, mixed by splitmix64's finaliser (FNV alone barely changes its
// high bits for names that differ in their last bytes, and skews the
// ranking).
func Rank(node, path string) uint64 { return RankHashed(HashName(node), HashName(path)) }

// HashName is the FNV-1a hash of a node's name or a path, as Rank uses it:
// a caller ranking many nodes for one path (or one node for many paths)
// hashes each name once and ranks with RankHashed.
func HashName(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// RankHashed is Rank of a node and a path whose names HashName hashed.
func RankHashed(node, path uint64) uint64 {
	x := node ^ (path * 0x9e3779b97f4a7c15)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
