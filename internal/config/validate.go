package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/edge"
	"github.com/streamgrid/streamgrid/internal/transcode"
	"github.com/streamgrid/streamgrid/origin"
)

// Validate checks every key and names each bad one. Where a role has rules
// of its own (the edge's listeners and limits, the origin's packaging), they
// are the role's, called here, so that a configuration that loads is one the
// roles accept.
func (c *Config) Validate() error {
	ck := &checker{}
	ck.node(c.Node)
	ck.addr("api.address", c.API.Address, true)
	ck.bus(c.Bus)
	ck.gossip(c.Gossip)
	ck.edge(c.Edge)
	ck.rtspAuth(c.Edge.RTSPAuthMethods, c.Auth)
	ck.origin(c.Origin)
	ck.cache(c.Cache)
	ck.auth(c.Auth)
	ck.sources(c.Sources)
	ck.hooks(c.Hooks)
	return errors.Join(ck.errs...)
}

// checker collects validation errors, each naming its key.
type checker struct{ errs []error }

func (ck *checker) bad(key, format string, a ...any) {
	ck.errs = append(ck.errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...)))
}

func (ck *checker) positive(key string, d time.Duration) {
	if d <= 0 {
		ck.bad(key, "must be a positive duration, got %s", d)
	}
}

func (ck *checker) oneOf(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		ck.bad(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// httpURL checks an optional http:// or https:// URL.
func (ck *checker) httpURL(key, u string) {
	if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		ck.bad(key, "%q must be an http:// or https:// URL", u)
	}
}

// addr checks a host:port listen or dial address.
func (ck *checker) addr(key, a string, optional bool) {
	if a == "" {
		if !optional {
			ck.bad(key, "is required")
		}
		return
	}
	if _, port, err := net.SplitHostPort(a); err != nil {
		ck.bad(key, "%q is not host:port: %v", a, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		ck.bad(key, "%q has a bad port", a)
	}
}

// tlsFiles checks a section's tls_cert and tls_key: both or neither, and
// readable.
func (ck *checker) tlsFiles(section, cert, key string) {
	if (cert == "") != (key == "") {
		ck.bad(section+".tls_cert", "%s.tls_cert and %s.tls_key go together", section, section)
	}
	for _, f := range []struct{ key, path string }{{section + ".tls_cert", cert}, {section + ".tls_key", key}} {
		if f.path == "" {
			continue
		}
		if b, err := os.Open(f.path); err != nil {
			ck.bad(f.key, "%v", err)
		} else {
			_ = b.Close()
		}
	}
}

// base64Key decodes a base64 key and returns its length; false (and an
// error recorded) when it does not decode.
func (ck *checker) base64Key(key, v string) (int, bool) {
	k, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		ck.bad(key, "is not base64: %v", err)
		return 0, false
	}
	return len(k), true
}

// gossipKey checks a memberlist key: AES-128, -192 or -256.
func (ck *checker) gossipKey(key, v string) {
	if n, ok := ck.base64Key(key, v); ok && n != 16 && n != 24 && n != 32 {
		ck.bad(key, "must decode (base64) to 16, 24 or 32 bytes, got %d", n)
	}
}

func (ck *checker) node(n Node) {
	ck.oneOf("node.log_level", n.LogLevel, "debug", "info", "warn", "error")
	ck.oneOf("node.log_format", n.LogFormat, "text", "json")
	ck.positive("node.drain_timeout", n.DrainTimeout)
	if m := n.MemoryLimit; m < -1 || m > 0 && m < 64<<20 {
		ck.bad("node.memory_limit", "must be 0 (80%% of the cgroup limit), -1 (off) or at least 67108864 bytes, got %d", m)
	}
}

func (ck *checker) bus(b Bus) {
	if b.Replicas < 1 || b.Replicas > 5 {
		ck.bad("bus.replicas", "must be 1..5, got %d", b.Replicas)
	}
	if b.LeaseTTL < 500*time.Millisecond {
		ck.bad("bus.lease_ttl", "must be at least 500ms, got %s", b.LeaseTTL)
	}
	if b.StreamTTL < 0 {
		ck.bad("bus.stream_ttl", "is no longer used (stream records are held by the edge's liveness, bus.node_ttl); must not be negative, got %s", b.StreamTTL)
	}
	if b.NodeTTL < 200*time.Millisecond || b.NodeTTL > b.LeaseTTL {
		ck.bad("bus.node_ttl", "must be 200ms..bus.lease_ttl (%s), got %s", b.LeaseTTL, b.NodeTTL)
	}
	if b.ConnectTimeout < 0 {
		ck.bad("bus.connect_timeout", "must not be negative, got %s", b.ConnectTimeout)
	}
	if b.StateTTL < time.Minute {
		ck.bad("bus.state_ttl", "must be at least 1m, got %s", b.StateTTL)
	}
	if (b.Server.TLSCert == "") != (b.Server.TLSKey == "") {
		ck.bad("bus.server.tls_cert", "bus.server.tls_cert and bus.server.tls_key are set together or not at all")
	}
	if b.Token != "" && b.Server.Users.Any() {
		ck.bad("bus.token", "cannot be combined with bus.server.users (a NATS server takes a token or users)")
	}
	for i, u := range b.URLs {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			ck.bad(fmt.Sprintf("bus.urls[%d]", i), "%q must start with nats:// or tls://", u)
		}
	}
	ck.addr("bus.server.listen", b.Server.Listen, false)
	ck.addr("bus.server.cluster_listen", b.Server.ClusterListen, true)
	ck.addr("bus.server.cluster_advertise", b.Server.ClusterAdvertise, true)
	if b.Server.MaxPayload < 64<<10 || b.Server.MaxPayload > 64<<20 {
		ck.bad("bus.server.max_payload", "must be between 65536 and 67108864 bytes, got %d", b.Server.MaxPayload)
	}
}

