// Package hlscheck follows a live HLS stream for a while and checks it
// against the rules of RFC 8216 and its Low-Latency revision
// (draft-pantos-hls-rfc8216bis): the rules a player relies on and that a
// server can break without any single response looking wrong. It is used
// by the tests and by `streamgrid check URL`, and works on any HLS URL.
//
// Rules (Violation.Rule):
//
//   - media-sequence: EXT-X-MEDIA-SEQUENCE never decreases, and a media
//     sequence number keeps its URI from one reload to the next.
//   - discontinuity-sequence: EXT-X-DISCONTINUITY-SEQUENCE never decreases,
//     and a segment keeps its discontinuity number.
//   - target-duration: every EXTINF rounded to the nearest second is at most
//     EXT-X-TARGETDURATION (RFC 8216 §4.3.3.1).
//   - availability: every segment, part and initialization section answers
//     200 while listed, and a segment or part that left the playlist still
//     answers 200 until its duration plus the duration of the playlist that
//     listed it have passed (§6.2.2).
//   - program-date-time: a segment keeps its EXT-X-PROGRAM-DATE-TIME, and
//     consecutive segments without a discontinuity are dated about their
//     duration apart.
//   - part-target: EXT-X-PART-INF is present with parts, no part is longer
//     than PART-TARGET, and PART-HOLD-BACK is at least three part targets.
//   - blocking-reload: with CAN-BLOCK-RELOAD, a request for the next part
//     blocks and then answers with a playlist that holds it, and a request
//     too far ahead (_HLS_msn past the last segment plus two) answers 400.
//   - preload-hint: the part an EXT-X-PRELOAD-HINT names is the next part
//     the playlist lists.
//   - rendition-report: a Low-Latency media playlist of a multivariant
//     stream reports every other rendition (EXT-X-RENDITION-REPORT).
//   - delta-update: with CAN-SKIP-UNTIL, an _HLS_skip=YES request answers a
//     playlist with EXT-X-SKIP whose segments match the full playlist's.
//   - playlist: a playlist fetches and parses.
package hlscheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/streamgrid/streamgrid/internal/sleep"
)

// Rule names, as reported in Violation.Rule.
const (
	RuleMediaSequence  = "media-sequence"
	RuleDiscontinuity  = "discontinuity-sequence"
	RuleTargetDuration = "target-duration"
	RuleAvailability   = "availability"
	RuleDateTime       = "program-date-time"
	RulePartTarget     = "part-target"
	RuleBlockingReload = "blocking-reload"
	RulePreloadHint    = "preload-hint"
	RuleRendition      = "rendition-report"
	RuleDeltaUpdate    = "delta-update"
	RulePlaylist       = "playlist"
)

// Checker follows one HLS URL. Fill in the fields, then Run.
type Checker struct {
	// URL of a multivariant or media playlist (required).
	URL string
	// Duration is how long the stream is followed. Default 20 s. Objects
	// that left a playlist are still fetched after it, up to the time the
	// rules allow them to go.
	Duration time.Duration
	// Client makes the requests. Default: a client with a 10 s timeout.
	Client *http.Client
	// Header is added to every request (e.g. a User-Agent).
	Header http.Header
	// MaxViolationsPerRule bounds what a report lists per rule (the count
	// is kept). Default 20.
	MaxViolationsPerRule int
}

// Violation is one broken rule.
type Violation struct {
	Rule     string    `json:"rule"`
	Playlist string    `json:"playlist"`
	At       time.Time `json:"at"`
	Detail   string    `json:"detail"`
}

// Report is what Run found.
type Report struct {
	URL          string         `json:"url"`
	Playlists    []string       `json:"playlists"`
	LowLatency   bool           `json:"low_latency"`
	Reloads      int            `json:"reloads"`
	Segments     int            `json:"segments"`
	Parts        int            `json:"parts"`
	Fetches      int            `json:"fetches"`
	LateFetches  int            `json:"late_fetches"`
	Checked      []string       `json:"checked"` // rules that were exercised
	Counts       map[string]int `json:"counts"`  // violations by rule
	Violations   []Violation    `json:"violations"`
	DurationSecs float64        `json:"duration_s"`
}

