package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/hlscache"
	"github.com/streamgrid/streamgrid/internal/testkit"
	"github.com/streamgrid/streamgrid/origin"
)

func write(t *testing.T, body string) string {
	t.Helper()
	return testkit.WriteTempFile(t, "streamgrid.yml", []byte(body), 0o600)
}

func TestSampleIsTheDefault(t *testing.T) {
	c, err := Load("../../streamgrid.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, mustLoad(t, "", nil)) {
		t.Fatalf("the sample streamgrid.yml differs from the defaults:\n%+v\n%+v", c, mustLoad(t, "", nil))
	}
}

func TestSampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../streamgrid.yml")
	if err != nil {
		t.Fatal(err)
	}
	sample := string(b)
	leaves := map[string]reflect.Value{}
	names := map[string]string{}
	collectLeaves(reflect.ValueOf(Default()).Elem(), "", leaves, names)
	for _, key := range names {
		last := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(sample, "\n"+strings.Repeat(" ", 2*strings.Count(key, "."))+last+":") {
			t.Errorf("key %s is not in the sample streamgrid.yml", key)
		}
	}
	for _, k := range []string{"name", "url", "transport", "backoff_min", "backoff_max"} {
		if !strings.Contains(sample, k+":") {
			t.Errorf("sources key %s is not documented in the sample", k)
		}
	}
}

