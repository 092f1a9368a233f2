package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key
// to dir; it returns the files and a pool trusting the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "streamgrid test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
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
