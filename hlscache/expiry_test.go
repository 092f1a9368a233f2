package hlscache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// livePlaylist is a media playlist of n 2 s segments with 0.5 s parts.
func livePlaylist(first, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5\n#EXT-X-PART-INF:PART-TARGET=0.5\n#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-MAP:URI=\"init.mp4\"\n", first)
	for i := range n {
		fmt.Fprintf(&b, "#EXTINF:2.00000,\nseg%d.mp4\n", first+i)
	}
	return []byte(b.String())
}

func TestWindowAvailability(t *testing.T) {
	t.Parallel()
	w := parseWindow(livePlaylist(10, 7))
	if w == nil || w.duration != 14*time.Second || w.target != 2*time.Second {
		t.Fatalf("window %+v", w)
	}
	// Listed 14 s, then 2 s + 14 s after; the origin keeps 2 more
	// segments: 2×14 + 3×2.
	if got := w.availability(); got != 34*time.Second {
		t.Errorf("availability %v, want 34s", got)
	}
	var none *playlistWindow
	if got := none.availability(); got != fallbackAvailability {
		t.Errorf("without a window: %v", got)
	}
}

func TestLRUExpiry(t *testing.T) {
	t.Parallel()
	l := newCountingLRU(1 << 30)
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	obj := func() *object { return &object{status: 200, body: make([]byte, 100)} }
	l.add("seg1", obj(), t0, t0.Add(10*time.Second), 0)
	l.add("seg2", obj(), t0, t0.Add(20*time.Second), 0)
	l.add("init", obj(), t0, t0.Add(10*time.Second), 10*time.Second)
	l.add("forever", obj(), t0, time.Time{}, 0)
	// The object's own expiry wins when it is sooner.
	l.add("playlist", &object{status: 200, body: []byte("#EXTM3U"), expires: t0.Add(time.Second)}, t0, t0.Add(time.Hour), 0)

	if n := l.expire(t0.Add(time.Second)); n != 1 || l.get("playlist", t0) != nil {
		t.Fatalf("at 1 s: %d expired, playlist still there", n)
	}
	// A hit moves the init section's deadline; segments keep theirs.
	if l.get("init", t0.Add(9*time.Second)) == nil || l.get("seg1", t0.Add(9*time.Second)) == nil {
		t.Fatal("entries missing before their deadline")
	}
	if n := l.expire(t0.Add(10 * time.Second)); n != 1 || l.get("seg1", t0) != nil {
		t.Fatalf("at 10 s: %d expired (want seg1 only)", n)
	}
	if l.get("init", t0.Add(18*time.Second)) == nil {
		t.Fatal("init section asked for within its idle time was dropped")
	}
	// An add drops what is due without waiting for the sweep.
	l.add("seg3", obj(), t0.Add(20*time.Second), t0.Add(40*time.Second), 0)
	if _, n := l.size(); n != 3 { // init, forever, seg3
		t.Fatalf("%d entries after the add at 20 s, want 3", n)
	}
	l.expire(t0.Add(time.Hour))
	if b, n := l.size(); n != 1 || b != entrySize("forever", obj()) || len(l.expiry) != 0 {
		t.Fatalf("after an hour: %d entries, %d bytes, queue %d", n, b, len(l.expiry))
	}
	if l.expired != 5 {
		t.Errorf("%d counted as expired, want 5", l.expired)
	}
}

