package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// countingConn counts the reads that reach the connection underneath.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}

func TestDeadlineConnBuffersReads(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cc := &countingConn{Conn: a}
	dc := &deadlineConn{Conn: cc, idle: 5 * time.Second}
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB, written at once
	go func() { _, _ = b.Write(msg) }()

	got := make([]byte, 0, len(msg))
	small := make([]byte, 100) // the reader above asks for little at a time
	for len(got) < len(msg) {
		n, err := dc.Read(small)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, small[:n]...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes changed on the way through")
	}
	if cc.reads != 1 {
		t.Fatalf("%d reads reached the socket for one 16 KiB write, want 1", cc.reads)
	}

	// A read as large as the buffer goes straight to the socket.
	go func() { _, _ = b.Write([]byte("xyz")) }()
	big := make([]byte, rtmpReadBuffer)
	n, err := dc.Read(big)
	if err != nil || string(big[:n]) != "xyz" {
		t.Fatalf("large read: %q, %v", big[:n], err)
	}
	if dc.buf != nil {
		t.Fatal("the small reads' buffer is kept once reads are large")
	}
}

func TestDeadlineConnDropsStalledPublisher(t *testing.T) {
	for _, tc := range []struct {
		name  string
		idle  time.Duration
		setup time.Duration // 0: the publication runs
	}{
		{name: "idle", idle: 50 * time.Millisecond},
		{name: "setup deadline before idle", idle: time.Hour, setup: 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			dc := &deadlineConn{Conn: a, idle: tc.idle}
			if tc.setup > 0 {
				dc.setup = time.Now().Add(tc.setup)
			}
			done := make(chan error, 1)
			go func() {
				_, err := dc.Read(make([]byte, 10))
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("got %v, want a deadline error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a stalled publisher was not dropped")
			}
		})
	}
}

func TestDeadlineConnReturnsEOFAfterData(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	dc := &deadlineConn{Conn: a, idle: 5 * time.Second}
	go func() {
		_, _ = b.Write([]byte("last words"))
		b.Close()
	}()
	got, err := io.ReadAll(dc)
	if err != nil || string(got) != "last words" {
		t.Fatalf("got %q, %v", got, err)
	}
}
