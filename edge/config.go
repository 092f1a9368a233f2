package edge

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// The defaults of the edge's configuration fields, and the rules they must
// follow: Start applies them, and internal/config checks a file with the
// same rules (Validate), so that a configuration that loads is one the edge
// accepts.

const (
	// DefaultReadTimeout is Edge.ReadTimeout when it is not set.
	DefaultReadTimeout = 10 * time.Second
	// DefaultMediaTimeout is Edge.MediaTimeout when it is not set.
	DefaultMediaTimeout = 10 * time.Second
	// MaxReadInterval bounds Edge.ReadInterval: every frame may wait that
	// long before the edge reads it.
	MaxReadInterval = 100 * time.Millisecond
)

// FieldError is a refused configuration value; Field names the Edge field
// ("UDPRTPAddress"). Problem names other fields as ValidateNamed's name
// function spells them.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "edge: " + e.Field + ": " + e.Problem }

// Validate checks the edge's listening and limit fields as given (Start
// defaults the unset timeouts first) and returns every refusal, each a
// *FieldError, joined (errors.Join); nil when all are good. It checks that
// the TLS files can be opened; their contents are Start's to load.
func (e *Edge) Validate() error { return e.ValidateNamed(nil) }

// ValidateNamed is Validate with the fields named in problems by name
// (nil: their Go names); a configuration file's loader passes its own key
// names, so that its messages name its keys without rewriting any text.
func (e *Edge) ValidateNamed(name func(field string) string) error {
	if name == nil {
		name = func(f string) string { return f }
	}
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, a...)})
	}
	for _, f := range []struct{ field, addr string }{
		{"RTSPAddress", e.RTSPAddress}, {"UDPRTPAddress", e.UDPRTPAddress},
		{"UDPRTCPAddress", e.UDPRTCPAddress}, {"RTMPAddress", e.RTMPAddress},
		{"RTSPSAddress", e.RTSPSAddress}, {"RTMPSAddress", e.RTMPSAddress},
	} {
		if err := checkAddr(f.addr); err != nil {
			bad(f.field, "%v", err)
		}
	}
	if (e.UDPRTPAddress == "") != (e.UDPRTCPAddress == "") {
		bad("UDPRTPAddress", "%s and %s are set together or not at all", name("UDPRTPAddress"), name("UDPRTCPAddress"))
	} else if e.UDPRTPAddress != "" {
		rtp, rtcp := port(e.UDPRTPAddress), port(e.UDPRTCPAddress)
		if rtp%2 != 0 || rtcp != rtp+1 {
			bad("UDPRTPAddress", "the RTP port must be even and the RTCP port RTP+1 (got %d and %d)", rtp, rtcp)
		}
		if e.RTSPAddress == "" {
			bad("UDPRTPAddress", "RTP carries RTSP sessions: it needs %s (or set %s and %s to \"\")",
				name("RTSPAddress"), name("UDPRTPAddress"), name("UDPRTCPAddress"))
		}
	}
	if e.ReadTimeout <= 0 {
		bad("ReadTimeout", "must be a positive duration, got %s", e.ReadTimeout)
	}
	if e.MediaTimeout <= 0 {
		bad("MediaTimeout", "must be a positive duration, got %s", e.MediaTimeout)
	}
	if e.ReadInterval < 0 || e.ReadInterval > MaxReadInterval {
		bad("ReadInterval", "must be from 0 to %s, got %s", MaxReadInterval, e.ReadInterval)
	}
	if e.MaxPublishers < 0 {
		bad("MaxPublishers", "must not be negative, got %d", e.MaxPublishers)
	}
	if (e.TLSCert == "") != (e.TLSKey == "") {
		bad("TLSCert", "%s and %s go together", name("TLSCert"), name("TLSKey"))
	}
	for _, f := range []struct{ field, path string }{{"TLSCert", e.TLSCert}, {"TLSKey", e.TLSKey}} {
		if f.path == "" {
			continue
		}
		if file, err := os.Open(f.path); err != nil {
			bad(f.field, "%v", err)
		} else {
			_ = file.Close()
		}
	}
	return errors.Join(errs...)
}

// checkAddr checks an optional host:port listen address.
func checkAddr(a string) error {
	if a == "" {
		return nil
	}
	_, p, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", a, err)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has a bad port", a)
	}
	return nil
}

// port is a's port number; 0 when a has none (checkAddr says why).
func port(a string) int {
	_, p, _ := net.SplitHostPort(a)
	n, _ := strconv.Atoi(p)
	return n
}
