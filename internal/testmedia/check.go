package testmedia

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// Check records the frames a viewer receives and verifies them: video in
// strictly increasing timestamp order (the sample has no B-frames, so PTS order
// is decode order), evenly spaced, and, for stamped cameras, SEI send times
// that increase too. Its Video and Audio methods fit Reader.OnVideo and
// Reader.OnAudio; they may be called from any goroutine.
//
// A Camera's timeline is continuous across loops, so its loop boundaries need
// no allowance: any spacing other than FrameInterval is a gap (lost frames, or
// a publisher or origin restart).
type Check struct {
	// FrameInterval is the expected PTS distance between two video frames. It
	// defaults to 40 ms (the sample clip's 25 fps).
	FrameInterval time.Duration
	// Tolerance on that distance. It defaults to 2 ms (RTMP rounds timestamps to
	// milliseconds).
	Tolerance time.Duration
	// RequireSEI makes frames without an SEI send-time stamp an error: set it
	// when the camera had StampSEI.
	RequireSEI bool
	// MaxGaps is how many spacing gaps Summary.Err tolerates (0 by default;
	// raise it for tests that kill a node on purpose).
	MaxGaps int

	mu      sync.Mutex
	s       Summary
	latSum  time.Duration
	lastSEI time.Time
}

// Summary is what a Check has seen so far.
type Summary struct {
	// Frames counts every video frame received; Distinct those whose PTS was
	// after the previous frame's; Keyframes the H264 IDR frames among them.
	Frames, Distinct, Keyframes int
	// Duplicates counts frames repeating the previous PTS; Backwards frames whose
	// PTS went back.
	Duplicates, Backwards int
	// Gaps counts spacings that differ from FrameInterval beyond the tolerance;
	// Missing estimates the frames lost in them; MaxGap is the largest spacing.
	Gaps, Missing int
	MaxGap        time.Duration
	// FirstFrame and LastFrame are the receive times of the first and the last
	// video frame; FirstPTS and LastPTS their timestamps.
	FirstFrame, LastFrame time.Time
	FirstPTS, LastPTS     time.Duration
	// Audio counts audio frames.
	Audio int
	// Stamped counts frames with an SEI send time; MissingSEI frames without one
	// (only with RequireSEI); SEIBackwards stamps older than the previous one.
	Stamped, MissingSEI, SEIBackwards int
	// LatencyMin, LatencyAvg and LatencyMax are receive time minus SEI send time.
	LatencyMin, LatencyAvg, LatencyMax time.Duration
	// AllowedGaps is the check's MaxGaps, copied for Err.
	AllowedGaps int
}

// Video records one video frame.
func (c *Check) Video(pts time.Duration, nalus [][]byte, recv time.Time) {
	sent, stamped := AUTimestamp(nalus)
	key := h264.IsRandomAccess(nalus)

	c.mu.Lock()
	defer c.mu.Unlock()
	interval, tolerance := c.params()
	s := &c.s

	s.Frames++
	if s.Frames == 1 {
		s.FirstFrame = recv
		s.FirstPTS = pts
		s.LastPTS = pts
		s.Distinct = 1
	} else {
		delta := pts - s.LastPTS
		switch {
		case delta == 0:
			s.Duplicates++
		case delta < 0:
			s.Backwards++
		default:
			s.Distinct++
			if delta > s.MaxGap {
				s.MaxGap = delta
			}
			if diff := delta - interval; diff > tolerance || diff < -tolerance {
				s.Gaps++
				if lost := int((delta+interval/2)/interval) - 1; lost > 0 {
					s.Missing += lost
				}
			}
			s.LastPTS = pts
		}
	}
	s.LastFrame = recv
	if key {
		s.Keyframes++
	}

	switch {
	case stamped:
		s.Stamped++
		if !c.lastSEI.IsZero() && sent.Before(c.lastSEI) {
			s.SEIBackwards++
		}
		c.lastSEI = sent
		lat := recv.Sub(sent)
		if s.Stamped == 1 || lat < s.LatencyMin {
			s.LatencyMin = lat
		}
		if lat > s.LatencyMax {
			s.LatencyMax = lat
		}
		c.latSum += lat
	case c.RequireSEI:
		s.MissingSEI++
	}
}

// Audio records one audio frame.
func (c *Check) Audio(_ time.Duration, _ time.Time) {
	c.mu.Lock()
	c.s.Audio++
	c.mu.Unlock()
}

// Summary returns what has been seen so far.
func (c *Check) Summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	if s.Stamped > 0 {
		s.LatencyAvg = c.latSum / time.Duration(s.Stamped)
	}
	s.AllowedGaps = c.MaxGaps
	return s
}

// WaitFrames waits until n distinct video frames have arrived or ctx ends.
func (c *Check) WaitFrames(ctx context.Context, n int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s := c.Summary()
		if s.Distinct >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("got %d of %d video frames: %w", s.Distinct, n, ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Check) params() (interval, tolerance time.Duration) {
	interval, tolerance = c.FrameInterval, c.Tolerance
	if interval <= 0 {
		interval = 40 * time.Millisecond
	}
	if tolerance <= 0 {
		tolerance = 2 * time.Millisecond
	}
	return interval, tolerance
}

// Err describes everything wrong in the summary, or returns nil.
func (s Summary) Err() error {
	var errs []error
	if s.Frames == 0 {
		errs = append(errs, errors.New("no video frames"))
	}
	if s.Backwards > 0 {
		errs = append(errs, fmt.Errorf("%d video frames went back in time", s.Backwards))
	}
	if s.Duplicates > 0 {
		errs = append(errs, fmt.Errorf("%d duplicate video frames", s.Duplicates))
	}
	if s.Gaps > s.AllowedGaps {
		errs = append(errs, fmt.Errorf("%d gaps in the video timeline (about %d frames missing, largest %v), %d allowed",
			s.Gaps, s.Missing, s.MaxGap, s.AllowedGaps))
	}
	if s.MissingSEI > 0 {
		errs = append(errs, fmt.Errorf("%d video frames without SEI stamp", s.MissingSEI))
	}
	if s.SEIBackwards > 0 {
		errs = append(errs, fmt.Errorf("%d SEI stamps went back in time", s.SEIBackwards))
	}
	return errors.Join(errs...)
}