// OK reports a stream without violations.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

// run is the state of one Run.
type run struct {
	c      *Checker
	ctx    context.Context
	client *http.Client
	start  time.Time

	mu      sync.Mutex
	rep     *Report
	checked map[string]bool

	fetchQ chan fetchTask
	fwg    sync.WaitGroup
	// due holds the objects to fetch once more just before the rules let
	// them go, ordered by time.
	dueMu sync.Mutex
	due   []fetchTask
	dueCh chan struct{}
}

type fetchTask struct {
	url, playlist, what string
	at                  time.Time // for late fetches: when
	late                bool
}

// Run follows the stream for Duration and returns what it found. An error
// means the stream could not be checked at all (the first playlist did not
// load).
func (c *Checker) Run(ctx context.Context) (*Report, error) {
	if c.URL == "" {
		return nil, errors.New("hlscheck: no URL")
	}
	d := c.Duration
	if d <= 0 {
		d = 20 * time.Second
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	r := &run{c: c, ctx: ctx, client: client, start: time.Now(),
		rep:     &Report{URL: c.URL, Counts: map[string]int{}},
		checked: map[string]bool{}, fetchQ: make(chan fetchTask, 4096), dueCh: make(chan struct{}, 1)}

	medias, err := r.mediaPlaylists()
	if err != nil {
		return nil, err
	}
	r.rep.Playlists = medias
	r.followAll(ctx, medias, d)
	return r.finish(), nil
}

// mediaPlaylists loads the Checker's URL and returns the media playlists
// to follow, by absolute URL: the variants' and renditions' of a
// multivariant playlist (each once), or the URL itself.
func (r *run) mediaPlaylists() ([]string, error) {
	base := r.c.URL
	body, _, err := r.get(base)
	if err != nil {
		return nil, fmt.Errorf("hlscheck: %w", err)
	}
	pl, err := playlist.Unmarshal(body)
	if err != nil {
		return nil, fmt.Errorf("hlscheck: %s: %w", base, err)
	}
	var medias []string
	switch p := pl.(type) {
	case *playlist.Multivariant:
		seen := map[string]bool{}
		add := func(u string) {
			if abs := resolve(base, u); !seen[abs] {
				seen[abs] = true
				medias = append(medias, abs)
			}
		}
		for _, v := range p.Variants {
			add(v.URI)
		}
		for _, rd := range p.Renditions {
			if rd.URI != nil {
				add(*rd.URI)
			}
		}
	case *playlist.Media:
		medias = []string{base}
	}
	return medias, nil
}

// followAll follows medias for d (a follower each), with the fetchers and
// the late-fetch loop; it returns once the late fetches still due (bounded
// by ctx) and every fetch have run.
func (r *run) followAll(ctx context.Context, medias []string, d time.Duration) {
	for range 4 {
		r.fwg.Add(1)
		go r.fetcher()
	}
	lateDone := make(chan struct{})
	lateCtx, lateCancel := context.WithCancel(context.Background())
	go func() { r.lateLoop(lateCtx); close(lateDone) }()

	followCtx, cancel := context.WithTimeout(ctx, d)
	var wg sync.WaitGroup
	for _, m := range medias {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &follower{r: r, url: m, multi: len(medias) > 1, others: medias}
			f.follow(followCtx)
		}()
	}
	wg.Wait()
	cancel()
	// The late fetches still due run to completion (bounded by ctx).
	r.waitDue(ctx)
	lateCancel()
	<-lateDone
	close(r.fetchQ)
	r.fwg.Wait()
}

// finish completes the report: the rules exercised (sorted), the
// violations in time order, the duration.
func (r *run) finish() *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.checked {
		r.rep.Checked = append(r.rep.Checked, k)
	}
	sort.Strings(r.rep.Checked)
	sort.SliceStable(r.rep.Violations, func(i, j int) bool { return r.rep.Violations[i].At.Before(r.rep.Violations[j].At) })
	r.rep.DurationSecs = time.Since(r.start).Seconds()
	return r.rep
}

