// Package config loads streamgrid.yml: YAML with unknown keys refused,
// environment overrides SG_<SECTION>_<KEY> (nested keys joined with '_'),
// defaults for every key, and validation errors that name the key.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/transcode"
)

// Config is the whole file. Every field's yaml key is documented in the sample streamgrid.yml.
type Config struct {
	Node    Node     `yaml:"node"`
	API     API      `yaml:"api"`
	Bus     Bus      `yaml:"bus"`
	Gossip  Gossip   `yaml:"gossip"`
	Edge    Edge     `yaml:"edge"`
	Origin  Origin   `yaml:"origin"`
	Cache   Cache    `yaml:"cache"`
	Auth    Auth     `yaml:"auth"`
	Hooks   Hooks    `yaml:"hooks"`
	Sources []Source `yaml:"sources"`
}

// Node is about this process.
type Node struct {
	Name      string `yaml:"name"`
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// DrainTimeout bounds the graceful stop on SIGTERM.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// MemoryLimit is the node's memory budget in bytes: Go's soft memory
	// limit (unless GOMEMLIMIT is set) and the cap of the cache's LRU (half
	// of it). 0: 80 % of the container's cgroup limit, none outside one;
	// -1: no limit. See internal/memlimit and docs/operations.md.
	MemoryLimit int64 `yaml:"memory_limit"`
}

// API is the REST API, /metrics, /healthz and the status page.
type API struct {
	Address string `yaml:"address"`
}

// Bus says how to reach NATS, and how to run an embedded node.
type Bus struct {
	URLs      []string `yaml:"urls"`
	User      string   `yaml:"user"`
	Password  string   `yaml:"password"`
	Token     string   `yaml:"token"`
	CredsFile string   `yaml:"creds_file"`
	// TLSCA is a PEM file of the CAs that verify the bus's certificate.
	TLSCA string `yaml:"tls_ca"`
	// ConnectTimeout is how long a role keeps retrying its first connection
	// to the bus (the bus starting alongside it) before it gives up.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	Replicas       int           `yaml:"replicas"`
	LeaseTTL       time.Duration `yaml:"lease_ttl"`
	StreamTTL      time.Duration `yaml:"stream_ttl"`
	// StateTTL is how long a stream's playlist state outlives its last write.
	StateTTL time.Duration `yaml:"state_ttl"`
	Server   BusServer     `yaml:"server"`
}

// BusServer is the embedded NATS server (`streamgrid bus`, and the all-in-one).
type BusServer struct {
	Name             string   `yaml:"name"`
	Listen           string   `yaml:"listen"`
	ClusterName      string   `yaml:"cluster_name"`
	ClusterListen    string   `yaml:"cluster_listen"`
	ClusterAdvertise string   `yaml:"cluster_advertise"`
	Routes           []string `yaml:"routes"`
	StoreDir         string   `yaml:"store_dir"`
	MaxPayload       int      `yaml:"max_payload"`
	// Users are the passwords of the role users clients authenticate as.
	Users BusUsers `yaml:"users"`
	// ClusterPassword authenticates the routes between bus nodes (user "route").
	ClusterPassword string `yaml:"cluster_password"`
	// TLSCert and TLSKey (PEM files), when set, make clients use TLS and
	// routes mutual TLS, verified against TLSCA (the system's CAs when empty).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	TLSCA   string `yaml:"tls_ca"`
	// Insecure allows a listener off loopback without credentials.
	Insecure bool `yaml:"insecure"`
}

// BusUsers are the embedded server's users, a password each (plain or a
// bcrypt hash); an empty one leaves that user out.
type BusUsers struct {
	Edge   string `yaml:"edge"`
	Origin string `yaml:"origin"`
	Cache  string `yaml:"cache"`
	Run    string `yaml:"run"`
	Admin  string `yaml:"admin"`
}

// Any reports whether a user is configured.
func (u BusUsers) Any() bool { return u.Edge+u.Origin+u.Cache+u.Run+u.Admin != "" }

// Gossip is memberlist.
type Gossip struct {
	Bind      string   `yaml:"bind"`
	Advertise string   `yaml:"advertise"`
	Seeds     []string `yaml:"seeds"`
	SecretKey string   `yaml:"secret_key"`
	// OldKeys are further keys (base64) accepted for incoming gossip but
	// never used to send: the keys being rotated in or out.
	OldKeys []string `yaml:"old_keys"`
	// Insecure allows a bind off loopback without secret_key.
	Insecure bool `yaml:"insecure"`
}

