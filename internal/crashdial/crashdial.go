// Package crashdial is a NATS client dialer (nats.CustomDialer) that can
// cut its connections the way the kernel does for a process killed with
// SIGKILL: the sockets close with nothing more written or flushed (no
// NATS-level close, which would flush first and block for as long as a busy
// server does not read). The control-plane simulation (loadtest) crashes
// its simulated nodes with it, and the bus tests their clients.
package crashdial

import (
	"errors"
	"net"
	"sync"
)

// ErrCut is what Dial returns between Cut and Revive.
var ErrCut = errors.New("crashdial: connections cut")

// Dialer dials TCP and keeps the connections, so that Cut can close them.
// The zero value is ready.
type Dialer struct {
	mu    sync.Mutex
	d     net.Dialer
	conns []net.Conn
	cut   bool
}

// Dial dials address, or fails with ErrCut after Cut.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		return nil, ErrCut
	}
	c, err := d.d.Dial(network, address)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

// Cut closes every connection dialled and refuses new ones until Revive.
func (d *Dialer) Cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = true
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

// Revive lets Dial dial again.
func (d *Dialer) Revive() {
	d.mu.Lock()
	d.cut = false
	d.mu.Unlock()
}