func (ck *checker) gossip(g Gossip) {
	ck.addr("gossip.bind", g.Bind, false)
	ck.addr("gossip.advertise", g.Advertise, true)
	if g.SecretKey != "" {
		ck.gossipKey("gossip.secret_key", g.SecretKey)
	}
	for i, k := range g.OldKeys {
		ck.gossipKey(fmt.Sprintf("gossip.old_keys[%d]", i), k)
	}
	if len(g.OldKeys) > 0 && g.SecretKey == "" {
		ck.bad("gossip.old_keys", "needs gossip.secret_key (the key gossip is sent with)")
	}
}

// edge checks the edge section with the edge's own rules
// (edge.Edge.ValidateNamed), each refusal and each field it mentions named
// by its key here.
func (ck *checker) edge(e Edge) {
	err := (&edge.Edge{
		RTSPAddress: e.RTSPAddress, UDPRTPAddress: e.RTPAddress, UDPRTCPAddress: e.RTCPAddress,
		RTMPAddress: e.RTMPAddress, RTSPSAddress: e.RTSPSAddress, RTMPSAddress: e.RTMPSAddress,
		TLSCert: e.TLSCert, TLSKey: e.TLSKey,
		ReadTimeout: e.ReadTimeout, MediaTimeout: e.MediaTimeout, MaxPublishers: e.MaxPublishers,
		ReadInterval: e.ReadInterval,
	}).ValidateNamed(edgeKey)
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, err := range errs {
		var fe *edge.FieldError
		if !errors.As(err, &fe) {
			ck.bad("edge", "%v", err)
			continue
		}
		ck.bad(edgeKey(fe.Field), "%s", fe.Problem)
	}
}

// edgeFields maps the edge's field names to this package's Edge fields
// where they differ.
var edgeFields = map[string]string{"UDPRTPAddress": "RTPAddress", "UDPRTCPAddress": "RTCPAddress"}

// edgeKey is the key of the edge's field named field ("edge.rtp_address").
func edgeKey(field string) string {
	if f, ok := edgeFields[field]; ok {
		field = f
	}
	return "edge." + yamlKey[Edge](field)
}

// rtspAuth checks edge.rtsp_auth_methods against the auth section: Digest
// never sends the password, so it cannot be checked against a hash or
// passed to the external authorizer.
func (ck *checker) rtspAuth(methods []string, a Auth) {
	const key = "edge.rtsp_auth_methods"
	if len(methods) == 0 {
		ck.bad(key, "must list basic, digest or both")
	}
	for i, m := range methods {
		ck.oneOf(fmt.Sprintf("%s[%d]", key, i), m, "basic", "digest")
	}
	if !slices.Contains(methods, "digest") {
		return
	}
	if a.HTTPAddress != "" {
		ck.bad(key, "digest cannot be used with auth.http_address (the authorizer needs the password); use [basic]")
	}
	for i, u := range a.Users {
		if strings.HasPrefix(u.Pass, "sha256:") || strings.HasPrefix(u.Pass, "argon2:") {
			ck.bad(key, "digest cannot check the hashed password of auth.users[%d]; use [basic] (and TLS) or a plain password", i)
			break
		}
	}
}

