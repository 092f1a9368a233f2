package loadtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/bus"
)

// TestWatchFanoutCost measures what a registry watch costs the bus per
// delivered change, for the two ways a watch follows a bucket: the
// republished subject (buckets this build creates) and an ordered
// consumer (buckets created by builds before republishing). A three-node
// bus runs as child processes (SG_WATCHCOST_BIN, a streamgrid binary) with
// R3 buckets, as in the control-plane simulation; 100 registries on their
// own connections watch sg_streams while one writes 2 000 stream records,
// 200 a second, and the bus processes' CPU time over that window is
// divided by the deliveries. It fails if a watch misses a record. Skipped
// without SG_WATCHCOST_BIN: it is a measurement (docs/cluster.md), run
// under the benchmark lock:
//
//	go build -o /tmp/sg ./cmd/streamgrid
//	SG_WATCHCOST_BIN=/tmp/sg go test -run TestWatchFanoutCost -v ./loadtest/
func TestWatchFanoutCost(t *testing.T) {
	bin := os.Getenv("SG_WATCHCOST_BIN")
	if bin == "" {
		t.Skip("a measurement: set SG_WATCHCOST_BIN to a streamgrid binary to run it")
	}
	watchers, records := 100, 2000
	if v, err := strconv.Atoi(os.Getenv("SG_WATCHCOST_WATCHERS")); err == nil && v > 0 {
		watchers = v
	}
	for _, mode := range []string{"consumer", "republish"} {
		t.Run(mode, func(t *testing.T) {
			perDelivery, perWrite := watchFanout(t, bin, mode == "consumer", watchers, records)
			t.Logf("%s: %d watchers, %d records: bus CPU %.1f µs a delivery, %.2f ms a record written",
				mode, watchers, records, perDelivery, perWrite)
		})
	}
}

// watchFanout runs one measurement; consumer: the bucket is created
// without republishing first, so that the registries watch it through
// consumers.
func watchFanout(t *testing.T, bin string, consumer bool, watchers, records int) (usPerDelivery, msPerWrite float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := &busCluster{command: []string{bin, "bus"}, dir: t.TempDir()}
	if err := b.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.close()
	connect := func(i int) *bus.Registry {
		nc, err := nats.Connect(b.urls[i%len(b.urls)])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return &bus.Registry{JS: js, Replicas: 3}
	}
	writer := connect(0)
	if consumer {
		// As a build before republishing created it.
		// A forming cluster leaves requests unanswered until it has a
		// meta leader: each attempt gets its own short deadline.
		var err error
		for range 50 {
			actx, acancel := context.WithTimeout(ctx, 3*time.Second)
			_, err = writer.JS.CreateKeyValue(actx, jetstream.KeyValueConfig{Bucket: bus.BucketStreams, History: 1, Replicas: 3, Storage: jetstream.FileStorage})
			acancel()
			if err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := writer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	for i := range watchers {
		r := connect(i)
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		ch, err := r.WatchStreams(ctx)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range ch {
				got.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second) // the watches are open and idle
	cpu := func() float64 {
		var sum float64
		for _, pid := range b.pids() {
			c, _, err := readProcUsage("/proc", pid)
			if err != nil {
				t.Fatal(err)
			}
			sum += c
		}
		return sum
	}
	c0 := cpu()
	want := int64(watchers * records)
	for i := range records {
		info := &bus.StreamInfo{Path: fmt.Sprintf("cost/s%05d", i), Generation: 1, Edge: "e1", Protocol: "rtsp"}
		if _, err := writer.ClaimStream(ctx, info, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for got.Load() < want && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	used := cpu() - c0
	if n := got.Load(); n != want {
		t.Fatalf("%d of %d deliveries", n, want)
	}
	return used / float64(want) * 1e6, used / float64(records) * 1e3
}
