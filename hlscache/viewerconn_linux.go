//go:build linux

package hlscache

import (
	"io"

	"golang.org/x/sys/unix"
)

// sendMem sends the held write, if any, with MSG_MORE and then src's bytes
// with sendfile(2) from its memfd at their offset, on the connection's own
// fd through the poller (RawConn.Write: a full socket buffer waits for
// room, under the write deadline). MSG_MORE keeps the kernel from pushing
// the headers as a segment of their own: they leave with the body's first
// bytes. The caller holds a reference on src.mem.
func (c *viewerConn) sendMem(src *memSource) (int64, error) {
	held := c.held
	start := src.off
	var serr error
	err := c.raw.Write(func(fd uintptr) bool {
		s := int(fd)
		for len(held) > 0 {
			n, err := unix.SendmsgN(s, held, nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
			switch err {
			case nil:
				held = held[n:]
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				serr = err
				return true
			}
		}
		for src.off < src.end {
			off := int64(src.off)
			n, err := unix.Sendfile(s, src.mem.fd, &off, src.end-src.off)
			src.off = int(off)
			switch {
			case err == unix.EINTR:
			case err == unix.EAGAIN:
				return false
			case err != nil:
				serr = err
				return true
			case n == 0:
				serr = io.ErrUnexpectedEOF // the memfd is sealed: cannot happen
				return true
			}
		}
		return true
	})
	c.gathering = false
	c.sends++
	c.sendfiles++
	if c.held != nil {
		c.drop()
	}
	if err == nil {
		err = serr
	}
	if err != nil && c.err == nil && len(held) > 0 {
		c.err = err // the headers did not all go: the connection is broken
	}
	return int64(src.off - start), err
}
