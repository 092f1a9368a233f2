package hlscache

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// inMemBody moves obj's body into a memfd, as the cache stores a segment.
// The test holds the reference the LRU would, dropped at cleanup unless the
// test dropped it.
func inMemBody(t *testing.T, obj *object) *memStats {
	t.Helper()
	if !memBodySupported {
		t.Skip("memfds and sendfile are Linux's")
	}
	s := &memStats{max: 16}
	m := s.newMemBody(obj.body)
	if m == nil {
		t.Fatal("body not moved into a memfd")
	}
	obj.mem, obj.body = m, m.data
	t.Cleanup(func() {
		if m.refs.Load() > 0 {
			m.release()
		}
	})
	return s
}

func TestMemBody(t *testing.T) {
	t.Parallel()
	if !memBodySupported {
		t.Skip("memfds are Linux's")
	}
	body := bytes.Repeat([]byte("abcdefgh"), 5000) // 40 000 bytes
	s := &memStats{max: 2}
	if m := s.newMemBody(body[:memBodyMin-1]); m != nil {
		t.Error("a body under memBodyMin moved into a memfd")
	}
	a, b := s.newMemBody(body), s.newMemBody(body)
	if a == nil || b == nil {
		t.Fatal("no memfd")
	}
	if !bytes.Equal(a.data, body) {
		t.Error("memfd holds other bytes")
	}
	if c := s.newMemBody(body); c != nil || s.failed.Load() != 1 {
		t.Errorf("a third memfd over max 2 (failed %d)", s.failed.Load())
	}
	if got, want := s.bytes.Load(), 2*memSize(len(body)); got != want || memSize(len(body)) != 40960 {
		t.Errorf("%d bytes counted, want %d", got, want)
	}
	// The memfd is sealed: its size cannot change under its mapping.
	if err := os.Truncate(fmt.Sprintf("/proc/self/fd/%d", a.fd), 0); err == nil {
		t.Error("a memfd body could be truncated")
	}
	if !a.acquire() {
		t.Fatal("acquire of a live body failed")
	}
	a.release()
	if s.objects.Load() != 2 {
		t.Error("freed while the owner's reference is held")
	}
	a.release() // the owner's
	if a.acquire() {
		t.Error("acquired a freed body")
	}
	if s.objects.Load() != 1 || s.bytes.Load() != memSize(len(body)) {
		t.Errorf("after a free: %d objects, %d bytes", s.objects.Load(), s.bytes.Load())
	}
	if c := s.newMemBody(body); c == nil {
		t.Error("no memfd after one was freed")
	} else {
		c.release()
	}
	b.release()
	if s.objects.Load() != 0 || s.bytes.Load() != 0 {
		t.Errorf("all freed: %d objects, %d bytes left", s.objects.Load(), s.bytes.Load())
	}
}

// The LRU accounts a memfd body by its pages and frees it when the entry
// leaves: eviction, replacement, clear.
func TestLRUReleasesMemBodies(t *testing.T) {
	t.Parallel()
	if !memBodySupported {
		t.Skip("memfds are Linux's")
	}
	s := &memStats{max: 100}
	body := make([]byte, 20000)
	obj := func() *object {
		m := s.newMemBody(body)
		return &object{status: http.StatusOK, body: m.data, mem: m}
	}
	per := int64(len("k0")) + memSize(len(body)) + entryOverhead
	c := newLRU(8 * per) // holds 8 (an entry is at most maxBytes/8)
	now := time.Now()
	for i := range 10 {
		if !c.add("k"+strconv.Itoa(i), obj(), now, time.Time{}, 0) {
			t.Fatal("not kept")
		}
	}
	c.add("k9", obj(), now, time.Time{}, 0) // replaces
	if size, n := c.size(); n != 8 || size != 8*per {
		t.Errorf("LRU: %d entries, %d bytes; want 8, %d", n, size, 8*per)
	}
	if got := s.objects.Load(); got != 8 {
		t.Errorf("%d memfds live, want 8 (the stored ones)", got)
	}
	held := c.get("k9", now)
	held.mem.acquire() // an answer in flight
	c.clear()
	if got := s.objects.Load(); got != 1 {
		t.Errorf("%d memfds live after clear, want 1 (being sent)", got)
	}
	if !bytes.Equal(held.body, body) {
		t.Error("the body in flight changed")
	}
	held.mem.release()
	if got := s.objects.Load(); got != 0 {
		t.Errorf("%d memfds live after the send ended", got)
	}
}

