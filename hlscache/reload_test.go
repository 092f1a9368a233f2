package hlscache

import (
	"fmt"
	"testing"
	"time"
)

func TestLRUSetMaxEvicts(t *testing.T) {
	l := newLRU(1 << 20)
	evicted := 0
	l.onEvict = func(n int) { evicted += n }
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
	if b, n := l.size(); b > bytes/2 || n >= 50 || evicted != 50-n {
		t.Fatalf("after halving the budget: %d bytes, %d entries, %d evicted", b, n, evicted)
	}
	if l.get("k49", time.Now()) == nil || l.get("k0", time.Now()) != nil {
		t.Fatal("the oldest entries should go first")
	}
}
