package edge

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"go.uber.org/goleak"

	sgauth "github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/auth/authconf"
	"github.com/streamgrid/streamgrid/internal/testcert"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// TestEdgeTLS: with a certificate the edge takes publishers over RTSPS
// (TCP only) and RTMPS, authenticated like on the plain ports; a plain
// client on a TLS port gets no RTSP or RTMP answer and is counted as a
// failed handshake; the plain ports stay plain.
func TestEdgeTLS(t *testing.T) {
	certFile, keyFile, pool := testcert.Write(t, t.TempDir())
	b, e := startBusEdge(t, func(e *Edge) {
		e.TLSCert, e.TLSKey = certFile, keyFile
		e.RTSPSAddress, e.RTMPSAddress = "127.0.0.1:0", "127.0.0.1:0"
		e.Auth = startAuth(t, authconf.AuthUser{User: "cam", Pass: sgauth.HashSHA256("campw"),
			Permissions: []authconf.AuthPermission{{Action: "publish", Path: "live/*"}}})
		e.RTSPAuthMethods = []string{RTSPAuthBasic}
	})
	if e.RTSPSAddr() == nil || e.RTMPSAddr() == nil {
		t.Fatalf("TLS listeners: rtsps %v, rtmps %v", e.RTSPSAddr(), e.RTMPSAddr())
	}
	c := loadClip(t, "h264_aac.ts")
	clientTLS := &tls.Config{RootCAs: pool}
	rtsps := e.RTSPSAddr().String()

	record := func(u string, proto gortsplib.Protocol) error {
		desc := clipDesc(c, "")
		client := &gortsplib.Client{Protocol: &proto, TLSConfig: clientTLS, WriteQueueSize: 4096}
		if err := client.StartRecording(u, desc); err != nil {
			return err
		}
		t.Cleanup(client.Close)
		w := &rtpWriter{c: c, desc: desc, write: client.WritePacketRTP, base: 1}
		return w.send()
	}
	t.Run("rtsps", func(t *testing.T) {
		if err := record("rtsps://"+rtsps+"/live/s", gortsplib.ProtocolTCP); err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("no credentials over RTSPS: %v, want 401", err)
		}
		// UDP would carry the media in clear: not offered on RTSPS.
		if err := record("rtsps://cam:campw@"+rtsps+"/live/u", gortsplib.ProtocolUDP); err == nil {
			t.Fatal("UDP transport accepted over RTSPS")
		} else if !strings.Contains(err.Error(), "461") {
			t.Errorf("UDP over RTSPS: %v, want 461 Unsupported Transport", err)
		}
		col := collect(t, b.nc, "live/s")
		if err := record("rtsps://cam:campw@"+rtsps+"/live/s", gortsplib.ProtocolTCP); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 10*time.Second, "RTSPS packets on the bus", func() bool { return videoCount(col.packets()) > 0 })
	})
	t.Run("rtmps", func(t *testing.T) {
		base := "rtmps://" + e.RTMPSAddr().String() + "/live/m"
		if _, err := publishRTMPURL(t, base+"?user=cam&pass=nope", clientTLS, c, 0); err == nil {
			testkit.WaitFor(t, 5*time.Second, "refusal counted", func() bool {
				return rejected(t, e, "rtmp", "unauthorized") > 0
			})
		}
		col := collect(t, b.nc, "live/m")
		if _, err := publishRTMPURL(t, base+"?user=cam&pass=campw", clientTLS, c, 0); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 10*time.Second, "RTMPS packets on the bus", func() bool { return videoCount(col.packets()) > 0 })
	})
	t.Run("plain client on the TLS ports", func(t *testing.T) {
		for _, tc := range []struct {
			proto, addr string
			hello       []byte
		}{
			{"rtsp", rtsps, []byte("OPTIONS rtsp://" + rtsps + "/ RTSP/1.0\r\nCSeq: 1\r\n\r\n")},
			{"rtmp", e.RTMPSAddr().String(), append([]byte{3}, make([]byte, 1536)...)}, // RTMP C0+C1
		} {
			before := rejected(t, e, tc.proto, rejectHandshake)
			conn, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(tc.hello); err != nil {
				t.Fatal(err)
			}
			reply, err := io.ReadAll(conn)
			conn.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%s: the TLS port kept a plain connection open", tc.proto)
			}
			// At most a TLS alert record (content type 21), never RTSP or RTMP.
			if len(reply) > 0 && reply[0] != 21 {
				t.Errorf("%s: plain client got %d bytes starting %q", tc.proto, len(reply), reply[:min(len(reply), 32)])
			}
			testkit.WaitFor(t, 5*time.Second, tc.proto+" handshake refusal counted", func() bool {
				return rejected(t, e, tc.proto, rejectHandshake) > before
			})
		}
		// The plain RTSP port still speaks plain RTSP.
		if err := recordRTSP(t, "rtsp://cam:campw@"+e.RTSPAddr().String()+"/live/plain", c); err != nil {
			t.Fatalf("plain RTSP next to RTSPS: %v", err)
		}
	})
}

// TestEdgeTLSConfig: a certificate without its key, or files that are not
// a key pair, fail Start with nothing left listening.
func TestEdgeTLSConfig(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir())
	b := startBus(t)
	for _, tc := range []struct{ name, cert, key, want string }{
		{"cert alone", certFile, "", "TLSCert and TLSKey go together"},
		{"key as cert", keyFile, keyFile, "TLS certificate"},
	} {
		e := newEdge(t, b, "edge-1", nil)
		e.TLSCert, e.TLSKey = tc.cert, tc.key
		e.RTSPSAddress = "127.0.0.1:0"
		if err := e.Start(); err == nil || !strings.Contains(err.Error(), tc.want) {
			e.Close()
			t.Errorf("%s: Start: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestNoGoroutineLeakTLS: publishers on the TLS ports, and a plain client
// stuck on one, leave nothing behind once the edge is closed.
func TestNoGoroutineLeakTLS(t *testing.T) {
	certFile, keyFile, pool := testcert.Write(t, t.TempDir())
	c := loadClip(t, "h264_aac.ts")
	b := startBus(t)
	snapshot := goleak.IgnoreCurrent()
	e := newEdge(t, b, "edge-1", nil)
	e.TLSCert, e.TLSKey = certFile, keyFile
	e.RTSPSAddress, e.RTMPSAddress = "127.0.0.1:0", "127.0.0.1:0"
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: pool}
	col := collect(t, b.nc, "live/a")
	desc := clipDesc(c, "")
	rc := &gortsplib.Client{Protocol: new(gortsplib.ProtocolTCP), TLSConfig: clientTLS, WriteQueueSize: 4096}
	if err := rc.StartRecording("rtsps://"+e.RTSPSAddr().String()+"/live/a", desc); err != nil {
		t.Fatal(err)
	}
	w := &rtpWriter{c: c, desc: desc, write: rc.WritePacketRTP, base: 1}
	if err := w.send(); err != nil {
		t.Fatal(err)
	}
	mc, err := publishRTMPURL(t, "rtmps://"+e.RTMPSAddr().String()+"/live/b", clientTLS, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := net.Dial("tcp", e.RTSPSAddr().String()) // sends nothing
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	testkit.WaitFor(t, 10*time.Second, "media", func() bool {
		return videoCount(col.packets()) > 0 && len(e.Streams()) == 2
	})
	e.Close()
	rc.Close()
	mc.Close()
	col.sub.Close()
	goleak.VerifyNone(t, snapshot)
}
