package hooks

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/internal/testkit"
)

// receiver records the events POSTed to it; status says what to answer to
// the n-th attempt (0-based).
type receiver struct {
	mu       sync.Mutex
	attempts int
	events   []Event
	status   func(n int) int
	block    chan struct{} // when set, handlers wait on it
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.block != nil {
		select {
		case <-r.block:
		case <-req.Context().Done():
			return
		}
	}
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	n := r.attempts
	r.attempts++
	code := http.StatusNoContent
	if r.status != nil {
		code = r.status(n)
	}
	if code < 300 {
		var ev Event
		if err := json.Unmarshal(b, &ev); err == nil && req.Header.Get("Content-Type") == "application/json" {
			r.events = append(r.events, ev)
		}
	}
	r.mu.Unlock()
	w.WriteHeader(code)
}

func (r *receiver) got() ([]Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...), r.attempts
}

func start(t *testing.T, url string, retries, queue int, timeout time.Duration) *Notifier {
	t.Helper()
	n := &Notifier{
		Node: "n1", Role: "run", QueueSize: queue, BackoffInitial: 10 * time.Millisecond,
		Config: Config{URL: url, Events: []string{"ready", "gone", "refused", "failover"}, Timeout: timeout, Retries: retries},
		Log:    slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(),
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func TestDeliversInOrder(t *testing.T) {
	r := &receiver{}
	srv := httptest.NewServer(r)
	defer srv.Close()
	n := start(t, srv.URL, 0, 16, time.Second)
	n.Notify(Event{Event: "ready", Path: "live/a", Protocol: "rtsp"})
	n.Notify(Event{Event: "gone", Path: "live/a"})
	testkit.WaitFor(t, 10*time.Second, "two events", func() bool { ev, _ := r.got(); return len(ev) == 2 })
	ev, _ := r.got()
	if ev[0].Event != "ready" || ev[1].Event != "gone" || ev[0].Node != "n1" || ev[0].Path != "live/a" || ev[0].Time.IsZero() {
		t.Fatalf("events: %+v", ev)
	}
}

func TestRetriesAFailingReceiver(t *testing.T) {
	cases := []struct {
		name      string
		status    func(int) int
		retries   int
		delivered float64
		attempts  int
	}{
		{"500 twice then ok", func(n int) int { return map[bool]int{true: 500, false: 200}[n < 2] }, 3, 1, 3},
		{"always 503, gives up", func(int) int { return 503 }, 2, 0, 3},
		{"400 is not retried", func(int) int { return 400 }, 3, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &receiver{status: tc.status}
			srv := httptest.NewServer(r)
			defer srv.Close()
			n := start(t, srv.URL, tc.retries, 16, time.Second)
			n.Notify(Event{Event: "ready", Path: "live/a"})
			testkit.WaitFor(t, 10*time.Second, "the delivery to end", func() bool {
				return testutil.ToFloat64(n.delivered.WithLabelValues("ready"))+testutil.ToFloat64(n.failed.WithLabelValues("ready")) == 1
			})
			if _, attempts := r.got(); attempts != tc.attempts {
				t.Errorf("attempts %d, want %d", attempts, tc.attempts)
			}
			if v := testutil.ToFloat64(n.delivered.WithLabelValues("ready")); v != tc.delivered {
				t.Errorf("delivered %v, want %v", v, tc.delivered)
			}
			if v := testutil.ToFloat64(n.retries.WithLabelValues("ready")); v != float64(tc.attempts-1) {
				t.Errorf("retries %v, want %d", v, tc.attempts-1)
			}
		})
	}
}

// A receiver that never answers costs the caller nothing: Notify returns at
// once, the queue fills, the rest is dropped and counted.
func TestStuckReceiverNeverBlocks(t *testing.T) {
	r := &receiver{block: make(chan struct{})}
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer close(r.block)
	n := start(t, srv.URL, 5, 4, time.Hour)
	done := make(chan struct{})
	go func() {
		for range 1000 {
			n.Notify(Event{Event: "refused", Path: "live/a"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked on a stuck receiver")
	}
	// One in flight, four queued, the rest dropped.
	if d := testutil.ToFloat64(n.dropped.WithLabelValues("refused")); d < 1000-5 {
		t.Fatalf("dropped %v of 1000, want at least 995", d)
	}
}

func TestUpdateAndFilter(t *testing.T) {
	r := &receiver{}
	srv := httptest.NewServer(r)
	defer srv.Close()
	n := start(t, "", 0, 16, time.Second)
	n.Notify(Event{Event: "ready", Path: "live/off"}) // no URL: not sent
	if err := n.Update(Config{URL: srv.URL, Events: []string{"gone"}}); err != nil {
		t.Fatal(err)
	}
	n.Notify(Event{Event: "ready", Path: "live/filtered"})
	n.Notify(Event{Event: "gone", Path: "live/b"})
	testkit.WaitFor(t, 10*time.Second, "the gone event", func() bool { ev, _ := r.got(); return len(ev) == 1 })
	if ev, attempts := r.got(); ev[0].Path != "live/b" || attempts != 1 {
		t.Fatalf("events %+v after %d attempts", ev, attempts)
	}
}
