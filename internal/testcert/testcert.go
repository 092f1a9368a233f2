// Package testcert makes self-signed certificates for tests of the TLS
// listeners (cache HTTPS, edge RTSPS and RTMPS).
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Write writes a certificate for 127.0.0.1 and localhost, valid for an hour
// around now, and its key to dir (cert.pem, key.pem); it returns the files
// and a pool trusting the certificate.
func Write(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	tmpl := template(1, "streamgrid test", true)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	key := newKey(t)
	der, cert := sign(t, tmpl, tmpl, key, key)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writePEM(t, dir, "cert.pem", "CERTIFICATE", der)
	keyFile = writePEM(t, dir, "key.pem", "PRIVATE KEY", kder)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// WritePKI writes a CA (ca.pem) and a certificate it signed for 127.0.0.1
// and localhost (cert.pem, key.pem), usable by servers and clients (mutual
// TLS between bus nodes); it returns the files. Two calls make two CAs that
// do not trust each other.
func WritePKI(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caTmpl := template(1, "streamgrid test ca", false)
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign
	caKey := newKey(t)
	caDER, ca := sign(t, caTmpl, caTmpl, caKey, caKey)

	tmpl := template(2, "streamgrid test", true)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	key := newKey(t)
	der, _ := sign(t, tmpl, ca, key, caKey)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER), writePEM(t, dir, "cert.pem", "CERTIFICATE", der),
		writePEM(t, dir, "key.pem", "EC PRIVATE KEY", keyDER)
}

// template is a certificate valid for an hour around now, for 127.0.0.1 and
// localhost when forLoopback; the caller sets its usages and CA constraints.
func template(serial int64, commonName string, forLoopback bool) *x509.Certificate {
	c := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if forLoopback {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.DNSNames = []string{"localhost"}
	}
	return c
}

// newKey makes a P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// sign makes the certificate tmpl for key, signed by parent with parentKey
// (tmpl and key themselves for a self-signed one); it returns the DER bytes
// and the parsed certificate.
func sign(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) ([]byte, *x509.Certificate) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return der, cert
}

// writePEM writes b as one PEM block of type typ to dir/name and returns the
// file's path.
func writePEM(t testing.TB, dir, name, typ string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
