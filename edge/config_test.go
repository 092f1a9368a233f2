package edge

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestValidate: each bad field is refused under its own name, every one at
// once; a good configuration and the open defaults (nothing listening, no
// TLS) pass.
func TestValidate(t *testing.T) {
	good := func() *Edge {
		return &Edge{
			RTSPAddress: ":8554", UDPRTPAddress: ":8000", UDPRTCPAddress: ":8001", RTMPAddress: ":1935",
			ReadTimeout: DefaultReadTimeout, MediaTimeout: DefaultMediaTimeout,
		}
	}
	for _, tc := range []struct {
		name   string
		change func(e *Edge)
		fields []string // the refused fields, in order; none: valid
	}{
		{"good", func(*Edge) {}, nil},
		{"nothing listening", func(e *Edge) { e.RTSPAddress, e.UDPRTPAddress, e.UDPRTCPAddress, e.RTMPAddress = "", "", "", "" }, nil},
		{"not host:port", func(e *Edge) { e.RTMPAddress = "1935" }, []string{"RTMPAddress"}},
		{"bad port", func(e *Edge) { e.RTSPSAddress = ":x" }, []string{"RTSPSAddress"}},
		{"rtp alone", func(e *Edge) { e.UDPRTCPAddress = "" }, []string{"UDPRTPAddress"}},
		{"odd rtp port", func(e *Edge) { e.UDPRTPAddress, e.UDPRTCPAddress = ":8001", ":8002" }, []string{"UDPRTPAddress"}},
		{"rtcp not rtp+1", func(e *Edge) { e.UDPRTCPAddress = ":8003" }, []string{"UDPRTPAddress"}},
		{"rtp without rtsp", func(e *Edge) { e.RTSPAddress = "" }, []string{"UDPRTPAddress"}},
		{"timeouts unset", func(e *Edge) { e.ReadTimeout, e.MediaTimeout = 0, -time.Second }, []string{"ReadTimeout", "MediaTimeout"}},
		{"read interval", func(e *Edge) { e.ReadInterval = -time.Millisecond }, []string{"ReadInterval"}},
		{"negative limit", func(e *Edge) { e.MaxPublishers = -1 }, []string{"MaxPublishers"}},
		{"key alone", func(e *Edge) { e.TLSKey = "/etc/hostname" }, []string{"TLSCert"}},
		{"unreadable cert", func(e *Edge) { e.TLSCert, e.TLSKey = "/nonexistent/cert.pem", "/etc/hostname" }, []string{"TLSCert"}},
	} {
		e := good()
		tc.change(e)
		err := e.Validate()
		var got []string
		if err != nil {
			for _, err := range err.(interface{ Unwrap() []error }).Unwrap() {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("%s: %v is not a *FieldError", tc.name, err)
				}
				if !strings.HasPrefix(err.Error(), "edge: "+fe.Field+": ") {
					t.Errorf("%s: %q does not name its field", tc.name, err)
				}
				got = append(got, fe.Field)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
			t.Errorf("%s: refused %v (%v), want %v", tc.name, got, err, tc.fields)
		}
	}
}
