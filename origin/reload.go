package origin

import (
	"errors"
	"fmt"

	"github.com/bluenviron/gohlslib/v2"
)

// hlsSettings are the packaging settings new streams take.
type hlsSettings struct {
	cfg     HLSConfig
	variant gohlslib.MuxerVariant
}

// capacity is the most streams owned at once (SetCapacity may change it).
func (o *Origin) capacity() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.Capacity
}

// SetCapacity changes the most streams owned at once while the origin runs.
// Lowering it hands nothing over: it stops new claims until the load is below.
func (o *Origin) SetCapacity(n int) error {
	if n < 1 {
		return errors.New("origin: capacity must be at least 1")
	}
	o.mu.Lock()
	o.Capacity = n
	o.mu.Unlock()
	o.poke(o.rescan)
	o.poke(o.metaChanged)
	return nil
}

// SetHLS changes how streams claimed from now on are packaged. Streams
// already packaged keep their settings, so their playlists go on without a
// discontinuity; they take the new ones when they are claimed again.
func (o *Origin) SetHLS(h HLSConfig) error {
	if h.SegmentDuration <= 0 || h.PartDuration <= 0 || h.IdleTimeout <= 0 {
		return errors.New("origin: HLS durations must be positive")
	}
	v, err := h.validate()
	if err != nil {
		return err
	}
	o.hls.Store(&hlsSettings{cfg: h, variant: v})
	o.Log.Info("HLS settings for new streams changed", "variant", variantName(v),
		"segment_duration", h.SegmentDuration, "part_duration", h.PartDuration, "segment_count", h.SegmentCount)
	return nil
}

// SetLadders replaces the transcode ladders for streams claimed from now
// on; streams being transcoded keep their ladder. The encoders were probed
// at Start, so transcoding can be changed here but not switched on or off:
// an origin started without ladders needs a restart to get its first one.
func (o *Origin) SetLadders(ladders []LadderRule) error {
	if !o.tr.enabled || len(ladders) == 0 {
		return errors.New("origin: switching transcoding on or off (ladders from none, or to none) needs a restart")
	}
	for k, r := range ladders {
		if r.Match == "" {
			return fmt.Errorf("origin: transcode: ladders[%d].match is empty", k)
		}
		if err := r.Fallback.Validate(); err != nil {
			return fmt.Errorf("origin: transcode: ladders[%d]: %w", k, err)
		}
		if err := r.Ladder.Validate(); err != nil {
			return fmt.Errorf("origin: transcode: ladders[%d]: %w", k, err)
		}
	}
	plans := o.buildPlans(ladders)
	o.tr.plans.Store(&plans)
	o.mu.Lock()
	o.refused = map[string]string{} // decided under the old ladders
	o.mu.Unlock()
	o.poke(o.rescan)
	return nil
}
