package node

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/auth"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// authConfig is the all-in-one with users: admin may do everything, cam
// may publish under cams/ only, ops may use the API and nothing else.
func authConfig(t *testing.T) *config.Config {
	c := allInOneConfig(t)
	c.Auth.Users = []config.AuthUser{
		{User: "admin", Pass: "adminpw", Permissions: []config.AuthPermission{
			{Action: "publish"}, {Action: "read"}, {Action: "api"}, {Action: "metrics"}}},
		{User: "cam", Pass: "campw", Permissions: []config.AuthPermission{{Action: "publish", Path: "cams/*"}}},
		{User: "ops", Pass: "opspw", Permissions: []config.AuthPermission{{Action: "api"}}},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// ffmpegRefused runs an ffmpeg publisher that must fail; it returns ffmpeg's output.
func ffmpegRefused(t *testing.T, format, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-t", "20"}
	args = append(args, extra...)
	args = append(args, "-f", format, url)
	out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("ffmpeg publishing to %s was not refused within 30 s:\n%s", url, out)
	}
	if err == nil {
		t.Fatalf("ffmpeg publishing to %s succeeded; want a refusal:\n%s", url, out)
	}
	return string(out)
}

// TestPublishAuthFFmpeg: real ffmpeg publishers against a node with users.
func TestPublishAuthFFmpeg(t *testing.T) {
	requireFFmpeg(t)
	n := startNode(t, authConfig(t), RoleRun)
	a := n.Addrs()
	rtsp := func(cred, path string) string { return "rtsp://" + cred + a.RTSP + "/" + path }
	tcp := []string{"-rtsp_transport", "tcp"}

	t.Run("rtsp refused", func(t *testing.T) {
		for _, tc := range []struct{ name, url, want string }{
			{"no credentials", rtsp("", "live/a"), "401"},
			{"wrong password", rtsp("admin:nope@", "live/a"), "401"},
			{"unknown user", rtsp("eve:adminpw@", "live/a"), "401"},
			{"no publish on the path", rtsp("cam:campw@", "live/a"), "403"},
		} {
			out := ffmpegRefused(t, "rtsp", tc.url, tcp...)
			if !strings.Contains(out, tc.want) {
				t.Errorf("%s: ffmpeg says %q, want %s", tc.name, out, tc.want)
			}
		}
	})
	t.Run("rtmp refused", func(t *testing.T) {
		for _, url := range []string{
			"rtmp://" + a.RTMP + "/live/r",
			"rtmp://" + a.RTMP + "/live/r?user=admin&pass=nope",
			"rtmp://" + a.RTMP + "/live/r?user=cam&pass=campw",
		} {
			ffmpegRefused(t, "flv", url)
		}
	})
	if got := testkit.MetricSum(t, n.metrics, "streamgrid_auth_denied_total", map[string]string{"protocol": "rtmp"}); got < 3 {
		t.Errorf("rtmp denials counted: %v, want 3", got)
	}

	for _, tc := range []struct{ name, format, url, path string }{
		{"rtsp digest", "rtsp", rtsp("admin:adminpw@", "live/cam1"), "live/cam1"},
		{"rtsp path permission", "rtsp", rtsp("cam:campw@", "cams/door"), "cams/door"},
		{"rtmp query", "flv", "rtmp://" + a.RTMP + "/live/cam2?user=admin&pass=adminpw", "live/cam2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.format == "rtsp" {
				extra = tcp
			}
			start := time.Now()
			ffmpegPublish(t, "h264", tc.format, tc.url, extra...)
			url := "http://admin:adminpw@" + a.Cache + "/" + tc.path + "/index.m3u8"
			waitPlayable(t, url, start, 20*time.Second)
			if codecs := ffprobeCodecs(t, url); !strings.Contains(codecs, "h264|640|360") {
				t.Fatalf("ffprobe: %q", codecs)
			}
		})
	}
}

func apiStatus(t *testing.T, url, user, pass string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode, res.Header
}

