package crashdial

import (
	"errors"
	"net"
	"testing"
	"time"
)

// TestCutAndRevive: Cut closes what was dialled and refuses new dials until
// Revive.
func TestCutAndRevive(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // the kernel completes the dials: nothing needs to accept them
	var d Dialer
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	d.Cut()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Cut: %v, want net.ErrClosed", err)
	}
	if _, err := d.Dial("tcp", l.Addr().String()); !errors.Is(err, ErrCut) {
		t.Fatalf("dial after Cut: %v, want ErrCut", err)
	}
	d.Revive()
	c, err = d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial after Revive: %v", err)
	}
	c.Close()
}
