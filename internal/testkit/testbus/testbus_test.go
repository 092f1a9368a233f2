package testbus

import (
	"context"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/bus"
)

func TestBusRoundTrip(t *testing.T) {
	t.Parallel()
	s := StartServer(t, func(s *bus.Server) { s.MaxPayload = 4096 })
	reg := StartRegistry(t, Connect(t, s), time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := reg.ClaimStream(ctx, &bus.StreamInfo{Path: "live/x", Generation: 1, Edge: "e"}, nil); err != nil {
		t.Fatal(err)
	}
	info, err := StartRegistry(t, Connect(t, s), time.Second).Stream(ctx, "live/x")
	if err != nil || info.Edge != "e" {
		t.Fatalf("stream record %+v, %v", info, err)
	}
}