// TestAPIAuth: Basic authentication and permissions on the API server.
func TestAPIAuth(t *testing.T) {
	n := startNode(t, authConfig(t), RoleRun)
	api := "http://" + n.Addrs().API
	checkStatuses(t, api, []authCase{
		{"/healthz", "", "", 200},
		{"/v1/streams", "", "", 401},
		{"/v1/streams", "admin", "wrong", 401},
		{"/v1/streams", "admin", "adminpw", 200},
		{"/v1/streams", "ops", "opspw", 200},
		{"/v1/streams", "cam", "campw", 403},
		{"/", "", "", 401},
		{"/", "ops", "opspw", 200},
		{"/metrics", "ops", "opspw", 403},
		{"/metrics", "admin", "adminpw", 200},
		{"/debug/pprof/", "admin", "adminpw", 403},
		{"/debug/pprof/", "", "", 401},
	})
	if got := testkit.MetricSum(t, n.metrics, "streamgrid_auth_denied_total", map[string]string{"action": "api"}); got < 4 {
		t.Errorf("api denials counted: %v", got)
	}
	// Rules replaced at run time.
	c := authConfig(t).Auth
	c.Users[2].Pass = "newpw"
	if err := n.UpdateAuth(c); err != nil {
		t.Fatal(err)
	}
	if code, _ := apiStatus(t, api+"/v1/streams", "ops", "opspw"); code != 401 {
		t.Errorf("old password after rotation: %d", code)
	}
	if code, _ := apiStatus(t, api+"/v1/streams", "ops", "newpw"); code != 200 {
		t.Errorf("new password after rotation: %d", code)
	}
}

// TestAPILoopbackOnly: without an auth section the API answers loopback
// clients only; /healthz stays open. The node listens on every interface
// and is reached through a non-loopback address of this host.
func TestAPILoopbackOnly(t *testing.T) {
	c := allInOneConfig(t)
	c.API.Address = ":0"
	n := startNode(t, c, RoleRun)
	port := n.Addrs().API[strings.LastIndex(n.Addrs().API, ":"):]
	if code, _ := apiStatus(t, "http://127.0.0.1"+port+"/v1/streams", "", ""); code != 200 {
		t.Fatalf("loopback: %d", code)
	}
	ip := nonLoopbackIP(t)
	for path, want := range map[string]int{"/v1/streams": 403, "/metrics": 403, "/debug/pprof/": 403, "/": 403, "/healthz": 200} {
		if code, _ := apiStatus(t, "http://"+ip+port+path, "", ""); code != want {
			t.Errorf("GET %s from %s: %d, want %d", path, ip, code, want)
		}
	}
}

// authCase is a GET of path as user (none when empty) and the status it must get.
type authCase struct {
	path, user, pass string
	want             int
}

// checkStatuses runs the cases against base and checks that every 401 comes
// with a Basic challenge.
func checkStatuses(t *testing.T, base string, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		code, h := apiStatus(t, base+tc.path, tc.user, tc.pass)
		if code != tc.want {
			t.Errorf("GET %s as %q: %d, want %d", tc.path, tc.user, code, tc.want)
		}
		if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("GET %s: 401 without a Basic challenge", tc.path)
		}
	}
}

// nonLoopbackIP is an IPv4 address of this host other than loopback.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("this host has no non-loopback IPv4 address")
	return ""
}

func TestCapProfileSeconds(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "seconds=5": "seconds=5", "seconds=60": "seconds=60",
		"seconds=3600": "seconds=60", "seconds=abc": "seconds=60", "seconds=1e9&debug=1": "debug=1&seconds=60",
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://x/debug/pprof/profile?"+in, nil)
		capProfileSeconds(r)
		if r.URL.RawQuery != want {
			t.Errorf("%q → %q, want %q", in, r.URL.RawQuery, want)
		}
	}
}

