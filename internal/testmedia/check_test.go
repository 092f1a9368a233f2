package testmedia

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	const ms = time.Millisecond
	idr := [][]byte{{0x67, 1}, {0x68, 2}, {0x65, 3}}
	p := [][]byte{{0x41, 4}}
	base := time.Unix(1_790_000_000, 0)

	type frame struct {
		pts  time.Duration
		sent time.Duration // SEI send time after base; -1 = no stamp
	}
	seq := func(n int, step time.Duration, stamped bool) []frame {
		out := make([]frame, n)
		for i := range out {
			out[i] = frame{pts: time.Duration(i) * step, sent: -1}
			if stamped {
				out[i].sent = time.Duration(i) * step
			}
		}
		return out
	}

	for _, tc := range []struct {
		name    string
		check   *Check
		frames  []frame
		want    Summary // only the counters compared below
		wantErr string
	}{
		{
			name:   "clean",
			frames: seq(50, 40*ms, false),
			want:   Summary{Frames: 50, Distinct: 50, Keyframes: 2},
		},
		{
			name:   "rtmp rounding within tolerance",
			frames: []frame{{0, -1}, {40 * ms, -1}, {81 * ms, -1}, {120 * ms, -1}},
			want:   Summary{Frames: 4, Distinct: 4, Keyframes: 1},
		},
		{
			name:    "gap",
			frames:  []frame{{0, -1}, {40 * ms, -1}, {160 * ms, -1}, {200 * ms, -1}},
			want:    Summary{Frames: 4, Distinct: 4, Keyframes: 1, Gaps: 1, Missing: 2},
			wantErr: "1 gaps",
		},
		{
			name:   "gap allowed",
			check:  &Check{MaxGaps: 1},
			frames: []frame{{0, -1}, {40 * ms, -1}, {160 * ms, -1}, {200 * ms, -1}},
			want:   Summary{Frames: 4, Distinct: 4, Keyframes: 1, Gaps: 1, Missing: 2},
		},
		{
			name:    "duplicate",
			frames:  []frame{{0, -1}, {40 * ms, -1}, {40 * ms, -1}, {80 * ms, -1}},
			want:    Summary{Frames: 4, Distinct: 3, Keyframes: 1, Duplicates: 1},
			wantErr: "duplicate",
		},
		{
			name:    "backwards",
			frames:  []frame{{0, -1}, {40 * ms, -1}, {80 * ms, -1}, {40 * ms, -1}, {120 * ms, -1}},
			want:    Summary{Frames: 5, Distinct: 4, Keyframes: 1, Backwards: 1},
			wantErr: "back in time",
		},
		{
			name:   "other frame rate",
			check:  &Check{FrameInterval: 33333 * time.Microsecond},
			frames: seq(10, 33333*time.Microsecond, false),
			want:   Summary{Frames: 10, Distinct: 10, Keyframes: 1},
		},
		{
			name:   "stamped",
			check:  &Check{RequireSEI: true},
			frames: seq(30, 40*ms, true),
			want:   Summary{Frames: 30, Distinct: 30, Keyframes: 2, Stamped: 30},
		},
		{
			name:    "stamp missing",
			check:   &Check{RequireSEI: true},
			frames:  []frame{{0, 0}, {40 * ms, -1}, {80 * ms, 80 * ms}},
			want:    Summary{Frames: 3, Distinct: 3, Keyframes: 1, Stamped: 2, MissingSEI: 1},
			wantErr: "without SEI",
		},
		{
			name:    "stamp backwards",
			frames:  []frame{{0, 0}, {40 * ms, 40 * ms}, {80 * ms, 10 * ms}},
			want:    Summary{Frames: 3, Distinct: 3, Keyframes: 1, Stamped: 3, SEIBackwards: 1},
			wantErr: "SEI stamps went back",
		},
		{
			name:    "nothing",
			wantErr: "no video frames",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.check
			if c == nil {
				c = &Check{}
			}
			recvDelay := 300 * ms
			for i, f := range tc.frames {
				au := p
				if i%25 == 0 {
					au = idr
				}
				if f.sent >= 0 {
					au = WithSEITimestamp(au, base.Add(f.sent))
				}
				c.Video(f.pts, au, base.Add(f.pts+recvDelay))
				c.Audio(f.pts, base.Add(f.pts+recvDelay))
			}
			s := c.Summary()
			got := Summary{
				Frames: s.Frames, Distinct: s.Distinct, Keyframes: s.Keyframes,
				Duplicates: s.Duplicates, Backwards: s.Backwards, Gaps: s.Gaps, Missing: s.Missing,
				Stamped: s.Stamped, MissingSEI: s.MissingSEI, SEIBackwards: s.SEIBackwards,
			}
			if got != tc.want {
				t.Errorf("summary\n got %+v\nwant %+v", got, tc.want)
			}
			if s.Audio != len(tc.frames) {
				t.Errorf("Audio %d, want %d", s.Audio, len(tc.frames))
			}
			err := s.Err()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if len(tc.frames) > 0 {
				if !s.FirstFrame.Equal(base.Add(recvDelay)) || s.FirstPTS != tc.frames[0].pts {
					t.Errorf("first frame %v at %v", s.FirstPTS, s.FirstFrame)
				}
			}
			if tc.name == "stamped" && (s.LatencyMin != recvDelay || s.LatencyMax != recvDelay || s.LatencyAvg != recvDelay) {
				t.Errorf("latency %v/%v/%v, want %v", s.LatencyMin, s.LatencyAvg, s.LatencyMax, recvDelay)
			}
		})
	}
}

func TestCheckWaitFrames(t *testing.T) {
	c := &Check{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		for i := range 5 {
			c.Video(time.Duration(i)*40*time.Millisecond, [][]byte{{0x41}}, time.Now())
		}
	}()
	if err := c.WaitFrames(ctx, 5); err != nil {
		t.Fatal(err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if err := c.WaitFrames(short, 6); err == nil || !strings.Contains(err.Error(), "5 of 6") {
		t.Fatalf("WaitFrames: %v", err)
	}
}
