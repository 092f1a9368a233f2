package hlscheck

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLive is a Low-Latency HLS server generated from the clock: segments
// of segDur with partsPerSeg parts, a window of window segments, a video
// and an audio playlist under a multivariant playlist. Each fault breaks
// one rule.
type fakeLive struct {
	fault string
	t0    time.Time
	base  time.Time // PROGRAM-DATE-TIME of segment 0
	mu    sync.Mutex
}

const (
	segDur      = 500 * time.Millisecond
	partsPerSeg = 4
	partDur     = segDur / partsPerSeg
	window      = 6
	preexisting = 10 // segments complete when the server starts
)

// position is the number of complete segments and the complete parts of
// the segment being built.
func (f *fakeLive) position() (int, int) {
	e := time.Since(f.t0)
	n := preexisting + int(e/segDur)
	return n, int(e%segDur) / int(partDur)
}

func (f *fakeLive) playlist(name string, q map[string][]string) string {
	n, parts := f.position()
	first := max(n-window, 0)
	ds := 5
	if f.fault == "msn-back" && time.Since(f.t0) > 1500*time.Millisecond {
		first -= 3
	}
	if f.fault == "ds-back" && time.Since(f.t0) > 1500*time.Millisecond {
		ds = 4
	}
	skip := 0
	if len(q["_HLS_skip"]) > 0 {
		skip = 2
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n")
	hold := 3 * partDur
	if f.fault == "hold-back" {
		hold = 2 * partDur
	}
	fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%.3f,CAN-SKIP-UNTIL=2.0\n", hold.Seconds())
	fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%.3f\n", partDur.Seconds())
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", first, ds)
	if skip > 0 {
		fmt.Fprintf(&b, "#EXT-X-SKIP:SKIPPED-SEGMENTS=%d\n", skip)
	} else {
		fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"%s_init.mp4\"\n", name)
	}
	for msn := first + skip; msn < n; msn++ {
		pdt := f.base.Add(time.Duration(msn) * segDur)
		if f.fault == "pdt-jump" && msn >= preexisting+2 {
			pdt = pdt.Add(3 * time.Second)
		}
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", pdt.UTC().Format("2006-01-02T15:04:05.000Z"))
		if msn >= n-2 {
			for k := range partsPerSeg {
				fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%.3f,URI=\"%s_part%d.%d.mp4\"\n", partDur.Seconds(), name, msn, k)
			}
		}
		dur := segDur.Seconds()
		if f.fault == "target-duration" && msn%3 == 0 {
			dur = 1.6
		}
		uri := fmt.Sprintf("%s_seg%d.mp4", name, msn)
		if f.fault == "delta" && skip > 0 {
			uri = fmt.Sprintf("%s_seg%d.mp4", name, msn+1)
		}
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n%s\n", dur, uri)
	}
	for k := range parts {
		fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%.3f,URI=\"%s_part%d.%d.mp4\"\n", partDur.Seconds(), name, n, k)
	}
	hint := fmt.Sprintf("%s_part%d.%d.mp4", name, n, parts)
	if f.fault == "hint" {
		hint = fmt.Sprintf("%s_part%d.%d.mp4", name, n+3, 0)
	}
	fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%s\"\n", hint)
	if f.fault != "reports" {
		other := "audio"
		if name == "audio" {
			other = "video"
		}
		fmt.Fprintf(&b, "#EXT-X-RENDITION-REPORT:URI=\"%s.m3u8\",LAST-MSN=%d,LAST-PART=%d\n", other, n, max(parts-1, 0))
	}
	return b.String()
}

func (f *fakeLive) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	q := r.URL.Query()
	switch {
	case name == "index.m3u8":
		fmt.Fprint(w, "#EXTM3U\n#EXT-X-VERSION:9\n"+
			"#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"audio\",DEFAULT=YES,URI=\"audio.m3u8\"\n"+
			"#EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.42c01e,mp4a.40.2\",AUDIO=\"a\"\nvideo.m3u8\n")
	case name == "video.m3u8" || name == "audio.m3u8":
		name = strings.TrimSuffix(name, ".m3u8")
		if ms := q.Get("_HLS_msn"); ms != "" {
			msn, _ := strconv.Atoi(ms)
			part := -1
			if p := q.Get("_HLS_part"); p != "" {
				part, _ = strconv.Atoi(p)
			}
			n, _ := f.position()
			if msn > n+2 && f.fault != "blocking" {
				http.Error(w, "too far", http.StatusBadRequest)
				return
			}
			for deadline := time.Now().Add(3 * time.Second); f.fault != "blocking" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				n, parts := f.position()
				if n > msn || n == msn && part >= 0 && parts > part {
					break
				}
			}
		}
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		fmt.Fprint(w, f.playlist(name, q))
	default:
		// <name>_seg<msn>.mp4, <name>_part<msn>.<k>.mp4, <name>_init.mp4
		n, parts := f.position()
		var msn, k int
		switch {
		case strings.Contains(name, "_seg"):
			fmt.Sscanf(name[strings.Index(name, "_seg"):], "_seg%d.mp4", &msn)
			if msn >= n {
				http.NotFound(w, r)
				return
			}
		case strings.Contains(name, "_part"):
			fmt.Sscanf(name[strings.Index(name, "_part"):], "_part%d.%d.mp4", &msn, &k)
			if msn > n || msn == n && k >= parts {
				http.NotFound(w, r)
				return
			}
		}
		if f.fault == "drop-early" && !strings.HasSuffix(name, "_init.mp4") && msn < n-window {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "video/mp4")
		_, _ = w.Write(make([]byte, 188))
	}
}