// writeObject takes a reference for the answer, and answers nothing for a
// body freed since its lookup (serveObject then looks it up again).
func TestWriteObjectFreedBody(t *testing.T) {
	t.Parallel()
	obj := &object{status: http.StatusOK, body: bytes.Repeat([]byte("x"), 50000),
		header: newObjectHeader("video/mp4", "public, max-age=3600", "", time.Time{}, 50000)}
	inMemBody(t, obj)
	r := httptest.NewRequest("GET", "/seg.mp4", nil)
	rec := httptest.NewRecorder()
	// No viewerConn, a ResponseWriter without ReadFrom: the body is written.
	if !writeObject(newViewerWriter(rec), r, obj, resultHit) || rec.Body.String() != string(obj.body) {
		t.Fatalf("answer: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if obj.mem.refs.Load() != 1 {
		t.Errorf("%d references after the answer, want 1", obj.mem.refs.Load())
	}
	obj.mem.release() // evicted
	rec = httptest.NewRecorder()
	if writeObject(newViewerWriter(rec), r, obj, resultHit) {
		t.Error("answered from a freed body")
	}
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("wrote %d bytes, headers %v", rec.Body.Len(), rec.Header())
	}
}

// An object evicted while sendfile sends it keeps its memfd until the send
// ends: the viewer gets every byte, and the memfd is freed after.
func TestServeBodyEvictedInFlight(t *testing.T) {
	t.Parallel()
	want := make([]byte, 32<<20) // more than loopback's socket buffers hold
	for i := range want {
		want[i] = byte(i * 7)
	}
	obj := &object{status: http.StatusOK, body: bytes.Clone(want),
		header: newObjectHeader("video/mp4", "public, max-age=3600", "", time.Time{}, len(want))}
	stats := inMemBody(t, obj)
	c := newLRU(1 << 30)
	c.add("seg", obj, time.Now(), time.Time{}, 0)
	s := newBodyServer(t, obj, nil)

	conn, err := net.Dial("tcp", s.url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /seg.mp4 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the answer holds the body", func() bool { return obj.mem.refs.Load() == 2 })
	c.clear() // evicted while in flight
	if obj.mem.refs.Load() != 1 || stats.objects.Load() != 1 {
		t.Fatal("the body was freed under the send")
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, resp.ContentLength))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), equal %v; want %d", len(got), err, bytes.Equal(got, want), len(want))
	}
	a := <-s.answers
	if a.n != int64(len(want)) || a.sendfiles != len(want)/viewerWriteChunk {
		t.Errorf("answer: %d bytes, %d sendfiles (one a chunk: want %d)", a.n, a.sendfiles, len(want)/viewerWriteChunk)
	}
	if stats.objects.Load() != 0 || obj.mem.acquire() {
		t.Error("the memfd outlived the send")
	}
}

