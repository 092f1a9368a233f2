package gossip

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

func start(t *testing.T, name string, seeds []string, key []byte) *Node {
	t.Helper()
	n := &Node{Name: name, BindAddr: "127.0.0.1", Seeds: seeds, SecretKey: key,
		Meta: Meta{Role: "origin", HTTP: "127.0.0.1:1"}, Log: slog.New(slog.DiscardHandler)}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMembership(t *testing.T) {
	defer goleak.VerifyNone(t, testkit.IgnoreMemberlistProbe)
	key := []byte("0123456789abcdef")
	a := start(t, "a", nil, key)
	defer a.Close()
	b := start(t, "b", []string{a.Addr()}, key)
	defer b.Close()
	c := start(t, "c", []string{a.Addr()}, key)

	testkit.WaitFor(t, 10*time.Second, "three members everywhere", func() bool {
		return len(a.Members()) == 3 && len(b.Members()) == 3 && len(c.Members()) == 3
	})
	if m, ok := b.Member("a"); !ok || m.Meta.Role != "origin" || m.Meta.HTTP != "127.0.0.1:1" {
		t.Fatalf("b sees a as %+v %v", m, ok)
	}
	meta := a.CurrentMeta()
	meta.Load = 7
	if err := a.SetMeta(meta); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "updated metadata at b", func() bool { m, _ := b.Member("a"); return m.Meta.Load == 7 })
	meta.Transcode = &Transcode{Encoders: NVENCH264 | X264, GPU: 8, GPUFree: 5, CPU: 2, CPUFree: 1}
	if err := a.SetMeta(meta); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "transcode capacity at b", func() bool {
		m, _ := b.Member("a")
		return m.Meta.Transcode != nil && *m.Meta.Transcode == *meta.Transcode
	})

	// A crashed node (no leave) is dropped by probing.
	c.Shutdown()
	testkit.WaitFor(t, 10*time.Second, "c gone from a and b", func() bool {
		_, inA := a.Member("c")
		_, inB := b.Member("c")
		return !inA && !inB
	})
	c.Close() // harmless after Shutdown
}

func TestMetaTooLarge(t *testing.T) {
	n := &Node{Name: "x", BindAddr: "127.0.0.1", Meta: Meta{Role: strings.Repeat("r", 600)}, Log: slog.New(slog.DiscardHandler)}
	if err := n.Start(); err == nil || !strings.Contains(err.Error(), "512") {
		n.Close()
		t.Fatalf("oversized metadata: %v", err)
	}
}

func TestWrongKeyDoesNotJoin(t *testing.T) {
	a := start(t, "a", nil, []byte("0123456789abcdef"))
	defer a.Close()
	b := start(t, "b", []string{a.Addr()}, []byte("fedcba9876543210"))
	defer b.Close()
	time.Sleep(500 * time.Millisecond) // nothing to poll for: the point is that nothing happens
	if len(a.Members()) != 1 || len(b.Members()) != 1 {
		t.Fatalf("nodes with different keys joined: %d %d", len(a.Members()), len(b.Members()))
	}
}

// TestKeyRotation: nodes that send with different keys, each accepting the
// other's as an old key, form one cluster: the middle step of a rotation.
func TestKeyRotation(t *testing.T) {
	k1, k2 := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	a := &Node{Name: "a", BindAddr: "127.0.0.1", SecretKey: k1, OldKeys: [][]byte{k2}, Meta: Meta{Role: "cache"}, Log: slog.New(slog.DiscardHandler)}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := &Node{Name: "b", BindAddr: "127.0.0.1", SecretKey: k2, OldKeys: [][]byte{k1}, Seeds: []string{a.Addr()}, Meta: Meta{Role: "cache"}, Log: slog.New(slog.DiscardHandler)}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	testkit.WaitFor(t, 10*time.Second, "a and b joined", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
}

// TestDeadNameReclaim: the name of a member that just failed is not taken
// over by another address at once, only after ReclaimAfter.
func TestDeadNameReclaim(t *testing.T) {
	testkit.Slow(t)
	key := []byte("0123456789abcdef")
	for _, tc := range []struct {
		name     string
		reclaim  time.Duration
		accepted bool
	}{
		{"default window", 0, false},
		{"window passed", time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &testkit.Buffer{}
			a := &Node{Name: "a", BindAddr: "127.0.0.1", SecretKey: key, ReclaimAfter: tc.reclaim,
				Meta: Meta{Role: "cache"}, Log: slog.New(slog.NewTextHandler(logs, nil))}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			victim := start(t, "origin-x", []string{a.Addr()}, key)
			testkit.WaitFor(t, 10*time.Second, "the victim at a", func() bool { _, ok := a.Member("origin-x"); return ok })
			victim.Shutdown() // a crash: no leave
			testkit.WaitFor(t, 10*time.Second, "the victim declared dead", func() bool { _, ok := a.Member("origin-x"); return !ok })

			impostor := start(t, "origin-x", []string{a.Addr()}, key)
			defer impostor.Close()
			if tc.accepted {
				testkit.WaitFor(t, 10*time.Second, "the new address accepted", func() bool {
					m, ok := a.Member("origin-x")
					return ok && m.Addr == impostor.Addr()
				})
				return
			}
			// a has seen the impostor's claim once it logs the conflict.
			testkit.WaitFor(t, 10*time.Second, "the conflict noticed", func() bool { return strings.Contains(logs.String(), "Conflicting address for origin-x") })
			if m, ok := a.Member("origin-x"); ok {
				t.Fatalf("a gave the dead member's name to %s at once", m.Addr)
			}
		})
	}
}

// TestFullOriginRecordFits: an all-in-one origin's record with every field
// at a realistic worst case, transcode capacity included, stays within
// memberlist's limit with room to spare.
func TestFullOriginRecordFits(t *testing.T) {
	long := strings.Repeat("h", 63) // a DNS label at its longest
	m := Meta{Role: "run", HTTP: long + ":65535", API: long + ":65535", Cache: long + ":65535",
		Load: 100000, Capacity: 100000, Draining: true, Version: "v10.20.30-123-gabcdef0-dirty",
		Transcode: &Transcode{Encoders: NVENCH264 | NVENCHEVC | X264 | X265 | NVDEC,
			GPU: 1000, GPUFree: 1000, CPU: 1000, CPUFree: 1000}}
	n := &Node{}
	if err := n.encodeMeta(m); err != nil {
		t.Fatal(err)
	}
	if size := len(*n.meta.Load()); size > 400 {
		t.Fatalf("worst-case origin record is %d bytes: too close to memberlist's 512", size)
	}
	if got := n.CurrentMeta(); got.Transcode == nil || *got.Transcode != *m.Transcode {
		t.Fatalf("transcode capacity did not round-trip: %+v", got.Transcode)
	}
}

func TestEncoders(t *testing.T) {
	for _, tc := range []struct {
		e    Encoders
		want string
	}{
		{0, "none"},
		{X264, "x264"},
		{NVENCH264 | X264 | NVDEC, "nvenc_h264+x264+nvdec"},
		{NVENCH264 | NVENCHEVC | X264 | X265 | NVDEC, "nvenc_h264+nvenc_hevc+x264+x265+nvdec"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%08b: %q, want %q", tc.e, got, tc.want)
		}
	}
	all := NVENCH264 | X264
	if !all.Has(NVENCH264) || !all.Has(NVENCH264|X264) || all.Has(NVENCHEVC) || !all.Has(0) {
		t.Fatal("Has")
	}
}
