package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// On-demand cameras: a cache that gets a viewer request for a stream asks
// for it on the subject DemandSubject(path). Every edge that lists path as an
// on-demand source subscribes there (exact subject, no wildcard), starts
// pulling when it holds or wins the camera's lease, and answers with an
// empty reply. No subscriber means no edge has such a source: NATS answers
// "no responders" at once, so a request for an unknown path costs one round
// trip and does not wait.

const demandPrefix = "sg.demand."

// DemandSubject is the subject on which viewers' demand for path is signalled.
func DemandSubject(path string) string { return demandPrefix + EncodePath(path) }

// ServeDemand calls onDemand (which must not block) for every demand message
// for path, and acknowledges requests with an empty reply.
func ServeDemand(nc *nats.Conn, path string, onDemand func()) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(DemandSubject(path), func(m *nats.Msg) {
		onDemand()
		if m.Reply != "" {
			_ = nc.Publish(m.Reply, nil)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bus: serve demand %s: %w", path, err)
	}
	return sub, nil
}

// Demander signals viewers' demand for streams over NATS.
type Demander struct {
	NC *nats.Conn
}

// Demand tells the edges that a viewer asks for path. It reports whether
// some edge lists path as an on-demand source (and got the message); false
// with a nil error means none does.
func (d Demander) Demand(ctx context.Context, path string) (bool, error) {
	_, err := d.NC.RequestWithContext(ctx, DemandSubject(path), nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil
	}
	return false, fmt.Errorf("bus: demand %s: %w", path, err)
}
