package transcode

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// Real-time tracking: ffmpeg is "behind real time" once its speed has stayed
// below slowSpeed for behindAfter while input was waiting for it.
const (
	slowSpeed   = 0.9
	behindAfter = 10 * time.Second
)

// progressReport is one block of ffmpeg's -progress output.
type progressReport struct {
	frame   int64         // frames encoded so far (first video output)
	outTime time.Duration // output timestamp reached
	valid   bool          // outTime was reported
	end     bool          // progress=end: ffmpeg is finishing
}

// readProgress parses ffmpeg's -progress stream (key=value lines, each block
// ended by a progress= line) and calls fn once per block, until r ends.
func readProgress(r io.Reader, fn func(progressReport)) error {
	sc := bufio.NewScanner(r)
	var rep progressReport
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch key {
		case "frame":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil {
				rep.frame = n
			}
		case "out_time_us":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil {
				rep.outTime = time.Duration(n) * time.Microsecond
				rep.valid = true
			}
		case "progress":
			rep.end = val == "end"
			fn(rep)
			rep = progressReport{}
		}
	}
	return sc.Err()
}

// speedMeter turns successive progress reports into instantaneous rates and
// the behind-real-time flag. ffmpeg's own speed= is an average since the
// process started, which a pause in the input would drag down for good.
type speedMeter struct {
	prev      progressReport
	prevAt    time.Time
	have      bool
	slowSince time.Time
}

// update takes the report received at time at; waiting says whether input
// was queued up behind ffmpeg. It returns the frame rate and speed over the
// period since the previous report (ok false for the first report) and
// whether ffmpeg is behind real time.
func (m *speedMeter) update(rep progressReport, at time.Time, waiting bool) (fps, speed float64, behind, ok bool) {
	if !rep.valid {
		return 0, 0, !m.slowSince.IsZero() && at.Sub(m.slowSince) >= behindAfter, false
	}
	prev, prevAt, had := m.prev, m.prevAt, m.have
	m.prev, m.prevAt, m.have = rep, at, true
	if !had {
		return 0, 0, false, false
	}
	wall := at.Sub(prevAt).Seconds()
	if wall <= 0 {
		return 0, 0, false, false
	}
	fps = float64(rep.frame-prev.frame) / wall
	speed = (rep.outTime - prev.outTime).Seconds() / wall
	if fps < 0 || speed < 0 {
		fps, speed = 0, 0
	}
	if speed < slowSpeed && waiting {
		if m.slowSince.IsZero() {
			m.slowSince = prevAt
		}
	} else {
		m.slowSince = time.Time{}
	}
	behind = !m.slowSince.IsZero() && at.Sub(m.slowSince) >= behindAfter
	return fps, speed, behind, true
}