// Edge is ingest.
type Edge struct {
	RTSPAddress string        `yaml:"rtsp_address"`
	RTPAddress  string        `yaml:"rtp_address"`
	RTCPAddress string        `yaml:"rtcp_address"`
	RTMPAddress string        `yaml:"rtmp_address"`
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MediaTimeout drops a publisher (or pulled camera) that sends no media
	// for this long, even while it keeps its connection alive.
	MediaTimeout time.Duration `yaml:"media_timeout"`
	// MaxPublishers bounds the RTSP and RTMP publishers of this edge (pulled
	// cameras are not counted); 0 means no limit.
	MaxPublishers int `yaml:"max_publishers"`
	// RTSPAuthMethods are the RTSP authentication schemes offered to
	// publishers: basic and digest. Digest cannot check hashed passwords or
	// ask the external authorizer.
	RTSPAuthMethods []string `yaml:"rtsp_auth_methods"`
	// TLSCert and TLSKey are PEM files; both set: publishers may also
	// connect over RTSPS (RTSPSAddress) and RTMPS (RTMPSAddress). Read at
	// start; a new certificate needs a restart.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// RTSPSAddress and RTMPSAddress are the TLS listen addresses, used only
	// when TLSCert is set; "" disables that one.
	RTSPSAddress string `yaml:"rtsps_address"`
	RTMPSAddress string `yaml:"rtmps_address"`
}

// Origin is packaging.
type Origin struct {
	HTTPAddress   string `yaml:"http_address"`
	AdvertiseHTTP string `yaml:"advertise_http"`
	Capacity      int    `yaml:"capacity"`
	HLS           HLS    `yaml:"hls"`
	// Transcode configures ABR-ladder transcoding; without ladders every
	// stream is packaged as it comes (passthrough).
	Transcode Transcode `yaml:"transcode"`
}

// Transcode is the origin's ABR-ladder transcoding.
type Transcode struct {
	// FFmpeg is the ffmpeg binary (looked up in PATH when it has no slash).
	FFmpeg string `yaml:"ffmpeg"`
	// Encoder is auto, nvenc or x264.
	Encoder string `yaml:"encoder"`
	// Fallback is cpu or refuse: what happens when no GPU encoder is usable.
	Fallback string `yaml:"fallback"`
	// GPUSessions is how many streams this origin transcodes on the GPU;
	// 0 means 8 when NVENC is usable, else none.
	GPUSessions int `yaml:"gpu_sessions"`
	// CPUSlots is how many streams this origin transcodes on the CPU.
	CPUSlots int `yaml:"cpu_slots"`
	// Ladders, first match wins; a stream no ladder matches is passed through.
	Ladders []LadderRule `yaml:"ladders"`
}

// LadderRule applies a ladder to the streams whose path matches Match.
type LadderRule struct {
	// Match is a path.Match pattern on the stream path ("live/*", "cams/door");
	// '*' does not cross '/', and there is no "**".
	Match            string `yaml:"match"`
	transcode.Ladder `yaml:",inline"`
}

