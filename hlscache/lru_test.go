package hlscache

import (
	"fmt"
	"testing"
	"time"
)

// countingLRU is an LRU that counts the entries it evicted and expired.
type countingLRU struct {
	*lru
	evicted, expired int
}

func newCountingLRU(maxBytes int64) *countingLRU {
	c := &countingLRU{lru: newLRU(maxBytes)}
	c.onEvict = func(n int) { c.evicted += n }
	c.onExpire = func(n int) { c.expired += n }
	return c
}

func TestLRU(t *testing.T) {
	t.Parallel()
	c := newCountingLRU(1 << 20)
	now := time.Now()
	obj := func(n int) *object { return &object{status: 200, body: make([]byte, n)} }
	// Each entry accounts 600 + 2 + entryOverhead bytes: 9 fit in 9 of them.
	each := entrySize("k0", obj(600))
	c.setMax(9*each + each/2)
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	for _, k := range keys[:9] {
		if !c.add(k, obj(600), now, time.Time{}, 0) {
			t.Fatalf("%s not kept", k)
		}
	}
	if c.get("k0", now) == nil { // k0 becomes the most recently used
		t.Fatal("k0 missing")
	}
	c.add("k9", obj(600), now, time.Time{}, 0)
	if c.get("k1", now) != nil {
		t.Error("k1, the least recently used, was not evicted")
	}
	if c.get("k0", now) == nil || c.get("k9", now) == nil {
		t.Error("a recently used entry was evicted")
	}
	if size, n := c.size(); size > 9*each+each/2 || n != 9 || c.evicted != 1 {
		t.Errorf("size %d, %d entries, %d evicted", size, n, c.evicted)
	}
	if c.add("big", obj(1000), now, time.Time{}, 0) {
		t.Error("an object over an eighth of the budget was kept")
	}
	// Replacing a key does not double-count it.
	c.add("k9", obj(10), now, time.Time{}, 0)
	if size, n := c.size(); n != 9 || size != 8*each+entrySize("k9", obj(10)) {
		t.Errorf("after replace: size %d, %d entries", size, n)
	}
	// Expired objects are not served and leave.
	c.add("short", &object{status: 200, body: []byte("x"), expires: now.Add(time.Second)}, now, time.Time{}, 0)
	if c.get("short", now) == nil {
		t.Error("fresh object missing")
	}
	if c.get("short", now.Add(2*time.Second)) != nil {
		t.Error("expired object served")
	}
	if _, n := c.size(); n != 9 {
		t.Errorf("expired object kept: %d entries", n)
	}
}

func TestLRUSetMaxEvicts(t *testing.T) {
	t.Parallel()
	l := newCountingLRU(1 << 20)
	body := make([]byte, 10<<10)
	for i := range 50 {
		if !l.add(fmt.Sprintf("k%d", i), &object{status: 200, body: body}, time.Now(), time.Time{}, 0) {
			t.Fatal("object not kept")
		}
	}
	bytes, n := l.size()
	if n != 50 {
		t.Fatalf("%d entries, want 50", n)
	}
	l.setMax(bytes / 2)
	if b, n := l.size(); b > bytes/2 || n >= 50 || l.evicted != 50-n {
		t.Fatalf("after halving the budget: %d bytes, %d entries, %d evicted", b, n, l.evicted)
	}
	if l.get("k49", time.Now()) == nil || l.get("k0", time.Now()) != nil {
		t.Fatal("the oldest entries should go first")
	}
}

// Memory pressure sheds the least recently used entries, as many as free
// the bytes asked for, and keeps the budget as it is.
func TestLRUShed(t *testing.T) {
	t.Parallel()
	c := newCountingLRU(1 << 20)
	now := time.Now()
	obj := func() *object { return &object{status: 200, body: make([]byte, 1000)} }
	each := entrySize("k0", obj())
	for i := range 6 {
		c.add(fmt.Sprintf("k%d", i), obj(), now, time.Time{}, 0)
	}
	c.get("k0", now) // the most recently used now
	if freed := c.shed(2*each + 1); freed != 3*each {
		t.Fatalf("shed freed %d bytes, want 3 entries' %d", freed, 3*each)
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		if c.get(k, now) != nil {
			t.Errorf("%s, among the least recently used, was not shed", k)
		}
	}
	for _, k := range []string{"k0", "k4", "k5"} {
		if c.get(k, now) == nil {
			t.Errorf("%s was shed", k)
		}
	}
	if size, n := c.size(); size != 3*each || n != 3 || c.evicted != 3 || c.maxBytes != 1<<20 {
		t.Errorf("after shed: %d bytes, %d entries, %d evicted, budget %d", size, n, c.evicted, c.maxBytes)
	}
	if freed := c.shed(1 << 30); freed != 3*each {
		t.Errorf("shedding more than held freed %d, want all %d", freed, 3*each)
	}
}
