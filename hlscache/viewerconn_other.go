//go:build !linux

package hlscache

// sendMem is never called: raw is nil where memBodySupported is false.
func (c *viewerConn) sendMem(src *memSource) (int64, error) {
	n, err := c.Write(src.rest())
	src.off += n
	return int64(n), err
}