// HLS is the packaging of every stream.
type HLS struct {
	Variant         string        `yaml:"variant"`
	SegmentDuration time.Duration `yaml:"segment_duration"`
	PartDuration    time.Duration `yaml:"part_duration"`
	SegmentCount    int           `yaml:"segment_count"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
}

// Cache is the viewers' HTTP server.
type Cache struct {
	HTTPAddress     string        `yaml:"http_address"`
	MaxBytes        int64         `yaml:"max_bytes"`
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	AllowOrigin     string        `yaml:"allow_origin"`
	// MaxConnsPerIP caps the open viewer connections of one client IP;
	// more are answered 429 and closed. 0 = no cap.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxUpstreamConns caps the concurrent requests to one origin; more
	// wait (within their deadline) for a slot.
	MaxUpstreamConns int `yaml:"max_upstream_conns"`
	// TLSCert and TLSKey are PEM files; both set: viewers connect over
	// HTTPS (HTTP/2 on).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
}

// Auth is who may do what (publish, read, api, metrics, pprof), on every
// protocol, plus the keys for signed playback URLs and for origin requests.
// Without users and without http_address, publishing and reading are open
// and api/metrics/pprof are served to loopback clients only.
type Auth struct {
	// Users and their permissions; "any" as user means no credentials needed.
	Users []AuthUser `yaml:"users"`
	// HTTPAddress is an optional external authorizer (http://host/path): it
	// receives POST JSON {user, pass, ip, action, path, protocol, query}; a 2xx
	// answer allows.
	HTTPAddress string `yaml:"http_address"`
	// HTTPTimeout bounds one call to the external authorizer.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// HTTPCacheTTL is how long an authorizer decision (allow or deny) is reused.
	HTTPCacheTTL time.Duration `yaml:"http_cache_ttl"`
	// HTTPFallback is deny or allow: what applies when the authorizer is down.
	HTTPFallback string `yaml:"http_fallback"`
	// SigningKey is base64 of an HMAC key (at least 16 bytes); when set,
	// viewers need signed URLs (/s/<token>/<path>/...) at the caches.
	SigningKey string `yaml:"signing_key"`
	// OriginSecret is a secret shared by caches and origins: caches send it
	// with every upstream request and origins refuse requests without it.
	// Empty: origins serve anyone who reaches their HLS port.
	OriginSecret string `yaml:"origin_secret"`
}

// AuthUser is one user and what it may do.
type AuthUser struct {
	User string `yaml:"user"`
	// Pass is plain, "sha256:<base64 of the digest>" or "argon2:<PHC string>".
	Pass string `yaml:"pass"`
	// IPs are the client networks (CIDR, or a bare address) this user may
	// come from; empty means anywhere.
	IPs         []string         `yaml:"ips"`
	Permissions []AuthPermission `yaml:"permissions"`
}

// AuthPermission grants an action on the stream paths Path matches
// (path.Match; empty = every path).
type AuthPermission struct {
	Action string `yaml:"action"` // publish, read, api, metrics or pprof
	Path   string `yaml:"path"`
}

// Enabled reports whether an auth section says anything about users: without
// it the node keeps the open defaults (publish and read for anyone; api,
// metrics and pprof for loopback clients only).
func (a Auth) Enabled() bool { return len(a.Users) > 0 || a.HTTPAddress != "" }

// Source is a camera the edges pull.
type Source struct {
	Name       string        `yaml:"name"`
	URL        string        `yaml:"url"`
	Transport  string        `yaml:"transport"`
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// OnDemand: the camera is pulled only while viewers ask for it at a cache.
	OnDemand bool `yaml:"on_demand"`
	// CloseAfter stops an on-demand pull this long after the last viewer request.
	CloseAfter time.Duration `yaml:"close_after"`
}

// Hooks is the HTTP webhook for integrators: a POST of JSON per event.
type Hooks struct {
	// URL receives the events (http:// or https://); empty disables hooks.
	URL string `yaml:"url"`
	// Events to send: ready, gone, refused, failover.
	Events []string `yaml:"events"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `yaml:"timeout"`
	// Retries after a failed attempt (exponential backoff).
	Retries int `yaml:"retries"`
	// QueueSize bounds the events waiting for delivery; past it new events are dropped and counted.
	QueueSize int `yaml:"queue_size"`
}

// HookEvents are the event names hooks.events accepts.
var HookEvents = []string{"ready", "gone", "refused", "failover"}

