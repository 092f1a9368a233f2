package memlimit

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

const mib = 1 << 20

// fakeHeap feeds the watcher figures and records what it did.
type fakeHeap struct {
	h      Heap
	trims  int
	shed   []int64
	onTrim Heap // what a trim leaves
}

func (f *fakeHeap) watcher(limit int64) *Watcher {
	return &Watcher{
		Limit: limit,
		Read:  func() Heap { return f.h },
		Trim: func() {
			f.trims++
			f.h = f.onTrim
		},
		Shed: func(n int64) int64 { f.shed = append(f.shed, n); return n },
	}
}

// A quiet node is trimmed at most every MinInterval; a trim that frees
// little doubles the wait for the next (up to MaxInterval), a busy period
// resets it; a busy node is left to the runtime.
func TestWatcherTrimsOnlyQuietNodes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []struct {
		name      string
		at        time.Duration
		allocs    uint64 // cumulative
		objects   uint64
		freed     uint64 // by a trim
		wantTrims int
	}{
		{"baseline", 0, 100 * mib, 60 * mib, 0, 0},
		{"busy: 50 MiB allocated in the period", 5 * time.Second, 150 * mib, 90 * mib, 0, 0},
		{"quiet: trimmed, 1 MiB freed", 10 * time.Second, 151 * mib, 90 * mib, 1 * mib, 1},
		{"quiet, 5 s later: too soon", 15 * time.Second, 152 * mib, 50 * mib, 0, 1},
		{"30 s after: trimmed (2nd of the spell), 1 MiB freed", 40 * time.Second, 153 * mib, 50 * mib, 1 * mib, 2},
		{"30 s after: trimmed (3rd), 30 MiB freed", 70 * time.Second, 154 * mib, 80 * mib, 30 * mib, 3},
		{"30 s after: trimmed (4th), 1 MiB freed", 100 * time.Second, 155 * mib, 50 * mib, 1 * mib, 4},
		{"30 s after a 4th trim that freed little: waits 60 s", 130 * time.Second, 156 * mib, 49 * mib, 0, 4},
		{"60 s after: trimmed, little freed again", 160 * time.Second, 157 * mib, 49 * mib, 1 * mib, 5},
		{"60 s after: waits 120 s now", 220 * time.Second, 158 * mib, 48 * mib, 0, 5},
		{"busy again", 225 * time.Second, 300 * mib, 100 * mib, 0, 5},
		{"quiet after busy: the wait is back to 30 s, 65 s have passed: trimmed", 230 * time.Second, 301 * mib, 100 * mib, 50 * mib, 6},
	}
	f := &fakeHeap{}
	w := f.watcher(0)
	for _, s := range steps {
		f.h = Heap{Allocs: s.allocs, Objects: s.objects, Live: s.objects / 2}
		f.onTrim = Heap{Allocs: s.allocs, Objects: s.objects - s.freed, Live: s.objects - s.freed}
		w.Step(t0.Add(s.at))
		if f.trims != s.wantTrims {
			t.Fatalf("%s: %d trims, want %d", s.name, f.trims, s.wantTrims)
		}
	}
	if len(f.shed) != 0 {
		t.Fatalf("no limit, yet shed %v", f.shed)
	}
}

// Past PressureShare of the limit the watcher asks the cache to shed down
// to ReliefShare; below it, nothing.
func TestWatcherShedsUnderPressure(t *testing.T) {
	f := &fakeHeap{}
	w := f.watcher(1000 * mib)
	t0 := time.Unix(1000, 0)
	for i, live := range []uint64{500, 899, 950, 1200} {
		f.h = Heap{Allocs: uint64(i) * 100 * mib, Objects: live * mib, Live: live * mib}
		w.Step(t0.Add(time.Duration(i) * 5 * time.Second))
	}
	want := []int64{150 * mib, 400 * mib}
	if len(f.shed) != len(want) || f.shed[0] != want[0] || f.shed[1] != want[1] {
		t.Fatalf("shed %v, want %v", f.shed, want)
	}
}

// The real trim, on the real heap: 64 MiB of garbage (the collector held
// off, as on an idle node between its two-minute collections), a quiet
// period, and the heap's objects fall by it.
func TestWatcherRealTrim(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	w := &Watcher{MinGarbage: 16 * mib, QuietBytes: 8 * mib}
	var trimmed []Heap
	w.OnTrim = func(before, after Heap) { trimmed = append(trimmed, before, after) }
	runtime.GC()
	w.Step(time.Now()) // baseline
	garbage := make([][]byte, 64)
	for i := range garbage {
		garbage[i] = make([]byte, mib)
	}
	w.Step(time.Now()) // busy: 64 MiB allocated since the baseline
	if len(trimmed) != 0 {
		t.Fatal("trimmed a busy heap")
	}
	garbage = nil
	_ = garbage
	w.Step(time.Now().Add(time.Minute)) // quiet now, 64 MiB unreachable
	if len(trimmed) != 2 {
		t.Fatal("a quiet heap with 64 MiB of garbage was not trimmed")
	}
	before, after := trimmed[0], trimmed[1]
	if after.Objects+32*mib > before.Objects {
		t.Fatalf("trim left %d MiB of %d MiB in heap objects", after.Objects/mib, before.Objects/mib)
	}
}
