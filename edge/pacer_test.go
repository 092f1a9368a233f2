package edge

import (
	"io"
	"net"
	"testing"
	"time"
)

// stampConn answers every read with up to size bytes and stamps when each
// read reached it.
type stampConn struct {
	net.Conn
	size  int
	reads []time.Time
}

func (c *stampConn) Read(p []byte) (int, error) {
	c.reads = append(c.reads, time.Now())
	return min(len(p), c.size), nil
}

func (c *stampConn) SetReadDeadline(time.Time) error { return nil }

// TestReadPacer: once a publication runs, a read that emptied the socket
// (a short read) is followed by the next no sooner than the interval after
// it, on both the RTMP (deadlineConn) and the RTSP (sniffConn) path; a read
// that filled its buffer, or a zero interval, reads on at once.
func TestReadPacer(t *testing.T) {
	const interval = 25 * time.Millisecond
	rtmp := func(sc *stampConn, iv time.Duration) io.Reader {
		dc := &deadlineConn{Conn: sc, idle: time.Minute}
		dc.pace.interval = iv
		return dc
	}
	rtsp := func(sc *stampConn, iv time.Duration) io.Reader {
		c := &sniffConn{Conn: sc, timeout: time.Minute, interval: iv, checked: true, reads: setupReads - 1}
		_, _ = c.Read(make([]byte, 1)) // the last setup read: pacing starts after it
		sc.reads = nil
		c.pace.last = time.Time{}
		return c
	}
	for name, wrap := range map[string]func(*stampConn, time.Duration) io.Reader{"rtmp": rtmp, "rtsp": rtsp} {
		t.Run(name+"/short reads are spaced", func(t *testing.T) {
			sc := &stampConn{size: 10}
			r := wrap(sc, interval)
			buf := make([]byte, rtmpReadBuffer)
			for range 4 {
				if _, err := r.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			for i := 1; i < len(sc.reads); i++ {
				if gap := sc.reads[i].Sub(sc.reads[i-1]); gap < interval {
					t.Fatalf("read %d came %s after a short read, want >= %s", i, gap, interval)
				}
			}
		})
		// An hour's interval: a read that waited would never end.
		t.Run(name+"/full reads do not wait", func(t *testing.T) {
			sc := &stampConn{size: 1 << 30}
			r := wrap(sc, time.Hour)
			buf := make([]byte, rtmpReadBuffer)
			for range 3 {
				if _, err := r.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
		})
		t.Run(name+"/zero interval", func(t *testing.T) {
			sc := &stampConn{size: 10}
			r := wrap(sc, 0)
			buf := make([]byte, rtmpReadBuffer)
			for range 3 {
				if _, err := r.Read(buf); err != nil {
					t.Fatal(err)
				}
			}
			if len(sc.reads) != 3 {
				t.Fatalf("%d reads", len(sc.reads))
			}
		})
	}
}

// TestReadPacerSetup: the reads before the publication runs (the RTMP
// handshake and commands, the RTSP requests up to RECORD) are not paced,
// whatever the interval: an hour's would hang the test.
func TestReadPacerSetup(t *testing.T) {
	sc := &stampConn{size: 10}
	c := &sniffConn{Conn: sc, timeout: time.Minute, interval: time.Hour, checked: true}
	buf := make([]byte, 100)
	for range setupReads {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	dc := &deadlineConn{Conn: sc, idle: time.Minute, setup: time.Now().Add(time.Minute)}
	for range 3 {
		if _, err := dc.Read(make([]byte, rtmpReadBuffer)); err != nil {
			t.Fatal(err)
		}
	}
}
