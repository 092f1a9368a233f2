package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testcert"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key
// to dir; it returns the files and a pool trusting the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	return testcert.Write(t, dir)
}

// TestCacheTLS: with cache.tls_cert and cache.tls_key the cache speaks
// HTTPS, HTTP/2 to a Go client, and ffprobe (checking the certificate
// against its CA file) reads the stream through it.
func TestCacheTLS(t *testing.T) {
	requireFFmpeg(t)
	c := allInOneConfig(t)
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	c.Cache.TLSCert, c.Cache.TLSKey = certFile, keyFile
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	startCamera(t, "rtsp://"+a.RTSP+"/live/tls1")
	url := "https://" + a.Cache + "/live/tls1/index.m3u8"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	var proto string
	testkit.WaitFor(t, 30*time.Second, "the playlist over HTTPS", func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		proto = resp.Proto
		return resp.StatusCode == http.StatusOK && strings.HasPrefix(string(body), "#EXTM3U")
	})
	if proto != "HTTP/2.0" {
		t.Errorf("protocol %s, want HTTP/2.0", proto)
	}
	// Plain HTTP on the TLS port gets nothing playable.
	if code, _, err := fetch("http://" + a.Cache + "/live/tls1/index.m3u8"); err == nil && code == http.StatusOK {
		t.Errorf("plain HTTP on the HTTPS port: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-hide_banner", "-loglevel", "error",
		"-ca_file", certFile, "-tls_verify", "1",
		"-show_entries", "stream=codec_name", "-of", "compact=p=0:nk=1", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "h264") {
		t.Fatalf("ffprobe over HTTPS: %v\n%s", err, out)
	}
	// The check is real: with another CA ffprobe refuses the certificate.
	otherCert, _, _ := selfSigned(t, t.TempDir())
	out, err = exec.CommandContext(ctx, "ffprobe", "-hide_banner", "-loglevel", "error",
		"-ca_file", otherCert, "-tls_verify", "1", url).CombinedOutput()
	if err == nil {
		t.Errorf("ffprobe accepted the certificate against another CA:\n%s", out)
	}
}

// TestEdgeTLSFFmpeg: with edge.tls_cert and edge.tls_key, ffmpeg publishes
// over RTSPS (TCP) and RTMPS, and each stream plays at the cache; the plain
// ports keep working next to them; plain RTSP and RTMP on the TLS ports fail.
func TestEdgeTLSFFmpeg(t *testing.T) {
	requireFFmpeg(t)
	c := allInOneConfig(t)
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	c.Edge.TLSCert, c.Edge.TLSKey = certFile, keyFile
	c.Edge.RTSPSAddress, c.Edge.RTMPSAddress = "127.0.0.1:0", "127.0.0.1:0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, c, RoleRun)
	a := n.Addrs()
	if a.RTSPS == "" || a.RTMPS == "" {
		t.Fatalf("TLS listeners missing: %+v", a)
	}
	cases := []struct {
		name, format, url, path string
		extra                   []string
	}{
		{"rtsps", "rtsp", "rtsps://" + a.RTSPS + "/live/x", "live/x", []string{"-rtsp_transport", "tcp"}},
		{"rtmps", "flv", "rtmps://" + a.RTMPS + "/live/y", "live/y", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			ffmpegPublish(t, "h264", tc.format, tc.url, tc.extra...)
			url := "http://" + a.Cache + "/" + tc.path + "/index.m3u8"
			took := waitPlayable(t, url, start, 20*time.Second)
			t.Logf("%s: playable at the cache %v after ffmpeg started", tc.url, took.Round(time.Millisecond))
			if codecs := ffprobeCodecs(t, url); !strings.Contains(codecs, "h264|640|360") || !strings.Contains(codecs, "aac") {
				t.Fatalf("ffprobe: %q, want h264 640x360 and aac", codecs)
			}
		})
	}
	// A plain client on a TLS port gets an error, not a publication.
	for _, u := range [][]string{
		{"-rtsp_transport", "tcp", "-f", "rtsp", "rtsp://" + a.RTSPS + "/live/plain1"},
		{"-f", "flv", "rtmp://" + a.RTMPS + "/live/plain2"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "ffmpeg", append([]string{"-hide_banner", "-loglevel", "error", "-re",
			"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "3", "-c:v", "libx264",
			"-preset", "ultrafast"}, u...)...).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Errorf("plain %s on the TLS port: %v (timed out: %v)\n%s", u[len(u)-1], err, timedOut, out)
		} else {
			t.Logf("plain %s on the TLS port: %v: %s", u[len(u)-1], err, strings.TrimSpace(string(out)))
		}
	}
	for _, st := range n.edge.Streams() {
		if strings.Contains(st.Path, "plain") {
			t.Errorf("a plain client published on a TLS port: %+v", st)
		}
	}
}
