package hlscache

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// A gathered write goes out with the next one in one send, in order; what
// is held when gathering ends goes out then.
func TestViewerConnGathers(t *testing.T) {
	t.Parallel()
	head := bytes.Repeat([]byte("h"), gatherMax)
	body := bytes.Repeat([]byte("0123456789"), 30000)
	for _, tc := range []struct {
		name   string
		gather bool
		writes [][]byte
		sends  int // writes to the network, release included
	}{
		{"head then body", true, [][]byte{head, body}, 1},
		{"head alone", true, [][]byte{head[:100]}, 1},
		{"large first write", true, [][]byte{body, head}, 2},
		{"three writes", true, [][]byte{head, body, head}, 2},
		{"not gathering", false, [][]byte{head, body}, 2},
		{"nothing written", true, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			server, client := tcpPair(t)
			vc := newViewerConn(server)
			if tc.gather {
				vc.gather()
			}
			var want []byte
			for _, p := range tc.writes {
				n, err := vc.Write(p)
				if n != len(p) || err != nil {
					t.Fatalf("Write: %d, %v; want %d", n, err, len(p))
				}
				want = append(want, p...)
			}
			vc.release()
			if vc.sends != tc.sends {
				t.Errorf("%d sends, want %d", vc.sends, tc.sends)
			}
			if vc.held != nil || vc.gathering {
				t.Error("still gathering after release")
			}
			server.Close()
			got, err := io.ReadAll(client)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("peer read %d bytes (%v), want %d in order", len(got), err, len(want))
			}
		})
	}
}

// Below the per-IP cap's wrapper the gathered write reaches the TCP
// connection itself (writev), and the cap still counts the connection.
func TestViewerConnUnderLimit(t *testing.T) {
	t.Parallel()
	server, client := tcpPair(t)
	l := &limitListener{count: map[netip.Addr]int{}}
	ip := remoteIP(server)
	l.count[ip] = 1
	vc := newViewerConn(&limitedConn{Conn: server, l: l, ip: ip})
	if _, ok := vc.out.(*net.TCPConn); !ok {
		t.Fatalf("gathered writes go to a %T, want the *net.TCPConn", vc.out)
	}
	vc.gather()
	if _, err := vc.Write([]byte("head ")); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.Write([]byte("body")); err != nil {
		t.Fatal(err)
	}
	vc.release()
	if err := vc.Close(); err != nil {
		t.Fatal(err)
	}
	if n := l.open(ip); n != 0 {
		t.Errorf("%d connections counted after Close, want 0", n)
	}
	got, _ := io.ReadAll(client)
	if string(got) != "head body" {
		t.Errorf("peer read %q", got)
	}
}

// A failed send of the held write fails the next Write.
func TestViewerConnHeldWriteError(t *testing.T) {
	t.Parallel()
	server, _ := tcpPair(t)
	vc := newViewerConn(server)
	vc.gather()
	if _, err := vc.Write([]byte("head")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	vc.release()
	if _, err := vc.Write([]byte("more")); err == nil {
		t.Error("Write after a failed held write succeeded")
	}
}
