package transcode

import (
	"bufio"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Log rate limit for ffmpeg's stderr: at most logBurst lines per logWindow;
// the rest are counted and summarised once the window ends.
const (
	logBurst   = 20
	logWindow  = 10 * time.Second
	logTail    = 8   // lines kept to explain an exit
	maxLineLen = 512 // longer lines are cut
)

// stderrLog forwards ffmpeg's stderr lines to a logger under a rate limit and
// remembers the last few lines, which explain why ffmpeg exited.
type stderrLog struct {
	log       *slog.Logger
	now       func() time.Time
	onDropped func(n int)

	mu          sync.Mutex
	windowStart time.Time
	inWindow    int
	dropped     int
	tail        []string
}

// consume reads r until EOF or an error, then flushes the drop summary.
func (s *stderrLog) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		s.line(sc.Text())
	}
	s.mu.Lock()
	s.summarise()
	s.mu.Unlock()
}

// line handles one line of stderr.
func (s *stderrLog) line(text string) {
	text = strings.TrimSpace(text)
	if text == "" {
		return
	}
	if len(text) > maxLineLen {
		text = text[:maxLineLen] + "…"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tail) == logTail {
		copy(s.tail, s.tail[1:])
		s.tail = s.tail[:logTail-1]
	}
	s.tail = append(s.tail, text)

	now := s.now()
	if now.Sub(s.windowStart) >= logWindow {
		s.summarise()
		s.windowStart = now
		s.inWindow = 0
	}
	if s.inWindow >= logBurst {
		s.dropped++
		if s.onDropped != nil {
			s.onDropped(1)
		}
		return
	}
	s.inWindow++
	s.log.Warn("ffmpeg", "line", text)
}

// summarise logs how many lines the last window suppressed. s.mu is held.
func (s *stderrLog) summarise() {
	if s.dropped > 0 {
		s.log.Warn("ffmpeg log lines suppressed", "count", s.dropped, "window", logWindow)
		s.dropped = 0
	}
}

// lastLines returns the remembered tail joined with " | ".
func (s *stderrLog) lastLines() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, " | ")
}