// TestPublishHashedBasicFFmpeg: a hashed password serves RTSP Basic (the
// edge offers only Basic, as the configuration requires) and RTMP.
func TestPublishHashedBasicFFmpeg(t *testing.T) {
	requireFFmpeg(t)
	c := allInOneConfig(t)
	c.Edge.RTSPAuthMethods = []string{"basic"}
	c.Auth.Users = []config.AuthUser{{User: "cam", Pass: auth.HashSHA256("campw"),
		Permissions: []config.AuthPermission{{Action: "publish", Path: "live/*"}}},
		{User: "any", Permissions: []config.AuthPermission{{Action: "read"}}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	out := ffmpegRefused(t, "rtsp", "rtsp://cam:wrong@"+a.RTSP+"/live/h", "-rtsp_transport", "tcp")
	if !strings.Contains(out, "401") {
		t.Fatalf("wrong password: %q", out)
	}
	for _, tc := range []struct{ format, url, path string }{
		{"rtsp", "rtsp://cam:campw@" + a.RTSP + "/live/h", "live/h"},
		{"flv", "rtmp://" + a.RTMP + "/live/h2?user=cam&pass=campw", "live/h2"},
	} {
		var extra []string
		if tc.format == "rtsp" {
			extra = []string{"-rtsp_transport", "tcp"}
		}
		start := time.Now()
		ffmpegPublish(t, "h264", tc.format, tc.url, extra...)
		waitPlayable(t, "http://"+a.Cache+"/"+tc.path+"/index.m3u8", start, 20*time.Second)
	}
}

// TestCacheReadAuth: with an auth section and no signing key, a viewer needs
// the read permission on the stream (HTTP Basic at the cache); a user "any"
// holding read opens the paths it names.
func TestCacheReadAuth(t *testing.T) {
	c := authConfig(t)
	c.Auth.Users = append(c.Auth.Users, config.AuthUser{User: "any",
		Permissions: []config.AuthPermission{{Action: "read", Path: "public/*"}}})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, RoleRun)
	cache := "http://" + n.Addrs().Cache
	checkStatuses(t, cache, []authCase{
		{"/live/x/index.m3u8", "", "", 401},
		{"/live/x/index.m3u8", "admin", "wrong", 401},
		{"/live/x/index.m3u8", "ops", "opspw", 403},
		{"/live/x/index.m3u8", "admin", "adminpw", 404}, // allowed; no such stream
		{"/public/x/index.m3u8", "", "", 404},           // "any" reads public/*
	})
	if got := testkit.MetricSum(t, n.metrics, "streamgrid_auth_denied_total", map[string]string{"action": "read"}); got < 3 {
		t.Errorf("read denials counted: %v", got)
	}
}

// TestCacheFastPathWhileReadsAreOpen: with an auth section whose user
// "any" reads every path, the cache answers viewers on its fast path (no
// connection handed to net/http for the access check); once a reload
// leaves a read rule in force, every viewer request goes through the check.
func TestCacheFastPathWhileReadsAreOpen(t *testing.T) {
	c := authConfig(t)
	c.Auth.Users = append(c.Auth.Users, config.AuthUser{User: "any", Permissions: []config.AuthPermission{{Action: "read"}}})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, RoleRun)
	url := "http://" + n.Addrs().Cache + "/live/x/abc.exe" // a 404 either way: no such file
	handed := func() float64 { return testkit.MetricSum(t, n.metrics, "streamgrid_cache_handed_over_total", nil) }
	ask := func() {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: %d", url, resp.StatusCode)
		}
		http.DefaultClient.CloseIdleConnections()
	}
	ask()
	if got := handed(); got != 0 {
		t.Fatalf("reads open: %v connections handed to net/http", got)
	}
	closed := c.Auth
	closed.Users = closed.Users[:len(closed.Users)-1]
	if err := n.UpdateAuth(closed); err != nil {
		t.Fatal(err)
	}
	ask()
	if got := handed(); got != 1 {
		t.Fatalf("read rules in force: %v connections handed to net/http, want 1", got)
	}
}