// Default returns the configuration with every default filled in. The
// listeners that only the cluster uses (NATS, memberlist, origin HLS) bind
// loopback: the all-in-one exposes only what cameras and viewers need.
func Default() *Config {
	return &Config{
		Node: Node{LogLevel: "info", LogFormat: "text", DrainTimeout: 15 * time.Second},
		API:  API{Address: ":9997"},
		Bus: Bus{
			ConnectTimeout: time.Minute,
			Replicas:       1,
			LeaseTTL:       3 * time.Second,
			StreamTTL:      10 * time.Second,
			StateTTL:       6 * time.Hour,
			Server: BusServer{
				Listen:        "127.0.0.1:4222",
				ClusterName:   "streamgrid",
				ClusterListen: "",
				MaxPayload:    4 << 20,
			},
		},
		Gossip: Gossip{Bind: "127.0.0.1:7946"},
		Edge: Edge{
			RTSPAddress: ":8554",
			RTPAddress:  ":8000",
			RTCPAddress: ":8001",
			RTMPAddress: ":1935",
			ReadTimeout: 10 * time.Second,

			MediaTimeout:    10 * time.Second,
			MaxPublishers:   500,
			RTSPAuthMethods: []string{"basic", "digest"},
			RTSPSAddress:    ":8322",
			RTMPSAddress:    ":1936",
		},
		Origin: Origin{
			HTTPAddress: "127.0.0.1:8889",
			Capacity:    100,
			HLS: HLS{
				Variant:         "lowLatency",
				SegmentDuration: time.Second,
				PartDuration:    200 * time.Millisecond,
				SegmentCount:    7,
				IdleTimeout:     10 * time.Second,
			},
			Transcode: Transcode{
				FFmpeg:   "ffmpeg",
				Encoder:  "auto",
				Fallback: "cpu",
				CPUSlots: 2,
				Ladders:  []LadderRule{},
			},
		},
		Cache: Cache{
			HTTPAddress:      ":8888",
			MaxBytes:         256 << 20,
			UpstreamTimeout:  5 * time.Second,
			AllowOrigin:      "*",
			MaxConnsPerIP:    256,
			MaxUpstreamConns: 1024,
		},
		Auth: Auth{
			HTTPTimeout:  2 * time.Second,
			HTTPCacheTTL: 10 * time.Second,
			HTTPFallback: "deny",
		},
		Hooks: Hooks{
			Events:    slices.Clone(HookEvents),
			Timeout:   5 * time.Second,
			Retries:   3,
			QueueSize: 1024,
		},
	}
}

// DefaultCloseAfter is sources[].close_after when the file leaves it out.
const DefaultCloseAfter = 10 * time.Second

// Load reads the file at path (none when path is ""), then the environment.
func Load(path string, environ []string) (*Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := c.decode(b); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(c, environ); err != nil {
		return nil, err
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.Transport == "" {
			s.Transport = "tcp"
		}
		if s.BackoffMin == 0 {
			s.BackoffMin = time.Second
		}
		if s.BackoffMax == 0 {
			s.BackoffMax = 30 * time.Second
		}
		if s.CloseAfter == 0 {
			s.CloseAfter = DefaultCloseAfter
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) decode(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if err == nil || errors.Is(err, io.EOF) {
		c.Bus.URLs = nilIfEmpty(c.Bus.URLs)
		c.Bus.Server.Routes = nilIfEmpty(c.Bus.Server.Routes)
		c.Gossip.Seeds = nilIfEmpty(c.Gossip.Seeds)
		c.Gossip.OldKeys = nilIfEmpty(c.Gossip.OldKeys)
		if len(c.Sources) == 0 {
			c.Sources = nil
		}
		if len(c.Auth.Users) == 0 {
			c.Auth.Users = nil
		}
		return nil
	}
	return nameKeys(b, err)
}

func nilIfEmpty(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	return v
}

// nameKeys rewrites yaml.v3's "line N: ..." errors to name the key at line N.
func nameKeys(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return err
	}
	keys := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				keys[n.Content[i].Line] = k
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", prefix, i))
			}
		}
	}
	walk(&root, "")
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		var line int
		if _, scanErr := fmt.Sscanf(m, "line %d:", &line); scanErr == nil && keys[line] != "" {
			m = keys[line] + ": " + m
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// ---- environment ----

// EnvPrefix starts every override variable.
const EnvPrefix = "SG_"

// applyEnv sets every leaf key from SG_<PATH> where PATH is the key path in
// upper case joined with '_' (origin.hls.variant → SG_ORIGIN_HLS_VARIANT).
// Lists take comma-separated values. An SG_ variable that names no key is an error.
func applyEnv(c *Config, environ []string) error {
	leaves := map[string]reflect.Value{}
	names := map[string]string{}
	collectLeaves(reflect.ValueOf(c).Elem(), "", leaves, names)
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		f, ok := leaves[k]
		if !ok {
			return fmt.Errorf("config: environment variable %s names no configuration key", k)
		}
		if err := setFromString(f, v); err != nil {
			return fmt.Errorf("config: %s (%s): %w", k, names[k], err)
		}
	}
	return nil
}

