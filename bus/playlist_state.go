package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// PlaylistState is what a new owner needs to continue a stream's playlist.
type PlaylistState struct {
	// NextMSN is the first media sequence number the next packager must use.
	NextMSN uint64 `json:"next_msn"`
	// Discontinuity is the discontinuity count so far (EXT-X-DISCONTINUITY-SEQUENCE of the next segment).
	Discontinuity uint64 `json:"discontinuity"`
	// Epoch of the owner that wrote it.
	Epoch uint64 `json:"epoch"`
	// Node that wrote it.
	Node string `json:"node"`
	// NextTime is the media timestamp, in nanoseconds, at or after which the
	// next packager starts its output (like NextMSN, a little ahead of what
	// was produced), so timestamps never go backwards across the
	// discontinuity of a failover. 0: none.
	NextTime int64 `json:"next_time,omitempty"`
	// TargetDuration is the longest segment of the stream's last source
	// muxer, in seconds rounded (its keyframe interval at the origin's
	// segment duration), remembered across publisher sessions so a new
	// muxer can declare EXT-X-TARGETDURATION up front and serve its
	// playlist from the first part. 0: not known yet (or a record written
	// before this field existed).
	TargetDuration int `json:"target_duration,omitempty"`
}

// State returns a stream's playlist state; ErrNotFound when none was written.
func (r *Registry) State(ctx context.Context, path string) (*PlaylistState, uint64, error) {
	return getJSON[PlaylistState](ctx, r.state, path, "state")
}

// PutState writes st for path unless a newer epoch has written there: the
// fencing check that stops a paused old owner from overwriting its successor.
// The write is a compare-and-set on the record's revision, so a concurrent
// writer makes it retry the check.
func (r *Registry) PutState(ctx context.Context, path string, st PlaylistState) error {
	key := EncodePath(path)
	b, _ := json.Marshal(st)
	for range 5 {
		cur, rev, err := r.State(ctx, path)
		switch {
		case errors.Is(err, ErrNotFound):
			_, err = r.state.Create(ctx, key, b)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return err
		case err != nil:
			return err
		}
		if cur.Epoch > st.Epoch {
			return ErrFenced
		}
		_, err = r.state.Update(ctx, key, b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return err
	}
	return fmt.Errorf("bus: put state %s: too much contention", path)
}
