package edge

import "time"

// readPacer spaces the socket reads of a running publication. A publisher
// sends a frame as a burst of writes (ffmpeg: one per 4 KiB chunk) and its
// audio between the frames, so a reader that reads as data arrives wakes
// about twice per message: at 25 RTMP cameras, 3 400 reads, 1 200 epoll
// waits and as many scheduler wake-ups a second, a third of the node's CPU.
// After a read that emptied the socket (it returned less than it asked
// for) the next one waits until interval after it, so one read takes what
// arrived meanwhile; a read that filled its buffer is followed at once (a
// backlog is read without pause). What it costs: a frame is handed on up
// to interval later than it arrived, half of it on average; measured at
// 20 ms: ~17 % less node CPU at 25 RTMP cameras, the glass-to-glass p50
// ~10 ms higher (docs/benchmarks.md), which is why it is off by default.
//
// The zero value, or a zero interval, reads as data arrives. Only the
// reading goroutine uses it.
type readPacer struct {
	interval time.Duration
	last     time.Time // when the last short read returned; zero: read at once
}

// wait sleeps until the next read is due.
func (p *readPacer) wait() {
	if p.interval <= 0 || p.last.IsZero() {
		return
	}
	if w := time.Until(p.last.Add(p.interval)); w > 0 {
		time.Sleep(w)
	}
}

// done records a read that returned n of the asked bytes.
func (p *readPacer) done(n, asked int) {
	if p.interval > 0 && n < asked {
		p.last = time.Now()
	} else {
		p.last = time.Time{}
	}
}
