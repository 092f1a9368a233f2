package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/streamgrid/streamgrid/internal/media"
)

// TrackInfo describes one track of a stream: enough to package it without
// waiting for in-band parameters.
type TrackInfo struct {
	ID        uint8       `json:"id"`
	Codec     media.Codec `json:"codec"`
	ClockRate int         `json:"clock_rate"`
	// Video parameter sets, without start codes.
	VPS []byte `json:"vps,omitempty"`
	SPS []byte `json:"sps,omitempty"`
	PPS []byte `json:"pps,omitempty"`
	// AudioConfig is the marshalled MPEG-4 AudioSpecificConfig (AAC).
	AudioConfig []byte `json:"audio_config,omitempty"`
	// Channels is the channel count (Opus, AAC).
	Channels int `json:"channels,omitempty"`
}

// StreamInfo is a live stream's registry record.
type StreamInfo struct {
	Path       string `json:"path"`
	Generation uint64 `json:"generation"`
	Edge       string `json:"edge"` // node name of the ingesting edge
	// Instance is the ingesting edge's liveness instance
	// (Liveness.Instance): the record holds while that instance's
	// heartbeats do (Liveness.HoldsStream), and is never renewed.
	Instance string      `json:"instance,omitempty"`
	Protocol string      `json:"protocol"` // rtsp, rtmp, pull
	Tracks   []TrackInfo `json:"tracks"`
	Started  time.Time   `json:"started"`
}

// ClaimStream registers a new live stream. It fails with ErrStreamBusy when
// the path is live already. A record whose edge instance is dead (dead
// says so; nil: none is) is removed first, by compare-and-set on its
// revision, so a publisher that reconnects to another edge registers at
// once. The returned revision updates and releases it.
func (r *Registry) ClaimStream(ctx context.Context, info *StreamInfo, dead func(*StreamInfo) bool) (uint64, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	key := EncodePath(info.Path)
	for range 3 {
		rev, err := r.streams.Create(ctx, key, b)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("bus: claim stream %s: %w", info.Path, err)
		}
		if dead == nil {
			return 0, ErrStreamBusy
		}
		cur, crev, err := r.StreamRev(ctx, info.Path)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // removed meanwhile
		case err != nil:
			return 0, fmt.Errorf("bus: claim stream %s: %w", info.Path, err)
		case !dead(cur):
			return 0, ErrStreamBusy
		}
		if err := r.ReleaseStream(ctx, info.Path, crev); err != nil && !errors.Is(err, ErrLeaseLost) {
			return 0, fmt.Errorf("bus: claim stream %s: removing a dead edge's record: %w", info.Path, err)
		}
	}
	return 0, ErrStreamBusy
}

// ReplaceStream writes info over whatever record the path has. It is for a
// camera pull: the source lease the caller holds already proves it is the one
// edge to publish that path, so a record left by a crashed edge must not make
// it wait.
func (r *Registry) ReplaceStream(ctx context.Context, info *StreamInfo) (uint64, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	rev, err := r.streams.Put(ctx, EncodePath(info.Path), b)
	if err != nil {
		return 0, fmt.Errorf("bus: replace stream %s: %w", info.Path, err)
	}
	return rev, nil
}

// UpdateStream rewrites a stream record (new parameter sets, a new edge
// instance) by compare-and-set on rev; it returns the new revision, or
// ErrLeaseLost when the record changed or went meanwhile. Records are
// written on change only, never renewed.
func (r *Registry) UpdateStream(ctx context.Context, info *StreamInfo, rev uint64) (uint64, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return 0, err
	}
	nrev, err := r.streams.Update(ctx, EncodePath(info.Path), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, ErrLeaseLost
	}
	return nrev, err
}

// ReleaseStream removes a stream record if rev is still current: the
// edge's own at the end of a publication, or a dead edge's.
func (r *Registry) ReleaseStream(ctx context.Context, path string, rev uint64) error {
	return deleteAt(ctx, r.streams, path, rev)
}

// Stream returns a stream's record. It may name a dead edge instance:
// readers judge it with Liveness.HoldsStream.
func (r *Registry) Stream(ctx context.Context, path string) (*StreamInfo, error) {
	info, _, err := r.StreamRev(ctx, path)
	return info, err
}

// StreamRev is Stream with the record's revision.
func (r *Registry) StreamRev(ctx context.Context, path string) (*StreamInfo, uint64, error) {
	return getJSON[StreamInfo](ctx, r.streams, path, "stream")
}

// StreamEvent is a change of the stream set. Info is nil when the stream ended.
type StreamEvent struct {
	Path string
	Info *StreamInfo
	// Rev is the record's revision (0 when it ended): removing a dead
	// edge's record needs it.
	Rev uint64
}

// WatchStreams sends the current streams, then every change, until ctx ends.
// The channel is closed when the watch stops.
func (r *Registry) WatchStreams(ctx context.Context) (<-chan StreamEvent, error) {
	return watchRev(ctx, r, r.streams, func(path string, v []byte, rev uint64) (StreamEvent, bool) {
		if v == nil {
			return StreamEvent{Path: path}, true
		}
		var info StreamInfo
		if json.Unmarshal(v, &info) != nil {
			return StreamEvent{Path: path}, true
		}
		return StreamEvent{Path: path, Info: &info, Rev: rev}, true
	})
}