func mustLoad(t *testing.T, path string, env []string) *Config {
	t.Helper()
	c, err := Load(path, env)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnvOverrides(t *testing.T) {
	c := mustLoad(t, "", []string{
		"SG_ORIGIN_HLS_VARIANT=mpegts",
		"SG_ORIGIN_HLS_SEGMENT_COUNT=3",
		"SG_BUS_URLS=nats://a:4222, nats://b:4222",
		"SG_BUS_LEASE_TTL=2s",
		"SG_CACHE_MAX_BYTES=1048576",
		"PATH=/usr/bin",
	})
	if c.Origin.HLS.Variant != "mpegts" || c.Origin.HLS.SegmentCount != 3 || c.Bus.LeaseTTL != 2*time.Second ||
		!reflect.DeepEqual(c.Bus.URLs, []string{"nats://a:4222", "nats://b:4222"}) || c.Cache.MaxBytes != 1<<20 {
		t.Fatalf("overrides not applied: %+v", c)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		file string
		env  []string
		want string
	}{
		{"unknown key", "edge:\n  rtsp_adress: \":8554\"\n", nil, "rtsp_adress"},
		{"unknown section", "egde: {}\n", nil, "egde"},
		{"bad variant", "origin:\n  hls:\n    variant: dash\n", nil, "origin.hls.variant"},
		{"bad duration", "bus:\n  lease_ttl: soon\n", nil, "lease_ttl"},
		{"short LL playlist", "origin:\n  hls:\n    segment_count: 3\n", nil, "origin.hls.segment_count"},
		{"part as long as the segment", "origin:\n  hls:\n    part_duration: 1s\n", nil, "origin.hls.part_duration: 1s must be shorter than the segment duration 1s"},
		{"part longer than an mpegts segment", "origin:\n  hls:\n    variant: mpegts\n    segment_count: 3\n    segment_duration: 200ms\n    part_duration: 300ms\n", nil, "origin.hls.part_duration"},
		{"rtp without rtsp", "edge:\n  rtsp_address: \"\"\n", nil, "edge.rtp_address: RTP carries RTSP sessions"},
		{"odd rtp port", "edge:\n  rtp_address: \":8001\"\n  rtcp_address: \":8002\"\n", nil, "edge.rtp_address"},
		{"bad address", "cache:\n  http_address: \"8888\"\n", nil, "cache.http_address"},
		{"source path", "sources:\n  - name: ../x\n    url: rtsp://c/1\n", nil, "sources[0].name"},
		{"source url", "sources:\n  - name: cams/a\n    url: http://c/1\n", nil, "sources[0].url"},
		{"gossip key", "gossip:\n  secret_key: c2hvcnQ=\n", nil, "gossip.secret_key"},
		{"unknown env", "", []string{"SG_EDGE_RTSP=1"}, "SG_EDGE_RTSP"},
		{"bad env value", "", []string{"SG_ORIGIN_CAPACITY=many"}, "origin.capacity"},
		{"bad log level", "node:\n  log_level: loud\n", nil, "node.log_level"},
		{"bad segment store", "origin:\n  segment_store: ssd\n", nil, "origin.segment_store"},
		{"bad fresh start", "origin:\n  hls:\n    fresh_start: first\n", nil, "origin.hls.fresh_start"},
		{"relative segment dir", "", []string{"SG_ORIGIN_SEGMENT_DIR=segs"}, "origin.segment_dir: must be an absolute path"},
		{"small memory limit", "node:\n  memory_limit: 1000000\n", nil, "node.memory_limit"},
		{"negative memory limit", "", []string{"SG_NODE_MEMORY_LIMIT=-2"}, "node.memory_limit"},
		{"negative conns per ip", "cache:\n  max_conns_per_ip: -1\n", nil, "cache.max_conns_per_ip"},
		{"no upstream conns", "", []string{"SG_CACHE_MAX_UPSTREAM_CONNS=0"}, "cache.max_upstream_conns"},
		{"cert without key", "cache:\n  tls_cert: /etc/hostname\n", nil, "cache.tls_cert"},
		{"missing cert", "cache:\n  tls_cert: /nonexistent/cert.pem\n  tls_key: /nonexistent/key.pem\n", nil, "cache.tls_key"},
		{"edge key without cert", "edge:\n  tls_key: /etc/hostname\n", nil, "edge.tls_cert"},
		{"unreadable edge cert", "edge:\n  tls_cert: /nonexistent/cert.pem\n  tls_key: /etc/hostname\n", nil, "edge.tls_cert"},
		// the edge's message names the keys, and a path is quoted as given
		{"edge cert path kept", "edge:\n  tls_cert: /nonexistent/TLSCert.pem\n  tls_key: /etc/hostname\n", nil, "/nonexistent/TLSCert.pem"},
		{"edge pair named by keys", "edge:\n  rtp_address: \":8000\"\n  rtcp_address: \"\"\n", nil, "edge.rtp_address and edge.rtcp_address are set together"},
		{"bad rtsps address", "edge:\n  rtsps_address: \"8322\"\n", nil, "edge.rtsps_address"},
		{"bad rtmps address", "edge:\n  rtmps_address: \":x\"\n", nil, "edge.rtmps_address"},
		{"negative publisher limit", "edge:\n  max_publishers: -1\n", nil, "edge.max_publishers"},
		{"no media timeout", "edge:\n  media_timeout: 0s\n", nil, "edge.media_timeout"},
		{"read interval too long", "edge:\n  read_interval: 150ms\n", nil, "edge.read_interval"},
		{"unknown rtsp auth", "edge:\n  rtsp_auth_methods: [ntlm]\n", nil, "edge.rtsp_auth_methods[0]"},
		{"no rtsp auth", "edge:\n  rtsp_auth_methods: []\n", nil, "edge.rtsp_auth_methods"},
		{"digest with a hash", "auth:\n  users:\n    - {user: u, pass: \"sha256:MMlS+rEiw/l1nwKm2Vw3WLJGtP7iOZV7LU/uRuJhcMQ=\", permissions: [{action: publish}]}\n", nil, "edge.rtsp_auth_methods"},
		{"digest with an authorizer", "auth:\n  http_address: http://a/\n", nil, "edge.rtsp_auth_methods"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = write(t, c.file)
			}
			_, err := Load(path, c.env)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to name %q", err, c.want)
			}
		})
	}
}

