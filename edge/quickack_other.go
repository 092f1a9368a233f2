//go:build !linux

package edge

import "net"

// quickAck is Linux-only (TCP_QUICKACK); elsewhere the setup keeps the
// kernel's delayed acknowledgements.
func quickAck(net.Conn) {}