// TestStreamEndEmptiesLRU plays a live stream's traffic into the LRU as the
// cache would (playlist, init section, parts and segments, each with the
// lifetime Cache.lifetime gives it) on an injected clock, ends the stream,
// and checks that the LRU is empty once the availability window has passed,
// with no budget pressure and without anyone asking again.
func TestStreamEndEmptiesLRU(t *testing.T) {
	t.Parallel()
	c := &Cache{routes: newRouteTable(nil, time.Second, quiet)}
	c.routes.streams = map[string]*routeEntry{"live/cam1": {}}
	c.lru = newLRU(1 << 30)
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	add := func(file string, now time.Time, size int, ttl time.Duration) {
		req, err := parseRequest("/live/cam1/"+file, "")
		if err != nil {
			t.Fatal(err)
		}
		obj := &object{status: 200, body: make([]byte, size), fetched: now, storable: true}
		if ttl > 0 {
			obj.expires = now.Add(ttl)
		}
		if req.kind == kindPlaylist {
			obj.window = parseWindow(obj.body)
			c.routes.storePlaylist("live/cam1", file, obj)
		}
		deadline, idle := c.lifetime(req, obj)
		c.lru.add(file+"@"+now.String(), obj, now, deadline, idle)
		c.lru.get(file+"@"+now.String(), now)
	}
	now := t0
	for msn := range 300 { // 10 minutes of 2 s segments
		pl := &object{status: 200, body: livePlaylist(max(0, msn-6), min(msn+1, 7)), fetched: now, storable: true}
		pl.window = parseWindow(pl.body)
		c.routes.storePlaylist("live/cam1", "index.m3u8", pl)
		c.lru.add("index.m3u8@"+now.String(), pl, now, now.Add(250*time.Millisecond), 0)
		if msn == 0 {
			add("init.mp4", now, 900, 0)
		}
		for p := range 4 {
			add("part"+strconv.Itoa(msn*4+p)+".mp4", now.Add(time.Duration(p)*500*time.Millisecond), 12<<10, 0)
		}
		add("seg"+strconv.Itoa(msn)+".mp4", now.Add(2*time.Second), 48<<10, 0)
		now = now.Add(2 * time.Second)
		if msn%30 == 0 {
			c.lru.get("init.mp4@"+t0.String(), now) // players keep asking for it
		}
	}
	// While live, the LRU holds about one availability window of media
	// (34 s: 17 segments and their parts), not the 10 minutes played.
	c.lru.expire(now)
	if _, n := c.lru.size(); n > 2+18*5 || n < 15*5 {
		t.Fatalf("%d entries while live, want about one window's", n)
	}
	// The stream ends: nothing is asked any more.
	c.lru.expire(now.Add(34*time.Second + 2*time.Second))
	if b, n := c.lru.size(); n != 0 || b != 0 {
		t.Fatalf("%d entries (%d bytes) left after the stream ended and its window passed", n, b)
	}
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		r     io.Reader
		size  int64
		limit int
		want  int
		err   bool
	}{
		{"known", bytes.NewReader(make([]byte, 50_000)), 50_000, 1 << 20, 50_000, false},
		{"unknown", iotest.HalfReader(bytes.NewReader(make([]byte, 50_000))), -1, 1 << 20, 50_000, false},
		{"short", bytes.NewReader(make([]byte, 10)), 20, 1 << 20, 0, true},
		{"too large known", bytes.NewReader(nil), 2 << 20, 1 << 20, 0, true},
		{"too large unknown", bytes.NewReader(make([]byte, 1<<20+1)), -1, 1 << 20, 0, true},
	} {
		b, err := readBody(tc.r, tc.size, tc.limit)
		if (err != nil) != tc.err || len(b) != tc.want {
			t.Errorf("%s: %d bytes, err %v", tc.name, len(b), err)
			continue
		}
		// The capacity is no more than the allocator's size class above len.
		if c := cap(b); c < len(b) || c > len(b)+8192 {
			t.Errorf("%s: cap %d for %d bytes", tc.name, c, len(b))
		}
	}
}

// TestLRUBytesMatchHeap fills an LRU with objects fetched from a loopback
// origin the way the cache fetches them (bodies with and without a
// Content-Length, of the sizes a live stream has) and compares the bytes
// the LRU accounts (what streamgrid_cache_lru_bytes shows) with what the
// heap grew by, after a GC.
func TestLRUBytesMatchHeap(t *testing.T) {
	testkit.Slow(t) // fills ~50 MB of heap
	o := newFakeOrigin(t, "o1")
	rng := rand.New(rand.NewPCG(1, 2))
	type file struct {
		path string
		size int
	}
	var files []file
	for i := range 2000 {
		var size int
		switch i % 10 {
		case 0:
			size = 100_000 + rng.IntN(200_000) // segments
		case 1:
			size = 800 + rng.IntN(1500) // playlists, init sections, 404 texts
		default:
			size = 2_000 + rng.IntN(30_000) // parts
		}
		f := file{path: fmt.Sprintf("/live/cam%d/part%d.mp4", i%25, i), size: size}
		o.set(f.path, bytes.Repeat([]byte{byte(i)}, size))
		files = append(files, f)
	}
	o.handle(func(w http.ResponseWriter, r *http.Request) bool {
		// Every other body is chunked (no Content-Length).
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSuffix(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/'):], ".mp4"), "/part"))
		if n%2 == 0 {
			o.mu.Lock()
			w.Header().Set("Content-Length", strconv.Itoa(len(o.files[r.URL.Path])))
			o.mu.Unlock()
		}
		return false
	})
	c := &Cache{Client: &http.Client{}}
	c.ctx = context.Background()
	rt := route{node: "o1", addr: o.addr()}
	l := newLRU(1 << 40)
	fetch := func(f file) *object {
		req, err := parseRequest(f.path, "")
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := c.fetchUpstream(context.Background(), rt, req)
		if err != nil || len(obj.body) != f.size {
			t.Fatalf("%s: %v", f.path, err)
		}
		return obj
	}
	fetch(files[0]) // warm the connection and the transport's buffers
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, f := range files {
		req, _ := parseRequest(f.path, "")
		obj := fetch(f)
		l.add(cacheKey(rt, req), obj, obj.fetched, obj.fetched.Add(time.Hour), 0)
	}
	c.Client.CloseIdleConnections()
	runtime.GC()
	runtime.ReadMemStats(&after)
	accounted, n := l.size()
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	diff := float64(accounted-grew) / float64(grew)
	t.Logf("%d objects: LRU accounts %d bytes, heap grew %d (%+.2f%%), %.0f bytes per object beyond key and body capacity",
		n, accounted, grew, 100*diff, float64(grew-accounted)/float64(n)+entryOverhead)
	if diff < -0.03 || diff > 0.03 {
		t.Errorf("LRU bytes %d and heap growth %d differ by %.1f%% (more than 3%%)", accounted, grew, 100*diff)
	}
	runtime.KeepAlive(l)
}