func (r *run) violate(rule, pl, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Counts[rule]++
	limit := r.c.MaxViolationsPerRule
	if limit <= 0 {
		limit = 20
	}
	if r.rep.Counts[rule] <= limit {
		r.rep.Violations = append(r.rep.Violations, Violation{Rule: rule, Playlist: pl, At: time.Now(),
			Detail: fmt.Sprintf(format, args...)})
	}
}

func (r *run) exercised(rule string) {
	r.mu.Lock()
	r.checked[rule] = true
	r.mu.Unlock()
}

func (r *run) count(f func(*Report)) {
	r.mu.Lock()
	f(r.rep)
	r.mu.Unlock()
}

// get fetches url; a status other than 200 is an error carrying it.
func (r *run) get(u string) ([]byte, int, error) {
	return r.getCtx(r.ctx, u)
}

func (r *run) getCtx(ctx context.Context, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	for k, v := range r.c.Header {
		req.Header[k] = v
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, resp.StatusCode, fmt.Errorf("%s: status %d", u, resp.StatusCode)
	}
	return body, resp.StatusCode, nil
}

// fetcher fetches listed objects and checks they answer 200.
func (r *run) fetcher() {
	defer r.fwg.Done()
	for t := range r.fetchQ {
		req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, t.url, nil)
		if err != nil {
			continue
		}
		for k, v := range r.c.Header {
			req.Header[k] = v
		}
		resp, err := r.client.Do(req)
		r.count(func(rep *Report) {
			rep.Fetches++
			if t.late {
				rep.LateFetches++
			}
		})
		r.exercised(RuleAvailability)
		if err != nil {
			if r.ctx.Err() == nil {
				r.violate(RuleAvailability, t.playlist, "%s %s: %v", t.what, t.url, err)
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			when := "while listed"
			if t.late {
				when = "after it left the playlist, within the time RFC 8216 §6.2.2 keeps it available"
			}
			r.violate(RuleAvailability, t.playlist, "%s %s answered %d %s", t.what, t.url, resp.StatusCode, when)
		}
	}
}

func (r *run) fetch(t fetchTask) {
	select {
	case r.fetchQ <- t:
	default: // never block the followers; the queue is large
	}
}

// later schedules a fetch at t.at.
func (r *run) later(t fetchTask) {
	t.late = true
	r.dueMu.Lock()
	k := sort.Search(len(r.due), func(i int) bool { return r.due[i].at.After(t.at) })
	r.due = append(r.due, fetchTask{})
	copy(r.due[k+1:], r.due[k:])
	r.due[k] = t
	r.dueMu.Unlock()
	select {
	case r.dueCh <- struct{}{}:
	default:
	}
}

func (r *run) lateLoop(ctx context.Context) {
	for {
		r.dueMu.Lock()
		var next time.Time
		for len(r.due) > 0 && !r.due[0].at.After(time.Now()) {
			r.fetch(r.due[0])
			r.due = r.due[1:]
		}
		if len(r.due) > 0 {
			next = r.due[0].at
		}
		r.dueMu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.dueCh:
		case <-t.C:
		}
		t.Stop()
	}
}

// waitDue waits until no late fetch is due any more.
func (r *run) waitDue(ctx context.Context) {
	for {
		r.dueMu.Lock()
		n := len(r.due)
		r.dueMu.Unlock()
		if n == 0 || ctx.Err() != nil {
			return
		}
		sleep.For(ctx, 50*time.Millisecond)
	}
}

// resolve makes ref absolute against base.
func resolve(base, ref string) string {
	b, err := url.Parse(base)
	if err != nil {
		return ref
	}
	u, err := b.Parse(ref)
	if err != nil {
		return ref
	}
	return u.String()
}

// withQuery adds delivery directives to a playlist URL.
func withQuery(u, q string) string {
	if strings.Contains(u, "?") {
		return u + "&" + q
	}
	return u + "?" + q
}