func collectLeaves(v reflect.Value, prefix string, out map[string]reflect.Value, names map[string]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			collectLeaves(f, key, out, names)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			// Lists of records (sources) are set in the file only.
		default:
			env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
			out[env] = f
			names[env] = key
		}
	}
}

func setFromString(f reflect.Value, s string) error {
	if f.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case reflect.Slice:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported kind %s", f.Kind())
	}
	return nil
}

// ---- validation ----

// Validate checks every key and names the first bad one.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...)))
	}
	switch c.Node.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("node.log_level", "%q is not one of debug, info, warn, error", c.Node.LogLevel)
	}
	switch c.Node.LogFormat {
	case "text", "json":
	default:
		bad("node.log_format", "%q is not one of text, json", c.Node.LogFormat)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration, got %s", d)
		}
	}
	positive("node.drain_timeout", c.Node.DrainTimeout)
	if m := c.Node.MemoryLimit; m < -1 || m > 0 && m < 64<<20 {
		bad("node.memory_limit", "must be 0 (80%% of the cgroup limit), -1 (off) or at least 67108864 bytes, got %d", m)
	}
	addr := func(key, a string, optional bool) {
		if a == "" {
			if !optional {
				bad(key, "is required")
			}
			return
		}
		if _, port, err := net.SplitHostPort(a); err != nil {
			bad(key, "%q is not host:port: %v", a, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(key, "%q has a bad port", a)
		}
	}
	// tlsFiles checks a section's tls_cert and tls_key: both or neither,
	// and readable.
	tlsFiles := func(section, cert, key string) {
		if (cert == "") != (key == "") {
			bad(section+".tls_cert", "%s.tls_cert and %s.tls_key go together", section, section)
		}
		for _, f := range []struct{ key, path string }{{section + ".tls_cert", cert}, {section + ".tls_key", key}} {
			if f.path == "" {
				continue
			}
			if b, err := os.Open(f.path); err != nil {
				bad(f.key, "%v", err)
			} else {
				_ = b.Close()
			}
		}
	}
	addr("api.address", c.API.Address, true)
	if c.Bus.Replicas < 1 || c.Bus.Replicas > 5 {
		bad("bus.replicas", "must be 1..5, got %d", c.Bus.Replicas)
	}
	if c.Bus.LeaseTTL < 500*time.Millisecond {
		bad("bus.lease_ttl", "must be at least 500ms, got %s", c.Bus.LeaseTTL)
	}
	if c.Bus.StreamTTL < c.Bus.LeaseTTL {
		bad("bus.stream_ttl", "must be at least bus.lease_ttl (%s), got %s", c.Bus.LeaseTTL, c.Bus.StreamTTL)
	}
	if c.Bus.ConnectTimeout < 0 {
		bad("bus.connect_timeout", "must not be negative, got %s", c.Bus.ConnectTimeout)
	}
	if c.Bus.StateTTL < time.Minute {
		bad("bus.state_ttl", "must be at least 1m, got %s", c.Bus.StateTTL)
	}
	if (c.Bus.Server.TLSCert == "") != (c.Bus.Server.TLSKey == "") {
		bad("bus.server.tls_cert", "bus.server.tls_cert and bus.server.tls_key are set together or not at all")
	}
	if c.Bus.Token != "" && c.Bus.Server.Users.Any() {
		bad("bus.token", "cannot be combined with bus.server.users (a NATS server takes a token or users)")
	}
	for i, u := range c.Bus.URLs {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			bad(fmt.Sprintf("bus.urls[%d]", i), "%q must start with nats:// or tls://", u)
		}
	}
	addr("bus.server.listen", c.Bus.Server.Listen, false)
	addr("bus.server.cluster_listen", c.Bus.Server.ClusterListen, true)
	addr("bus.server.cluster_advertise", c.Bus.Server.ClusterAdvertise, true)
	if c.Bus.Server.MaxPayload < 64<<10 || c.Bus.Server.MaxPayload > 64<<20 {
		bad("bus.server.max_payload", "must be between 65536 and 67108864 bytes, got %d", c.Bus.Server.MaxPayload)
	}
	addr("gossip.bind", c.Gossip.Bind, false)
	addr("gossip.advertise", c.Gossip.Advertise, true)
	gossipKey := func(key, v string) {
		if k, err := base64.StdEncoding.DecodeString(v); err != nil {
			bad(key, "%v", err)
		} else if n := len(k); n != 16 && n != 24 && n != 32 {
			bad(key, "must decode (base64) to 16, 24 or 32 bytes, got %d", n)
		}
	}
	if c.Gossip.SecretKey != "" {
		gossipKey("gossip.secret_key", c.Gossip.SecretKey)
	}
	for i, k := range c.Gossip.OldKeys {
		gossipKey(fmt.Sprintf("gossip.old_keys[%d]", i), k)
	}
	if len(c.Gossip.OldKeys) > 0 && c.Gossip.SecretKey == "" {
		bad("gossip.old_keys", "needs gossip.secret_key (the key gossip is sent with)")
	}
	addr("edge.rtsp_address", c.Edge.RTSPAddress, true)
	addr("edge.rtp_address", c.Edge.RTPAddress, true)
	addr("edge.rtcp_address", c.Edge.RTCPAddress, true)
	addr("edge.rtmp_address", c.Edge.RTMPAddress, true)
	if (c.Edge.RTPAddress == "") != (c.Edge.RTCPAddress == "") {
		bad("edge.rtp_address", "edge.rtp_address and edge.rtcp_address are set together or not at all")
	} else if c.Edge.RTPAddress != "" {
		_, rtp, _ := net.SplitHostPort(c.Edge.RTPAddress)
		_, rtcp, _ := net.SplitHostPort(c.Edge.RTCPAddress)
		a, _ := strconv.Atoi(rtp)
		b, _ := strconv.Atoi(rtcp)
		if a%2 != 0 || b != a+1 {
			bad("edge.rtp_address", "the RTP port must be even and the RTCP port RTP+1 (got %d and %d)", a, b)
		}
	}
	positive("edge.read_timeout", c.Edge.ReadTimeout)
	positive("edge.media_timeout", c.Edge.MediaTimeout)
	if c.Edge.MaxPublishers < 0 {
		bad("edge.max_publishers", "must not be negative, got %d", c.Edge.MaxPublishers)
	}
	validateRTSPAuth(c.Edge.RTSPAuthMethods, c.Auth, bad)
	addr("edge.rtsps_address", c.Edge.RTSPSAddress, true)
	addr("edge.rtmps_address", c.Edge.RTMPSAddress, true)
	tlsFiles("edge", c.Edge.TLSCert, c.Edge.TLSKey)
	addr("origin.http_address", c.Origin.HTTPAddress, false)
	addr("origin.advertise_http", c.Origin.AdvertiseHTTP, true)
	if c.Origin.Capacity < 1 {
		bad("origin.capacity", "must be at least 1, got %d", c.Origin.Capacity)
	}
	h := c.Origin.HLS
	switch h.Variant {
	case "lowLatency", "fmp4", "mpegts":
	default:
		bad("origin.hls.variant", "%q is not one of lowLatency, fmp4, mpegts", h.Variant)
	}
	positive("origin.hls.segment_duration", h.SegmentDuration)
	positive("origin.hls.part_duration", h.PartDuration)
	positive("origin.hls.idle_timeout", h.IdleTimeout)
	if h.Variant == "lowLatency" && h.SegmentCount < 7 {
		bad("origin.hls.segment_count", "must be at least 7 for lowLatency, got %d", h.SegmentCount)
	} else if h.SegmentCount < 3 {
		bad("origin.hls.segment_count", "must be at least 3, got %d", h.SegmentCount)
	}
	if h.Variant == "lowLatency" && h.PartDuration > h.SegmentDuration {
		bad("origin.hls.part_duration", "must not exceed origin.hls.segment_duration")
	}
	validateTranscode(c.Origin.Transcode, bad)
	addr("cache.http_address", c.Cache.HTTPAddress, false)
	if c.Cache.MaxBytes < 1<<20 {
		bad("cache.max_bytes", "must be at least 1048576, got %d", c.Cache.MaxBytes)
	}
	positive("cache.upstream_timeout", c.Cache.UpstreamTimeout)
	if c.Cache.MaxConnsPerIP < 0 {
		bad("cache.max_conns_per_ip", "must not be negative (0 = no cap), got %d", c.Cache.MaxConnsPerIP)
	}
	if c.Cache.MaxUpstreamConns < 1 {
		bad("cache.max_upstream_conns", "must be at least 1, got %d", c.Cache.MaxUpstreamConns)
	}
	tlsFiles("cache", c.Cache.TLSCert, c.Cache.TLSKey)
	validateAuth(c.Auth, bad)
	seen := map[string]bool{}
	for i, s := range c.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		if s.Name == "" {
			bad(key+".name", "is required")
		} else if err := bus.ValidatePath(s.Name); err != nil {
			bad(key+".name", "%v", err)
		} else if seen[s.Name] {
			bad(key+".name", "%q is used twice", s.Name)
		}
		seen[s.Name] = true
		if !strings.HasPrefix(s.URL, "rtsp://") && !strings.HasPrefix(s.URL, "rtsps://") {
			bad(key+".url", "must be an rtsp:// or rtsps:// URL")
		}
		switch s.Transport {
		case "tcp", "udp", "auto":
		default:
			bad(key+".transport", "%q is not one of tcp, udp, auto", s.Transport)
		}
		if s.BackoffMin <= 0 || s.BackoffMax < s.BackoffMin {
			bad(key+".backoff_max", "backoff_min must be positive and backoff_max at least backoff_min")
		}
		if s.CloseAfter < time.Second {
			bad(key+".close_after", "must be at least 1s, got %s", s.CloseAfter)
		}
	}
	validateHooks(c.Hooks, bad)
	return errors.Join(errs...)
}