// origin checks the origin section; the packaging rules are the origin's
// own (origin.HLSConfig.Validate), asked once every value is well-formed.
func (ck *checker) origin(o Origin) {
	ck.addr("origin.http_address", o.HTTPAddress, false)
	ck.addr("origin.advertise_http", o.AdvertiseHTTP, true)
	if o.Capacity < 1 {
		ck.bad("origin.capacity", "must be at least 1, got %d", o.Capacity)
	}
	ck.oneOf("origin.segment_store", o.SegmentStore, SegmentStoreAuto, SegmentStoreDisk, SegmentStoreMemory)
	if o.SegmentDir != "" && !filepath.IsAbs(o.SegmentDir) {
		ck.bad("origin.segment_dir", "must be an absolute path, got %q", o.SegmentDir)
	}
	for i, p := range o.Standby {
		if p == "" {
			ck.bad(fmt.Sprintf("origin.standby[%d]", i), "must not be empty")
			continue
		}
		ck.pattern(fmt.Sprintf("origin.standby[%d]", i), p)
	}
	h := o.HLS
	before := len(ck.errs)
	ck.oneOf("origin.hls.variant", h.Variant, origin.VariantLowLatency, origin.VariantFMP4, origin.VariantMPEGTS)
	ck.positive("origin.hls.segment_duration", h.SegmentDuration)
	ck.positive("origin.hls.part_duration", h.PartDuration)
	ck.positive("origin.hls.idle_timeout", h.IdleTimeout)
	ck.oneOf("origin.hls.muxer", h.Muxer, origin.MuxerBuiltin, origin.MuxerGohlslib)
	ck.oneOf("origin.hls.fresh_start", h.FreshStart, origin.FreshStartPart, origin.FreshStartSegment)
	if len(ck.errs) == before {
		var fe *origin.FieldError
		if err := origin.HLSConfig(h).Validate(); errors.As(err, &fe) {
			ck.bad("origin.hls."+yamlKey[HLS](fe.Field), "%s", fe.Problem)
		} else if err != nil {
			ck.bad("origin.hls", "%v", err)
		}
	}
	ck.transcode(o.Transcode)
}

