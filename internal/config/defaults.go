package config

import (
	"slices"
	"time"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/transcode"
	"github.com/streamgrid/streamgrid/origin"
)

// Default returns the configuration with every default filled in. The
// listeners that only the cluster uses (NATS, memberlist, origin HLS) bind
// loopback: the all-in-one exposes only what cameras and viewers need.
// The origin's and the cache's defaults are theirs (origin.DefaultHLS,
// hlscache.Default*), so that the file and the roles cannot disagree.
func Default() *Config {
	return &Config{
		Node: Node{LogLevel: "info", LogFormat: "text", DrainTimeout: 15 * time.Second},
		API:  API{Address: ":9997"},
		Bus: Bus{
			ConnectTimeout: time.Minute,
			Replicas:       1,
			LeaseTTL:       bus.DefaultLeaseTTL,
			NodeTTL:        bus.DefaultNodeTTL,
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
			HTTPAddress:  "127.0.0.1:8889",
			Capacity:     origin.DefaultCapacity,
			SegmentStore: SegmentStoreAuto,
			Standby:      []string{"*"},
			// Same fields as the origin's, so a conversion: a field the
			// origin adds does not compile here until it is added here.
			HLS: HLS(origin.DefaultHLS()),
			Transcode: Transcode{
				FFmpeg:   origin.DefaultFFmpeg,
				Encoder:  string(transcode.EncoderAuto),
				Fallback: string(transcode.PolicyCPU),
				CPUSlots: 2,
				Ladders:  []LadderRule{},
			},
		},
		Cache: Cache{
			HTTPAddress:      hlscache.DefaultHTTPAddress,
			MaxBytes:         hlscache.DefaultMaxBytes,
			UpstreamTimeout:  hlscache.DefaultUpstreamTimeout,
			AllowOrigin:      hlscache.DefaultAllowOrigin,
			MaxConnsPerIP:    hlscache.DefaultMaxConnsPerIP,
			MaxUpstreamConns: hlscache.DefaultMaxUpstreamConns,
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

// setDefaults fills in the keys a sources entry leaves out.
func (s *Source) setDefaults() {
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
