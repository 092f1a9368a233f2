package testkit

import (
	"net"
	"strconv"
	"testing"
)

// FreeUDPPair returns an even UDP port on 127.0.0.1 whose successor is free
// too, as an RTP/RTCP pair needs (RTSP over UDP). Both are closed again when it
// returns: something else may take them before the test binds them, a small
// race every test that must name its UDP ports accepts.
func FreeUDPPair(t testing.TB) (rtp, rtcp int) {
	t.Helper()
	for range 100 {
		a, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		if port%2 != 0 || port >= 65535 {
			a.Close()
			continue
		}
		b, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return port, port + 1
	}
	t.Fatal("no free UDP port pair")
	return 0, 0
}

// TakenAddr returns the address of a loopback TCP port held open until the
// test ends, for a test of a Start that must fail to listen there.
func TakenAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}
