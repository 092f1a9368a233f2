package loadtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// runProgress writes a progress line every progressInterval until ctx ends.
func (r *runner) runProgress(ctx context.Context) {
	w := r.cfg.Progress
	tty := isTerminal(w)
	ticker := time.NewTicker(progressInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return
		case <-ticker.C:
		}
		line := r.progressLine(time.Now())
		if tty {
			fmt.Fprintf(w, "\r%s\x1b[K", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

func (r *runner) progressLine(now time.Time) string {
	var up int
	var sent uint64
	for _, c := range r.cameras {
		if c.current.Load() != nil {
			up++
		}
		sent += c.framesSent()
	}
	playing := 0
	for _, v := range r.viewers {
		if last := v.lastFrame.Load(); last != 0 && now.Sub(time.Unix(0, last)) <= stallGap {
			playing++
		}
	}
	r.errMu.Lock()
	errs := r.errors
	r.errMu.Unlock()
	lat := "-"
	if p := r.window.percentiles(); p.Count > 0 {
		lat = fmt.Sprintf("p50 %.0f p95 %.0f ms", p.P50, p.P95)
	}
	r.window.reset()
	return fmt.Sprintf("%4.0fs/%.0fs  cameras %d/%d up  viewers %d/%d playing  frames sent %d recv %d  errors %d  stalls %d  latency %s",
		now.Sub(r.start).Seconds(), r.cfg.Duration.Seconds(), up, len(r.cameras), playing, len(r.viewers),
		sent, r.framesReceived.Load(), errs, r.stalls.Load(), lat)
}

// isTerminal reports whether w is a character device (a terminal), where the
// progress line is rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
