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
	waitSigned(t, 30*time.Second, "the playlist over HTTPS", func() bool {
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
