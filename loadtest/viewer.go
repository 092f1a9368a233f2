package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/streamgrid/streamgrid/internal/sleep"
	"github.com/streamgrid/streamgrid/internal/testmedia"
)

// viewerSlot is one synthetic viewer, restarted after failures.
type viewerSlot struct {
	id      int
	url     string
	startAt time.Duration

	startedAt   atomic.Int64 // unix ns of the first Run, 0 before
	lastFrame   atomic.Int64 // unix ns, 0 before the first frame
	firstInTime atomic.Bool
	failed      atomic.Bool
	late        atomic.Bool // first-frame timeout reported
}

// runViewer plays its stream until the end of the run, starting over
// restartDelay after each failure. Until the first frame, the reader itself
// keeps retrying (the stream may not be there yet); that is not a failure
// unless it lasts longer than firstFrameTimeout.
func (r *runner) runViewer(ctx context.Context, v *viewerSlot) {
	if !sleep.Until(ctx, r.start.Add(v.startAt)) {
		return
	}
	started := time.Now()
	v.startedAt.Store(started.UnixNano())
	pl := &viewerPlay{
		r:   r,
		v:   v,
		log: r.cfg.Log.With("viewer", v.id),
		onVideo: func(_ time.Duration, nalus [][]byte, recv time.Time) {
			r.viewerFrame(v, started, nalus, recv)
		},
	}
	firstFrame := time.NewTimer(firstFrameTimeout)
	defer firstFrame.Stop()
	pl.firstFrameC = firstFrame.C

	for {
		restarted, err := pl.attempt(ctx)
		if restarted && ctx.Err() == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("playback ended")
		}
		v.failed.Store(true)
		r.fail(fmt.Errorf("viewer %d: %w", v.id, err), true)
		if !sleep.For(ctx, restartDelay) {
			return
		}
		r.viewerRestarts.Add(1)
	}
}

// viewerPlay is what one runViewer keeps across its player attempts.
type viewerPlay struct {
	r       *runner
	v       *viewerSlot
	log     *slog.Logger
	onVideo func(pts time.Duration, nalus [][]byte, recv time.Time)
	// firstFrameC fires firstFrameTimeout after the viewer's start; nil
	// once it has.
	firstFrameC <-chan time.Time
}

// attempt runs one player until it ends (err) or until it has gone
// firstFrameRetry without a first frame and was started over (restarted).
func (p *viewerPlay) attempt(ctx context.Context) (restarted bool, err error) {
	v := p.v
	rd := &testmedia.Reader{
		URL:           v.url,
		HTTPClient:    p.r.http,
		OnVideo:       p.onVideo,
		RetryInterval: readerRetry,
		Log:           p.log,
	}
	attemptCtx, cancelAttempt := context.WithCancel(ctx)
	defer cancelAttempt()
	errCh := make(chan error, 1)
	go func() { errCh <- rd.Run(attemptCtx) }()
	// A player that got no frame for firstFrameRetry starts over (see
	// firstFrameRetry); that is not a failure.
	retry := time.NewTimer(firstFrameRetry)
	defer retry.Stop()
	retryC := retry.C
	if v.lastFrame.Load() != 0 {
		retryC = nil
	}
	for {
		select {
		case err = <-errCh:
			return false, err
		case <-retryC:
			retryC = nil
			if v.lastFrame.Load() == 0 {
				p.log.Debug("no frame yet: starting the player over", "url", v.url)
				cancelAttempt()
				<-errCh
				return true, nil
			}
		case <-p.firstFrameC:
			p.firstFrameC = nil
			if v.lastFrame.Load() == 0 {
				v.late.Store(true)
				p.r.fail(fmt.Errorf("viewer %d (%s): no frame within %v", v.id, v.url, firstFrameTimeout), true)
			}
		}
	}
}

// viewerFrame accounts for one video frame received by v. Calls for one
// viewer never overlap (one reader at a time, frames delivered in order).
func (r *runner) viewerFrame(v *viewerSlot, started time.Time, nalus [][]byte, recv time.Time) {
	r.framesReceived.Add(1)
	prev := v.lastFrame.Swap(recv.UnixNano())
	if prev == 0 {
		startup := recv.Sub(started)
		r.startup.add(ms(startup))
		if startup <= firstFrameTimeout {
			v.firstInTime.Store(true)
		}
	} else if recv.Sub(time.Unix(0, prev)) > stallGap {
		r.stalls.Add(1)
	}
	if recv.Before(r.warmEnd) {
		return
	}
	if sent, ok := testmedia.AUTimestamp(nalus); ok {
		lat := ms(recv.Sub(sent))
		r.latency.add(lat)
		r.window.add(lat)
	}
}
