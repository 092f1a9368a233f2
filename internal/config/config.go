// Package config loads streamgrid.yml: YAML with unknown keys refused,
// environment overrides SG_<SECTION>_<KEY> (nested keys joined with '_'),
// defaults for every key, and validation errors that name the key.
package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"time"

	"github.com/streamgrid/streamgrid/internal/auth/authconf"
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
	// LeaseTTL paces origins' claims and standby edges' periodic attempts
	// at a camera; no record expires by it since node liveness (NodeTTL).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// StreamTTL is no longer used: stream records are held by the edge's
	// liveness. Accepted so that older files load.
	StreamTTL time.Duration `yaml:"stream_ttl"`
	// NodeTTL is an origin's and an edge's liveness: heartbeats every
	// NodeTTL/4; NodeTTL after the last one, the node gives its streams
	// and cameras up and the others take them over. Per node (each
	// heartbeat carries its own TTL).
	NodeTTL time.Duration `yaml:"node_ttl"`
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
	// RTSPAddress is the RTSP listen address; "" disables RTSP (and RTP).
	RTSPAddress string `yaml:"rtsp_address"`
	// RTPAddress and RTCPAddress enable RTSP over UDP: an even port and
	// the next one, both set or both "".
	RTPAddress  string `yaml:"rtp_address"`
	RTCPAddress string `yaml:"rtcp_address"`
	// RTMPAddress is the RTMP listen address; "" disables RTMP.
	RTMPAddress string `yaml:"rtmp_address"`
	// ReadTimeout drops a publisher that sends nothing for this long, and
	// bounds the handshakes.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MediaTimeout drops a publisher (or pulled camera) that sends no media
	// for this long, even while it keeps its connection alive.
	MediaTimeout time.Duration `yaml:"media_timeout"`
	// ReadInterval spaces the socket reads of a running RTSP (TCP) or RTMP
	// publication (edge.Edge.ReadInterval); 0 reads as data arrives.
	ReadInterval time.Duration `yaml:"read_interval"`
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
	// SegmentStore is where finished segments and parts are kept: disk (files
	// in SegmentDir, read back through the page cache), memory (the heap), or
	// auto: disk for the builtin muxer's variants, memory for gohlslib's
	// (mpegts, hls.muxer gohlslib) and wherever SegmentDir cannot be made.
	SegmentStore string `yaml:"segment_store"`
	// SegmentDir is the folder for segment_store disk and auto; empty: the
	// system's temporary folder (streamgrid-segments in it).
	SegmentDir string `yaml:"segment_dir"`
	// Standby lists the path patterns of the streams this origin keeps a
	// warm standby for (origin.Origin.Standby): path.Match on the path or
	// its leading elements, "*" every path (the default). Empty: none.
	Standby []string `yaml:"standby"`
	HLS     HLS      `yaml:"hls"`
	// Transcode configures ABR-ladder transcoding; without ladders every
	// stream is packaged as it comes (passthrough).
	Transcode Transcode `yaml:"transcode"`
}

// The values of origin.segment_store.
const (
	SegmentStoreAuto   = "auto"
	SegmentStoreDisk   = "disk"
	SegmentStoreMemory = "memory"
)

// SegmentFolder is the folder the origin keeps finished segments in
// (origin.Origin.SegmentDir): "" when they stay in memory.
func (o Origin) SegmentFolder() string {
	switch {
	case o.SegmentStore == SegmentStoreMemory:
		return ""
	case o.SegmentDir != "":
		return o.SegmentDir
	}
	return filepath.Join(os.TempDir(), "streamgrid-segments")
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
	Match string `yaml:"match"`
	// Fallback, when set (cpu or refuse), replaces origin.transcode.fallback
	// for this ladder: cpu lets an origin without a usable GPU encoder
	// transcode the ladder's streams on the CPU (when the GPU origins are
	// full or gone), refuse keeps them on GPU origins only.
	Fallback         string `yaml:"fallback"`
	transcode.Ladder `yaml:",inline"`
}

// HLS is the packaging of every stream.
type HLS struct {
	Variant         string        `yaml:"variant"`
	SegmentDuration time.Duration `yaml:"segment_duration"`
	PartDuration    time.Duration `yaml:"part_duration"`
	SegmentCount    int           `yaml:"segment_count"`
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	Muxer           string        `yaml:"muxer"`
	FreshStart      string        `yaml:"fresh_start"`
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

// The auth section's types live in internal/auth/authconf (which
// internal/auth reads without this package); these are their names here.
type (
	// Auth is who may do what, plus the keys for signed playback URLs and
	// for origin requests.
	Auth = authconf.Auth
	// AuthUser is one user and what it may do.
	AuthUser = authconf.AuthUser
	// AuthPermission grants an action on the stream paths it matches.
	AuthPermission = authconf.AuthPermission
)

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