// TestLoadedIsAccepted: the defaults of the origin's packaging are the
// origin's own, and a configuration that loads passes the origin's checks.
func TestLoadedIsAccepted(t *testing.T) {
	c := mustLoad(t, "", nil)
	if got := origin.HLSConfig(c.Origin.HLS); got != origin.DefaultHLS() {
		t.Fatalf("origin.hls defaults %+v, the origin's are %+v", got, origin.DefaultHLS())
	}
	if err := origin.HLSConfig(c.Origin.HLS).Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Origin.Capacity != origin.DefaultCapacity || c.Cache.MaxBytes != hlscache.DefaultMaxBytes ||
		c.Cache.MaxConnsPerIP != hlscache.DefaultMaxConnsPerIP || c.Cache.MaxUpstreamConns != hlscache.DefaultMaxUpstreamConns {
		t.Fatalf("role defaults differ: origin %+v, cache %+v", c.Origin, c.Cache)
	}
}

func TestSourcesDefaults(t *testing.T) {
	c := mustLoad(t, write(t, "sources:\n  - name: cams/door\n    url: rtsp://u:p@127.0.0.1:554/s\n"), nil)
	s := c.Sources[0]
	if s.Transport != "tcp" || s.BackoffMin != time.Second || s.BackoffMax != 30*time.Second {
		t.Fatalf("defaults: %+v", s)
	}
}

func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("expected the examples, found %v", files)
	}
	// The compose cluster's per-role files too.
	deploy, err := filepath.Glob("../../deploy/cluster-*.yml")
	if err != nil || len(deploy) < 2 {
		t.Fatalf("expected deploy/cluster-*.yml, found %v (%v)", deploy, err)
	}
	files = append(files, deploy...)
	for _, f := range files {
		c, err := Load(f, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if strings.Contains(f, "abr-") {
			tc := c.Origin.Transcode
			if len(tc.Ladders) != 1 || len(tc.Ladders[0].Renditions) != 3 || tc.Ladders[0].Match != "live/*" {
				t.Errorf("%s: ladder not loaded: %+v", f, tc.Ladders)
			}
		}
	}
}

func TestTranscodeConfig(t *testing.T) {
	c := mustLoad(t, write(t, `origin:
  transcode:
    encoder: x264
    cpu_slots: 3
    ladders:
      - match: "live/*"
        passthrough: true
        fallback: cpu
        keyframe_interval: 2s
        renditions:
          - {name: 360p, width: 640, height: 360, bitrate: 600000}
`), []string{"SG_ORIGIN_TRANSCODE_FALLBACK=refuse", "SG_ORIGIN_TRANSCODE_GPU_SESSIONS=4"})
	tc := c.Origin.Transcode
	if tc.Encoder != "x264" || tc.CPUSlots != 3 || tc.Fallback != "refuse" || tc.GPUSessions != 4 || tc.FFmpeg != "ffmpeg" {
		t.Fatalf("transcode: %+v", tc)
	}
	l := tc.Ladders[0]
	if !l.Passthrough || l.Fallback != "cpu" || l.KeyframeInterval != 2*time.Second || l.Renditions[0].Width != 640 || l.Renditions[0].Bitrate != 600000 {
		t.Fatalf("ladder: %+v", l)
	}

	cases := []struct{ file, want string }{
		{"origin:\n  transcode:\n    encoder: vaapi\n", "origin.transcode.encoder"},
		{"origin:\n  transcode:\n    fallback: never\n", "origin.transcode.fallback"},
		{"origin:\n  transcode:\n    cpu_slots: -1\n", "origin.transcode.cpu_slots"},
		{"origin:\n  transcode:\n    ladders:\n      - match: \"live/*\"\n        fallback: gpu\n        renditions: [{name: a, bitrate: 600000}]\n", "origin.transcode.ladders[0].fallback"},
		{"origin:\n  transcode:\n    ladders:\n      - match: \"live/[\"\n        renditions: [{name: a, bitrate: 600000}]\n", "origin.transcode.ladders[0].match"},
		{"origin:\n  transcode:\n    ladders:\n      - match: \"live/*\"\n        renditions:\n          - {name: a, bitrate: 600000}\n          - {name: b, width: 641, bitrate: 600000}\n",
			"origin.transcode.ladders[0].renditions[1].width: must be even"},
		{"origin:\n  transcode:\n    ladders:\n      - match: \"live/*\"\n        renditions:\n          - {name: a, bitrate: 600000, sharpness: 3}\n", "sharpness"},
	}
	for _, tc := range cases {
		_, err := Load(write(t, tc.file), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to name %q", tc.file, err, tc.want)
		}
	}
}