// Key decodes gossip.secret_key (base64).
func (g Gossip) Key() ([]byte, error) {
	if g.SecretKey == "" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(g.SecretKey)
}

// Keys decodes gossip.old_keys (base64).
func (g Gossip) Keys() ([][]byte, error) {
	var out [][]byte
	for _, k := range g.OldKeys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// validateTranscode checks origin.transcode; bad records an error for a key.
func validateTranscode(t Transcode, bad func(key, format string, args ...any)) {
	const key = "origin.transcode"
	if t.FFmpeg == "" {
		bad(key+".ffmpeg", "must not be empty")
	}
	if t.Encoder == "" {
		bad(key+".encoder", "must not be empty (auto, nvenc or x264)")
	} else if err := transcode.Encoder(t.Encoder).Validate(); err != nil {
		bad(key+".encoder", "%v", err)
	}
	if t.Fallback == "" {
		bad(key+".fallback", "must not be empty (cpu or refuse)")
	} else if err := transcode.Policy(t.Fallback).Validate(); err != nil {
		bad(key+".fallback", "%v", err)
	}
	if t.GPUSessions < 0 {
		bad(key+".gpu_sessions", "must not be negative, got %d", t.GPUSessions)
	}
	if t.CPUSlots < 0 {
		bad(key+".cpu_slots", "must not be negative, got %d", t.CPUSlots)
	}
	for i, l := range t.Ladders {
		lk := fmt.Sprintf("%s.ladders[%d]", key, i)
		if l.Match == "" {
			bad(lk+".match", "is required")
		} else if _, err := path.Match(l.Match, "x"); err != nil {
			bad(lk+".match", "%q is not a valid pattern: %v", l.Match, err)
		}
		if err := l.Ladder.Validate(); err != nil {
			var fe *transcode.FieldError
			if errors.As(err, &fe) {
				bad(lk+"."+fe.Field, "%s", fe.Problem)
			} else {
				bad(lk, "%v", err)
			}
		}
	}
}

// validateRTSPAuth checks edge.rtsp_auth_methods against the auth section:
// Digest never sends the password, so it cannot be checked against a hash
// or passed to the external authorizer.
func validateRTSPAuth(methods []string, a Auth, bad func(key, format string, args ...any)) {
	const key = "edge.rtsp_auth_methods"
	if len(methods) == 0 {
		bad(key, "must list basic, digest or both")
	}
	digest := false
	for i, m := range methods {
		switch m {
		case "basic":
		case "digest":
			digest = true
		default:
			bad(fmt.Sprintf("%s[%d]", key, i), "%q is not one of basic, digest", m)
		}
	}
	if !digest {
		return
	}
	if a.HTTPAddress != "" {
		bad(key, "digest cannot be used with auth.http_address (the authorizer needs the password); use [basic]")
	}
	for i, u := range a.Users {
		if strings.HasPrefix(u.Pass, "sha256:") || strings.HasPrefix(u.Pass, "argon2:") {
			bad(key, "digest cannot check the hashed password of auth.users[%d]; use [basic] (and TLS) or a plain password", i)
			break
		}
	}
}

// validateHooks checks the hooks section; bad records an error for a key.
func validateHooks(h Hooks, bad func(key, format string, args ...any)) {
	if h.URL != "" && !strings.HasPrefix(h.URL, "http://") && !strings.HasPrefix(h.URL, "https://") {
		bad("hooks.url", "%q must be an http:// or https:// URL", h.URL)
	}
	for i, e := range h.Events {
		if !slices.Contains(HookEvents, e) {
			bad(fmt.Sprintf("hooks.events[%d]", i), "%q is not one of %s", e, strings.Join(HookEvents, ", "))
		}
	}
	if h.Timeout <= 0 {
		bad("hooks.timeout", "must be a positive duration, got %s", h.Timeout)
	}
	if h.Retries < 0 || h.Retries > 20 {
		bad("hooks.retries", "must be 0..20, got %d", h.Retries)
	}
	if h.QueueSize < 1 {
		bad("hooks.queue_size", "must be at least 1, got %d", h.QueueSize)
	}
}

// validateAuth checks the auth section; bad records an error for a key.
func validateAuth(a Auth, bad func(key, format string, args ...any)) {
	users := map[string]bool{}
	for i, u := range a.Users {
		key := fmt.Sprintf("auth.users[%d]", i)
		if u.User == "" {
			bad(key+".user", "is required (\"any\" for no credentials)")
		} else if users[u.User] {
			bad(key+".user", "%q is listed twice", u.User)
		}
		users[u.User] = true
		if u.User != "any" && u.Pass == "" {
			bad(key+".pass", "is required for a named user")
		}
		if scheme, rest, ok := strings.Cut(u.Pass, ":"); ok && (scheme == "sha256" || scheme == "argon2") && rest == "" {
			bad(key+".pass", "%s: hash is empty", scheme)
		}
		for j, ip := range u.IPs {
			if _, _, err := net.ParseCIDR(ip); err != nil && net.ParseIP(ip) == nil {
				bad(fmt.Sprintf("%s.ips[%d]", key, j), "%q is neither a CIDR network nor an IP address", ip)
			}
		}
		for j, p := range u.Permissions {
			pk := fmt.Sprintf("%s.permissions[%d]", key, j)
			switch p.Action {
			case "publish", "read", "api", "metrics", "pprof":
			default:
				bad(pk+".action", "%q is not one of publish, read, api, metrics, pprof", p.Action)
			}
			if p.Path != "" {
				if _, err := path.Match(p.Path, "x"); err != nil {
					bad(pk+".path", "%q is not a valid pattern: %v", p.Path, err)
				}
			}
		}
	}
	if a.HTTPAddress != "" && !strings.HasPrefix(a.HTTPAddress, "http://") && !strings.HasPrefix(a.HTTPAddress, "https://") {
		bad("auth.http_address", "%q must be an http:// or https:// URL", a.HTTPAddress)
	}
	if a.HTTPTimeout <= 0 {
		bad("auth.http_timeout", "must be a positive duration, got %s", a.HTTPTimeout)
	}
	if a.HTTPCacheTTL < 0 {
		bad("auth.http_cache_ttl", "must not be negative, got %s", a.HTTPCacheTTL)
	}
	switch a.HTTPFallback {
	case "deny", "allow":
	default:
		bad("auth.http_fallback", "%q is not one of deny, allow", a.HTTPFallback)
	}
	if a.SigningKey != "" {
		if k, err := base64.StdEncoding.DecodeString(a.SigningKey); err != nil {
			bad("auth.signing_key", "is not base64: %v", err)
		} else if len(k) < 16 {
			bad("auth.signing_key", "must decode to at least 16 bytes, got %d", len(k))
		}
	}
	if a.OriginSecret != "" && len(a.OriginSecret) < 16 {
		bad("auth.origin_secret", "must be at least 16 characters, got %d", len(a.OriginSecret))
	}
}