// yamlKey is the yaml key of T's field named field.
func yamlKey[T any](field string) string {
	f, ok := reflect.TypeFor[T]().FieldByName(field)
	if !ok {
		return field
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// transcode checks origin.transcode.
func (ck *checker) transcode(t Transcode) {
	const key = "origin.transcode"
	if t.FFmpeg == "" {
		ck.bad(key+".ffmpeg", "must not be empty")
	}
	if t.Encoder == "" {
		ck.bad(key+".encoder", "must not be empty (auto, nvenc or x264)")
	} else if err := transcode.Encoder(t.Encoder).Validate(); err != nil {
		ck.bad(key+".encoder", "%v", err)
	}
	if t.Fallback == "" {
		ck.bad(key+".fallback", "must not be empty (cpu or refuse)")
	} else if err := transcode.Policy(t.Fallback).Validate(); err != nil {
		ck.bad(key+".fallback", "%v", err)
	}
	if t.GPUSessions < 0 {
		ck.bad(key+".gpu_sessions", "must not be negative, got %d", t.GPUSessions)
	}
	if t.CPUSlots < 0 {
		ck.bad(key+".cpu_slots", "must not be negative, got %d", t.CPUSlots)
	}
	for i, l := range t.Ladders {
		lk := fmt.Sprintf("%s.ladders[%d]", key, i)
		if l.Match == "" {
			ck.bad(lk+".match", "is required")
		} else {
			ck.pattern(lk+".match", l.Match)
		}
		if err := transcode.Policy(l.Fallback).Validate(); err != nil {
			ck.bad(lk+".fallback", "%v", err)
		}
		if err := l.Ladder.Validate(); err != nil {
			var fe *transcode.FieldError
			if errors.As(err, &fe) {
				ck.bad(lk+"."+fe.Field, "%s", fe.Problem)
			} else {
				ck.bad(lk, "%v", err)
			}
		}
	}
}

// pattern checks a path.Match pattern.
func (ck *checker) pattern(key, p string) {
	if _, err := path.Match(p, "x"); err != nil {
		ck.bad(key, "%q is not a valid pattern: %v", p, err)
	}
}

func (ck *checker) cache(c Cache) {
	ck.addr("cache.http_address", c.HTTPAddress, false)
	if c.MaxBytes < 1<<20 {
		ck.bad("cache.max_bytes", "must be at least 1048576, got %d", c.MaxBytes)
	}
	ck.positive("cache.upstream_timeout", c.UpstreamTimeout)
	if c.MaxConnsPerIP < 0 {
		ck.bad("cache.max_conns_per_ip", "must not be negative (0 = no cap), got %d", c.MaxConnsPerIP)
	}
	if c.MaxUpstreamConns < 1 {
		ck.bad("cache.max_upstream_conns", "must be at least 1, got %d", c.MaxUpstreamConns)
	}
	ck.tlsFiles("cache", c.TLSCert, c.TLSKey)
}

func (ck *checker) sources(sources []Source) {
	seen := map[string]bool{}
	for i, s := range sources {
		key := fmt.Sprintf("sources[%d]", i)
		if s.Name == "" {
			ck.bad(key+".name", "is required")
		} else if err := bus.ValidatePath(s.Name); err != nil {
			ck.bad(key+".name", "%v", err)
		} else if seen[s.Name] {
			ck.bad(key+".name", "%q is used twice", s.Name)
		}
		seen[s.Name] = true
		if !strings.HasPrefix(s.URL, "rtsp://") && !strings.HasPrefix(s.URL, "rtsps://") {
			ck.bad(key+".url", "must be an rtsp:// or rtsps:// URL")
		}
		ck.oneOf(key+".transport", s.Transport, "tcp", "udp", "auto")
		if s.BackoffMin <= 0 || s.BackoffMax < s.BackoffMin {
			ck.bad(key+".backoff_max", "backoff_min must be positive and backoff_max at least backoff_min")
		}
		if s.CloseAfter < time.Second {
			ck.bad(key+".close_after", "must be at least 1s, got %s", s.CloseAfter)
		}
	}
}

func (ck *checker) hooks(h Hooks) {
	ck.httpURL("hooks.url", h.URL)
	for i, e := range h.Events {
		ck.oneOf(fmt.Sprintf("hooks.events[%d]", i), e, HookEvents...)
	}
	ck.positive("hooks.timeout", h.Timeout)
	if h.Retries < 0 || h.Retries > 20 {
		ck.bad("hooks.retries", "must be 0..20, got %d", h.Retries)
	}
	if h.QueueSize < 1 {
		ck.bad("hooks.queue_size", "must be at least 1, got %d", h.QueueSize)
	}
}

func (ck *checker) auth(a Auth) {
	users := map[string]bool{}
	for i, u := range a.Users {
		key := fmt.Sprintf("auth.users[%d]", i)
		if u.User == "" {
			ck.bad(key+".user", "is required (\"any\" for no credentials)")
		} else if users[u.User] {
			ck.bad(key+".user", "%q is listed twice", u.User)
		}
		users[u.User] = true
		if u.User != "any" && u.Pass == "" {
			ck.bad(key+".pass", "is required for a named user")
		}
		if scheme, rest, ok := strings.Cut(u.Pass, ":"); ok && (scheme == "sha256" || scheme == "argon2") && rest == "" {
			ck.bad(key+".pass", "%s: hash is empty", scheme)
		}
		for j, ip := range u.IPs {
			if _, _, err := net.ParseCIDR(ip); err != nil && net.ParseIP(ip) == nil {
				ck.bad(fmt.Sprintf("%s.ips[%d]", key, j), "%q is neither a CIDR network nor an IP address", ip)
			}
		}
		for j, p := range u.Permissions {
			pk := fmt.Sprintf("%s.permissions[%d]", key, j)
			ck.oneOf(pk+".action", p.Action, "publish", "read", "api", "metrics", "pprof")
			if p.Path != "" {
				ck.pattern(pk+".path", p.Path)
			}
		}
	}
	ck.httpURL("auth.http_address", a.HTTPAddress)
	ck.positive("auth.http_timeout", a.HTTPTimeout)
	if a.HTTPCacheTTL < 0 {
		ck.bad("auth.http_cache_ttl", "must not be negative, got %s", a.HTTPCacheTTL)
	}
	ck.oneOf("auth.http_fallback", a.HTTPFallback, "deny", "allow")
	if a.SigningKey != "" {
		if n, ok := ck.base64Key("auth.signing_key", a.SigningKey); ok && n < 16 {
			ck.bad("auth.signing_key", "must decode to at least 16 bytes, got %d", n)
		}
	}
	if a.OriginSecret != "" && len(a.OriginSecret) < 16 {
		ck.bad("auth.origin_secret", "must be at least 16 characters, got %d", len(a.OriginSecret))
	}
}
