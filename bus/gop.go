package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/internal/media"
)

// ServeGOP answers requests for path's last GOP with the packets that gop
// returns, sent in order to the request's reply subject and followed by an
// empty message that marks the end.
func ServeGOP(nc *nats.Conn, path string, gop func() []*media.Packet) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(GOPSubject(path), func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		maxMsg := int(nc.MaxPayload())
		var buf []byte
		for _, p := range gop() {
			var err error
			buf, err = p.Marshal(maxMsg, buf, func(b []byte) error { return nc.Publish(m.Reply, b) })
			if err != nil {
				return
			}
		}
		_ = nc.Publish(m.Reply, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("bus: serve gop %s: %w", path, err)
	}
	return sub, nil
}

// ErrNoGOP is returned when no edge answers for a stream's GOP.
var ErrNoGOP = errors.New("no GOP available")

// FetchGOP asks the edge of path for its last GOP and returns its packets in order.
func FetchGOP(ctx context.Context, nc *nats.Conn, path string) ([]*media.Packet, error) {
	inbox := nc.NewInbox() // under the connection's inbox prefix: the only replies its user may read
	ch := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(GOPSubject(path), inbox, nil); err != nil {
		return nil, err
	}
	var asm media.Assembler
	var out []*media.Packet
	for {
		select {
		case <-ctx.Done():
			if len(out) == 0 {
				return nil, ErrNoGOP
			}
			return out, nil
		case m := <-ch:
			if len(m.Data) == 0 {
				if m.Header.Get("Status") == "503" { // no responders: no edge has the stream
					return nil, ErrNoGOP
				}
				return out, nil
			}
			p, err := asm.Push(m.Data)
			if err != nil {
				return nil, err
			}
			if p != nil {
				out = append(out, p)
			}
		}
	}
}
