package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/streamgrid/streamgrid/internal/sleep"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// cameraSlot is one synthetic camera, restarted after failures.
type cameraSlot struct {
	name    string
	url     string
	startAt time.Duration // from the start of the run

	sent    atomic.Uint64 // frames of finished runs
	current atomic.Pointer[testmedia.Camera]
	failed  atomic.Bool
	started atomic.Bool
}

// runCamera publishes until the end of the run, starting over restartDelay
// after each failure.
func (r *runner) runCamera(ctx context.Context, c *cameraSlot) {
	if !sleep.Until(ctx, r.start.Add(c.startAt)) {
		return
	}
	c.started.Store(true)
	log := r.cfg.Log.With("camera", c.name)
	for {
		cam := &testmedia.Camera{
			URL:       c.url,
			Transport: r.cfg.Transport,
			Clip:      r.clip,
			NoAudio:   r.cfg.NoAudio,
			StampSEI:  true,
			Log:       log,
		}
		err := cam.Start(ctx)
		logIt := true
		if err == nil {
			c.current.Store(cam)
			err = cam.Wait()
			cam.Close()
			st := cam.Stats()
			c.sent.Add(st.VideoFrames)
			r.cameraDropped.Add(st.DroppedPackets)
			storeMax(&r.cameraMaxLag, int64(st.MaxLag))
			c.current.Store(nil)
			logIt = false // the camera logged its own failure
			if err == nil && ctx.Err() == nil {
				err = errors.New("camera stopped publishing") // Loops is 0: not expected
			}
		}
		if ctx.Err() != nil {
			return
		}
		c.failed.Store(true)
		r.fail(fmt.Errorf("camera %s: %w", c.name, err), logIt)
		if !sleep.For(ctx, restartDelay) {
			return
		}
		r.cameraRestarts.Add(1)
	}
}

// framesSent returns the frames the camera published so far.
func (c *cameraSlot) framesSent() uint64 {
	n := c.sent.Load()
	if cam := c.current.Load(); cam != nil {
		n += cam.FramesSent()
	}
	return n
}
