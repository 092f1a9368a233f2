package transcode

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestReadProgress(t *testing.T) {
	in := `frame=12
fps=0.00
stream_0_0_q=28.0
out_time_us=N/A
speed=N/A
progress=continue
frame=37
fps=24.50
out_time_us=11480000
out_time=00:00:11.480000
speed=1.02x
progress=continue
garbage line
frame=62
out_time_us=12480000
progress=end
`
	var reps []progressReport
	if err := readProgress(strings.NewReader(in), func(r progressReport) { reps = append(reps, r) }); err != nil {
		t.Fatal(err)
	}
	want := []progressReport{
		{frame: 12},
		{frame: 37, outTime: 11480 * time.Millisecond, valid: true},
		{frame: 62, outTime: 12480 * time.Millisecond, valid: true, end: true},
	}
	if len(reps) != len(want) {
		t.Fatalf("reports %+v", reps)
	}
	for i := range want {
		if reps[i] != want[i] {
			t.Errorf("report %d: %+v, want %+v", i, reps[i], want[i])
		}
	}
}

func TestSpeedMeter(t *testing.T) {
	var m speedMeter
	t0 := time.Unix(1000, 0)
	rep := func(frame int64, out time.Duration) progressReport {
		return progressReport{frame: frame, outTime: out, valid: true}
	}
	if _, _, _, ok := m.update(progressReport{frame: 3}, t0, true); ok {
		t.Error("a report without out_time gave rates")
	}
	if _, _, _, ok := m.update(rep(0, 10*time.Second), t0, true); ok {
		t.Error("the first report gave rates")
	}
	fps, speed, behind, ok := m.update(rep(50, 12*time.Second), t0.Add(time.Second), true)
	if !ok || fps != 50 || speed != 2 || behind {
		t.Errorf("fast period: fps %v speed %v behind %v ok %v", fps, speed, behind, ok)
	}
	// Slow (0.5x) with input waiting: behind only after 10 s of it.
	at, out, frame := t0.Add(time.Second), 12*time.Second, int64(50)
	for i := 1; i <= 12; i++ {
		at, out, frame = at.Add(time.Second), out+500*time.Millisecond, frame+12
		_, speed, behind, _ = m.update(rep(frame, out), at, true)
		if speed != 0.5 {
			t.Fatalf("speed %v, want 0.5", speed)
		}
		if want := i >= 10; behind != want {
			t.Fatalf("after %d slow seconds behind=%v, want %v", i, behind, want)
		}
	}
	// Slow but nothing waiting (the input paused): not behind.
	at, out = at.Add(time.Second), out+100*time.Millisecond
	if _, _, behind, _ = m.update(rep(frame, out), at, false); behind {
		t.Error("behind while no input waits")
	}
	// Back to real time.
	for i := 0; i < 15; i++ {
		at, out = at.Add(time.Second), out+time.Second
		if _, _, behind, _ = m.update(rep(frame, out), at, true); behind {
			t.Fatal("behind at real-time speed")
		}
	}
}

func TestStderrLogRateLimit(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	dropped := 0
	s := &stderrLog{
		log:       slog.New(slog.NewTextHandler(&buf, nil)),
		now:       func() time.Time { return now },
		onDropped: func(n int) { dropped += n },
	}
	var in strings.Builder
	for i := 0; i < 50; i++ {
		in.WriteString("line\n")
	}
	in.WriteString("\n" + strings.Repeat("x", 2*maxLineLen) + "\n")
	s.consume(strings.NewReader(in.String()))
	logged := strings.Count(buf.String(), `msg=ffmpeg line=`)
	if logged != logBurst || dropped != 51-logBurst {
		t.Errorf("logged %d, dropped %d; want %d and %d", logged, dropped, logBurst, 51-logBurst)
	}
	if !strings.Contains(buf.String(), "ffmpeg log lines suppressed") || !strings.Contains(buf.String(), "count=31") {
		t.Errorf("no drop summary:\n%s", buf.String())
	}
	if tail := s.lastLines(); strings.Count(tail, " | ") != logTail-1 || !strings.HasSuffix(tail, "…") {
		t.Errorf("tail %q", tail)
	}

	// A new window logs again.
	buf.Reset()
	now = now.Add(logWindow)
	s.line("again")
	if !strings.Contains(buf.String(), "line=again") {
		t.Errorf("new window did not log: %s", buf.String())
	}
}