// FuzzDecode reads arbitrary bytes as a configuration file, as an operator's
// typo or a hostile file would reach Load: decoding, the key-naming of
// errors and validation must never panic.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"../../streamgrid.yml", "../../deploy/cluster-origin.yml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"bus:\n  lease_ttl: 1s\n",
		"bus:\n  server:\n    users:\n      edge: x\n",
		"sources:\n  - name: a\n    url: rtsp://h/x\n",
		"gossip:\n  old_keys: [\"zz\"]\n",
		"origin:\n  hls:\n    segment_count: [1]\n",
		"origin:\n  hls:\n    fresh_start: [part]\n",
		"auth:\n  users:\n    - user: any\n      permissions: [{action: read, path: \"[\"}]\n",
		"node: &a [*a]\n",
		"origin:\n  transcode:\n    ladders:\n      - match: \"*\"\n        fallback: gpu\n",
		"edge:\n  rtp_address: \":8001\"\n  rtcp_address: \"[::1\"\n  tls_cert: TLSCert\n",
		"\t",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Default()
		if err := c.decode(b); err != nil {
			_ = err.Error()
			return
		}
		_ = c.Validate()
	})
}

func TestSegmentFolder(t *testing.T) {
	for _, c := range []struct {
		o    Origin
		want string
	}{
		{Origin{SegmentStore: SegmentStoreMemory, SegmentDir: "/srv/segs"}, ""},
		{Origin{SegmentStore: SegmentStoreDisk, SegmentDir: "/srv/segs"}, "/srv/segs"},
		{Origin{SegmentStore: SegmentStoreDisk}, filepath.Join(os.TempDir(), "streamgrid-segments")},
		{Origin{SegmentStore: SegmentStoreAuto}, filepath.Join(os.TempDir(), "streamgrid-segments")},
		{Origin{SegmentStore: SegmentStoreAuto, SegmentDir: "/srv/segs"}, "/srv/segs"},
	} {
		if got := c.o.SegmentFolder(); got != c.want {
			t.Errorf("%+v: SegmentFolder() = %q, want %q", c.o, got, c.want)
		}
	}
}

// origin.standby is every path by default; an empty list in the file or in
// the environment turns it off, and a bad pattern is refused.
func TestOriginStandby(t *testing.T) {
	if got := mustLoad(t, "", nil).Origin.Standby; !reflect.DeepEqual(got, []string{"*"}) {
		t.Fatalf("default origin.standby %q, want [*]", got)
	}
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "sg.yml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := mustLoad(t, write("origin:\n  standby: []\n"), nil).Origin.Standby; len(got) != 0 {
		t.Fatalf("standby: [] loaded as %q", got)
	}
	if got := mustLoad(t, write("origin:\n  standby: [\"cams/*\"]\n"), nil).Origin.Standby; !reflect.DeepEqual(got, []string{"cams/*"}) {
		t.Fatalf("standby: [cams/*] loaded as %q", got)
	}
	if got := mustLoad(t, "", []string{"SG_ORIGIN_STANDBY="}).Origin.Standby; len(got) != 0 {
		t.Fatalf("SG_ORIGIN_STANDBY= loaded as %q", got)
	}
	if _, err := Load(write("origin:\n  standby: [\"[\"]\n"), nil); err == nil || !strings.Contains(err.Error(), "origin.standby[0]") {
		t.Fatalf("a bad pattern: %v", err)
	}
}