func runFake(t *testing.T, fault string) *Report {
	t.Helper()
	return runFakes(t, fault)[0]
}

// runFakes checks a fake live stream with each fault, all at once: a check
// takes wall-clock time, not CPU, and parallel subtests would queue behind
// -parallel (the number of CPUs).
func runFakes(t *testing.T, faults ...string) []*Report {
	t.Helper()
	reps := make([]*Report, len(faults))
	errs := make([]error, len(faults))
	var wg sync.WaitGroup
	for i, fault := range faults {
		f := &fakeLive{fault: fault, t0: time.Now(), base: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		c := &Checker{URL: srv.URL + "/index.m3u8", Duration: 2 * time.Second}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			reps[i], errs[i] = c.Run(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("fault %q: %v", faults[i], err)
		}
	}
	return reps
}

func TestCheckerPassesAConformingStream(t *testing.T) {
	t.Parallel()
	rep := runFake(t, "")
	if !rep.OK() {
		t.Fatalf("violations on a conforming stream: %+v", rep.Violations)
	}
	for _, rule := range []string{RuleMediaSequence, RuleDiscontinuity, RuleTargetDuration, RuleAvailability,
		RuleDateTime, RulePartTarget, RuleBlockingReload, RulePreloadHint, RuleRendition, RuleDeltaUpdate} {
		if !strings.Contains(strings.Join(rep.Checked, " "), rule) {
			t.Errorf("rule %s was not exercised (checked: %v)", rule, rep.Checked)
		}
	}
	if rep.LateFetches == 0 || rep.Parts == 0 {
		t.Fatalf("no fetch after leaving the playlist or no part: %+v", rep)
	}
}

func TestCheckerFindsViolations(t *testing.T) {
	t.Parallel()
	cases := []struct{ fault, rule string }{
		{"msn-back", RuleMediaSequence},
		{"ds-back", RuleDiscontinuity},
		{"target-duration", RuleTargetDuration},
		{"drop-early", RuleAvailability},
		{"pdt-jump", RuleDateTime},
		{"hold-back", RulePartTarget},
		{"blocking", RuleBlockingReload},
		{"hint", RulePreloadHint},
		{"reports", RuleRendition},
		{"delta", RuleDeltaUpdate},
	}
	faults := make([]string, len(cases))
	for i, tc := range cases {
		faults[i] = tc.fault
	}
	reps := runFakes(t, faults...)
	for i, tc := range cases {
		t.Run(tc.fault, func(t *testing.T) {
			rep := reps[i]
			if rep.Counts[tc.rule] == 0 {
				t.Fatalf("fault %s: no %s violation reported; got %v", tc.fault, tc.rule, rep.Counts)
			}
			t.Logf("fault %s: %d %s violations, e.g. %s", tc.fault, rep.Counts[tc.rule], tc.rule, first(rep, tc.rule))
		})
	}
}

func first(rep *Report, rule string) string {
	for _, v := range rep.Violations {
		if v.Rule == rule {
			return v.Detail
		}
	}
	return ""
}

func TestDiscBeforeParts(t *testing.T) {
	head := "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXTINF:1.00000,\nseg1.mp4\n"
	for _, tc := range []struct {
		body string
		want bool
	}{
		{head + "#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.mp4\"\n", false},
		{head + "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"b_init.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\"\n", true},
		{"#EXTM3U\n#EXT-X-DISCONTINUITY\n#EXTINF:1.00000,\nseg1.mp4\n#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\"\n", false},
		{head, false},
	} {
		if got := discBeforeParts([]byte(tc.body)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.body, got, tc.want)
		}
	}
}
