package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/config"
)

// runSign prints a signed playback path for a stream, made with
// auth.signing_key of the configuration (or SG_AUTH_SIGNING_KEY).
func runSign(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (streamgrid.yml) holding auth.signing_key")
	path := fs.String("path", "", "stream path, e.g. live/cam1 (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the URL stays valid")
	ip := fs.String("ip", "", "client network (CIDR, or one address) the URL is valid from; empty: any")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: streamgrid sign --config streamgrid.yml --path live/cam1 [--ttl 1h] [--ip 203.0.113.0/24]\n\n"+
			"prints /s/<token>/<path>/index.m3u8; prefix it with a cache's http://host:8888\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "streamgrid sign: "+format+"\n", a...)
		return 2
	}
	p := strings.Trim(*path, "/")
	if p == "" {
		return fail("--path is required")
	}
	if err := bus.ValidatePath(p); err != nil {
		return fail("--path: %v", err)
	}
	if *ttl <= 0 {
		return fail("--ttl must be positive")
	}
	var network *net.IPNet
	if *ip != "" {
		var err error
		if _, network, err = net.ParseCIDR(*ip); err != nil {
			a := net.ParseIP(*ip)
			if a == nil {
				return fail("--ip: %q is neither a CIDR network nor an address", *ip)
			}
			bits := 128
			if a4 := a.To4(); a4 != nil {
				a, bits = a4, 32
			}
			network = &net.IPNet{IP: a, Mask: net.CIDRMask(bits, bits)}
		}
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		return fail("%v", err)
	}
	if cfg.Auth.SigningKey == "" {
		return fail("auth.signing_key is not set (in the file or SG_AUTH_SIGNING_KEY)")
	}
	key, err := base64.StdEncoding.DecodeString(cfg.Auth.SigningKey)
	if err != nil {
		return fail("auth.signing_key: %v", err)
	}
	fmt.Fprintln(stdout, hlscache.SignPath(key, p, time.Now().Add(*ttl), network))
	return 0
}