// Where sendfile is not available the bytes are written, with the headers
// held before them: a connection that is no *net.TCPConn.
func TestViewerConnMemFallback(t *testing.T) {
	t.Parallel()
	obj := &object{status: http.StatusOK, body: bytes.Repeat([]byte("0123456789"), 3000)}
	inMemBody(t, obj)
	server, client := net.Pipe()
	defer client.Close()
	vc := newViewerConn(server)
	if vc.raw != nil {
		t.Fatal("a pipe has no fd to sendfile to")
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	vc.gather()
	_, _ = vc.Write([]byte("head"))
	src := &memSource{mem: obj.mem, off: 10, end: len(obj.body)}
	n, err := vc.ReadFrom(src)
	vc.release()
	server.Close()
	if n != int64(len(obj.body)-10) || err != nil || vc.sends != 1 || vc.sendfiles != 0 {
		t.Errorf("ReadFrom: %d, %v; %d sends, %d sendfiles", n, err, vc.sends, vc.sendfiles)
	}
	if b := <-got; string(b) != "head"+string(obj.body[10:]) {
		t.Errorf("peer read %d bytes", len(b))
	}
	// Any other reader is copied.
	server2, client2 := tcpPair(t)
	vc2 := newViewerConn(server2)
	if _, err := vc2.ReadFrom(bytes.NewReader([]byte("plain"))); err != nil {
		t.Fatal(err)
	}
	server2.Close()
	if b, _ := io.ReadAll(client2); string(b) != "plain" || vc2.sendfiles != 0 {
		t.Errorf("peer read %q, %d sendfiles", b, vc2.sendfiles)
	}
}

// The cache keeps stored segments and parts of at least memBodyMin in
// memfds, accounted by their pages, freed on eviction and at Close; smaller
// objects and playlists stay on the heap.
func TestCacheSegmentsInMemfds(t *testing.T) {
	t.Parallel()
	if !memBodySupported {
		t.Skip("memfds are Linux's")
	}
	e := newEnv(t, func(c *Cache) { c.MaxBytes = 8 << 20 })
	seg := bytes.Repeat([]byte("0123456789"), 20000) // 200 000 bytes
	e.origin.set("/live/cam1/video1_stream.m3u8", []byte(llPlaylist))
	e.origin.set("/live/cam1/small.mp4", []byte("tiny"))
	for i := range 50 {
		e.origin.set("/live/cam1/s"+strconv.Itoa(i)+".mp4", seg)
	}
	e.own("live/cam1")
	e.get("/live/cam1/video1_stream.m3u8")
	e.get("/live/cam1/small.mp4")
	for _, res := range []string{"MISS", "HIT"} {
		r := e.get("/live/cam1/s0.mp4")
		if r.status != 200 || r.body != string(seg) || r.header.Get("X-Cache") != res {
			t.Fatalf("segment: %d, %d bytes, %s", r.status, len(r.body), r.header.Get("X-Cache"))
		}
	}
	if r := e.get("/live/cam1/s0.mp4", "Range", "bytes=5-9"); r.body != "56789" {
		t.Errorf("Range of a memfd body: %q", r.body)
	}
	if got := metricValue(e.cache.m.memObjects); got != 1 {
		t.Errorf("memfd objects %v, want 1 (the segment)", got)
	}
	if got, want := metricValue(e.cache.m.memBytes), float64(memSize(len(seg))); got != want {
		t.Errorf("memfd bytes %v, want %v", got, want)
	}
	// Past the budget (8 MiB: about 40 such segments), evicted ones are freed.
	for i := range 50 {
		if r := e.get("/live/cam1/s" + strconv.Itoa(i) + ".mp4"); r.status != 200 || len(r.body) != len(seg) {
			t.Fatalf("s%d: %d", i, r.status)
		}
	}
	inMemfds := 0
	e.cache.lru.mu.Lock()
	for _, el := range e.cache.lru.items {
		if el.Value.(*lruEntry).obj.mem != nil {
			inMemfds++
		}
	}
	e.cache.lru.mu.Unlock()
	if got := e.cache.mem.objects.Load(); got != int64(inMemfds) || inMemfds >= 45 {
		t.Errorf("%d memfds for %d stored segments", got, inMemfds)
	}
	e.cache.Close()
	if got := e.cache.mem.objects.Load(); got != 0 {
		t.Errorf("%d memfds left after Close", got)
	}
}

// A TLS cache keeps bodies on the heap: net/http writes to the tls.Conn,
// which sendfile cannot serve.
func TestCacheTLSKeepsBodiesOnHeap(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	e := newEnv(t, func(c *Cache) { c.TLSCert, c.TLSKey = cert, key })
	seg := bytes.Repeat([]byte("0123456789"), 20000)
	e.origin.set("/live/cam1/s0.mp4", seg)
	e.own("live/cam1")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	for range 2 {
		resp, err := client.Get("https://" + e.cache.HTTPAddr().String() + "/live/cam1/s0.mp4")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(b, seg) {
			t.Fatalf("segment over TLS: %d bytes, %v", len(b), err)
		}
	}
	if got := e.cache.mem.objects.Load(); got != 0 {
		t.Errorf("%d memfds in a TLS cache", got)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns their files.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
