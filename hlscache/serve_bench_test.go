package hlscache

import (
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// benchSegmentSize is the size of the LL-HLS video segment the cache
// benchmark (loadtest/bench/cache.sh) fetches: 262 220 bytes.
const benchSegmentSize = 262220

// BenchmarkServeSegment fetches a ~260 KB segment, already in the LRU,
// through the cache's real HTTP server over loopback with keep-alive
// connections, answered by the fast path and by net/http. The client runs in the same process, so ns/op and allocs/op
// include its share; compare runs, not absolutes.
//
//	flock /tmp/sgbench.lock go test -run '^$' -bench Serve -benchmem ./hlscache/
//
// The Signed variants are the same through a signed URL: the difference is
// what the token check costs a request.
func BenchmarkServeSegment(b *testing.B) {
	benchServe(b, "/live/cam1/abc_video1_seg7.mp4", benchSegment(), false)
}

// BenchmarkServeSegmentSigned is BenchmarkServeSegment through a signed URL
// (the cache has a signing key and checks every request's token).
func BenchmarkServeSegmentSigned(b *testing.B) {
	benchServe(b, "/live/cam1/abc_video1_seg7.mp4", benchSegment(), true)
}

// benchSegment is benchSegmentSize bytes of fixed pseudo-random media.
func benchSegment() []byte {
	seg := make([]byte, benchSegmentSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range seg {
		seg[i] = byte(r.Uint32())
	}
	return seg
}

// BenchmarkServeSmall is BenchmarkServeSegment for an object the size of a
// playlist, where the per-request cost dominates. (An immutable file stands
// in for the playlist, which the LRU would keep only mediaPlaylistTTL.)
func BenchmarkServeSmall(b *testing.B) {
	benchServe(b, "/live/cam1/abc_video1_init.mp4", []byte(llPlaylist), false)
}

// BenchmarkServeSmallSigned is BenchmarkServeSmall through a signed URL.
func BenchmarkServeSmallSigned(b *testing.B) {
	benchServe(b, "/live/cam1/abc_video1_init.mp4", []byte(llPlaylist), true)
}

// benchServe runs the benchmark twice: through the fast path
// (fastserver.go; not for a signed cache, which has none), and through net/http
// alone (the cache's server without the fast path, as before it).
func benchServe(b *testing.B, path string, body []byte, signed bool) {
	for _, fast := range []bool{true, false} {
		if fast && signed {
			continue // a signed cache has no fast path
		}
		name := "path=net-http"
		if fast {
			name = "path=fast"
		}
		b.Run(name, func(b *testing.B) { benchServePath(b, path, body, signed, fast) })
	}
}

func benchServePath(b *testing.B, path string, body []byte, signed, fast bool) {
	e := newEnv(b, func(c *Cache) {
		if signed {
			c.SigningKey = testKey
		}
		c.noFastPath = !fast
	})
	e.origin.set(path, body)
	e.own("live/cam1")
	if signed {
		path = "/s/" + Sign(testKey, "live/cam1", time.Now().Add(time.Hour), nil) + path
	}
	if r := e.get(path); r.status != http.StatusOK || r.body != string(body) {
		b.Fatalf("warm-up: %d, %d bytes", r.status, len(r.body))
	}
	url := e.base + path
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := e.client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || n != int64(len(body)) {
				b.Errorf("%d, %d bytes, %v", resp.StatusCode, n, err)
				return
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps nothing, for measuring the
// handler alone.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkHandler measures the cache's handler alone (no sockets, no
// net/http server) for a playlist-sized cached object, plain and through a
// signed URL: the difference is the whole cost of the token check
// (prefix split, client address, HMAC, expiry).
//
//	go test -run '^$' -bench Handler -benchmem ./hlscache/
func BenchmarkHandler(b *testing.B) {
	for _, signed := range []bool{false, true} {
		name := "plain"
		if signed {
			name = "signed"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, func(c *Cache) {
				if signed {
					c.SigningKey = testKey
				}
			})
			const p = "/live/cam1/abc_video1_init.mp4"
			e.origin.set(p, []byte(llPlaylist))
			e.own("live/cam1")
			target := p
			if signed {
				target = "/s/" + Sign(testKey, "live/cam1", time.Now().Add(time.Hour), nil) + p
			}
			if r := e.get(target); r.status != http.StatusOK {
				b.Fatalf("warm-up: %d", r.status)
			}
			h := e.cache.Handler()
			req, _ := http.NewRequest(http.MethodGet, "http://cache"+target, nil)
			req.RemoteAddr = "192.0.2.10:51234"
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}
