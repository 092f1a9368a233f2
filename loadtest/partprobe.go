package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
	"github.com/streamgrid/streamgrid/internal/sleep"
)

const (
	// partRequestTimeout bounds one probe request. The origin answers a
	// blocking reload within three target durations plus a part (503 past
	// that), the cache within its own deadline.
	partRequestTimeout = 10 * time.Second
	// partRetry is the pause after a probe request that got nothing new (an
	// error, a non-owner, a 503).
	partRetry = 250 * time.Millisecond
	// partSightingTTL is how long a part seen on one side waits for the other
	// side before it is forgotten.
	partSightingTTL = 10 * time.Second
	// partSamples bounds each part availability reservoir.
	partSamples = 100000
)

// errNotServed marks a 404 or 503 answer: from an origin, it does not own
// the stream (or not yet).
var errNotServed = errors.New("stream not served here")

// partProbe measures, for one stream through one cache, how long after the
// owning origin has a new LL-HLS part the cache serves it.
//
// Two chains of blocking playlist reloads run side by side on the stream's
// video media playlist, one against the owning origin and one against the
// cache, each asking for the part after the last one it was given
// (_HLS_msn=<msn>&_HLS_part=<part>) as soon as it has its answer. A chain's
// answer time is when it saw each new part; the sample for a part is
// (cache's sighting - origin's sighting). Both requests for a part are
// normally in flight before the part exists, so neither side's time is the
// probe's own lag. The chains run independently so that a cache slower than a
// part duration never delays the next origin request (which would make the
// origin answer at once and the sample too small).
//
// Only origin answers that bring exactly one new part count: more means the
// origin chain fell behind (the load generator starved) and its time is late
// for all but the newest. A cache sighting that lists
// several new parts gives them all that time, which is when the cache served
// them at the latest: never an underestimate. So the figure is exact (to a
// request's round trip) while the cache answers within a part duration; a
// cache slower than that makes its chain fall behind, and the figure becomes
// an upper bound that grows with the backlog (a cache delaying every answer
// by 300 ms with 200 ms parts reads as 400-500 ms). The first answer of each
// chain (and the first after an owner change) only sets where to start.
type partProbe struct {
	r       *runner
	stream  string // camera name
	play    string // cache base URL
	startAt time.Duration
	cacheRs *reservoir // this cache's samples

	mu     sync.Mutex
	origin map[partKey]time.Time // fresh origin sightings not matched yet
	cache  map[partKey]time.Time // cache sightings not matched yet
}

// probeAnswer is one answered probe request.
type probeAnswer struct {
	pl *mediaPlaylist
	at time.Time // when the whole body had arrived
}

// run probes until ctx ends.
func (p *partProbe) run(ctx context.Context) {
	if !sleep.Until(ctx, p.r.start.Add(p.startAt)) {
		return
	}
	log := p.r.cfg.Log.With("part_probe", p.stream, "cache", p.play)
	media, ok := p.findMedia(ctx, log)
	if !ok {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.runCache(ctx, media, log) })
	wg.Go(func() { p.runOrigin(ctx, media, log) })
	wg.Wait()
}

// findMedia reads the stream's index.m3u8 from the cache, as a player does,
// and returns the video media playlist's file name.
func (p *partProbe) findMedia(ctx context.Context, log *slog.Logger) (string, bool) {
	index := p.play + "/" + p.stream + "/index.m3u8"
	for {
		body, _, err := p.get(ctx, index)
		if err == nil {
			var uri string
			if uri, err = mediaPlaylistURI(body); err == nil {
				if uri == "" {
					return "index.m3u8", true
				}
				if strings.ContainsAny(uri, "/?#:") {
					p.r.partFail(log, fmt.Errorf("part probe %s: variant URI %q is not a file next to index.m3u8", index, uri))
					return "", false
				}
				return uri, true
			}
		}
		if ctx.Err() != nil {
			return "", false
		}
		log.Debug("part probe: no playlist yet", "url", index, "err", err)
		if !sleep.For(ctx, partRetry) {
			return "", false
		}
	}
}

// runCache follows the cache's media playlist part by part.
func (p *partProbe) runCache(ctx context.Context, media string, log *slog.Logger) {
	base := p.play + "/" + p.stream + "/" + media
	var prev *mediaPlaylist
	for ctx.Err() == nil {
		a, err := p.fetch(ctx, base, prev)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.r.partFail(log, fmt.Errorf("part probe %s: %w", base, err))
			if errors.Is(err, errNotLowLatency) || !sleep.For(ctx, partRetry) {
				return
			}
			prev = nil // start over from what the cache serves now
			continue
		}
		if prev != nil {
			fresh := a.pl.newParts(prev.next())
			if len(fresh) == 0 {
				p.r.partFail(log, fmt.Errorf("part probe %s: a blocking reload for part %v answered without it", base, prev.next()))
				if !sleep.For(ctx, partRetry) {
					return
				}
				continue
			}
			for _, k := range fresh {
				p.sight(false, k, a.at)
			}
		}
		prev = a.pl
	}
}

// runOrigin follows the owning origin's media playlist part by part, finding
// the owner again whenever the one it follows stops serving the stream.
func (p *partProbe) runOrigin(ctx context.Context, media string, log *slog.Logger) {
	owner := ""
	var prev *mediaPlaylist
	for ctx.Err() == nil {
		if owner == "" {
			owner, prev = p.findOwner(ctx, media, log), nil
			if owner == "" {
				if !sleep.For(ctx, partRetry) {
					return
				}
				continue
			}
		}
		a, err := p.fetch(ctx, owner, prev)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errNotServed) {
				log.Debug("part probe: the origin stopped serving the stream", "url", owner, "err", err)
			} else {
				p.r.partFail(log, fmt.Errorf("part probe %s: %w", owner, err))
			}
			owner = ""
			if errors.Is(err, errNotLowLatency) || !sleep.For(ctx, partRetry) {
				return
			}
			continue
		}
		if prev != nil {
			if fresh := a.pl.newParts(prev.next()); len(fresh) == 1 {
				p.sight(true, fresh[0], a.at)
			}
		}
		prev = a.pl
	}
}

// findOwner returns the media playlist URL of the first origin that serves
// the stream, "" when none does. Origins answering 404 or 503 do not own it.
func (p *partProbe) findOwner(ctx context.Context, media string, log *slog.Logger) string {
	for _, o := range p.r.cfg.Origins {
		u := o + "/" + p.stream + "/" + media
		_, _, err := p.get(ctx, u)
		if err == nil {
			log.Debug("part probe: owner found", "url", u)
			return u
		}
		if ctx.Err() != nil {
			return ""
		}
		if !errors.Is(err, errNotServed) {
			p.r.partFail(log, fmt.Errorf("part probe %s: %w", u, err))
		}
	}
	return ""
}

var errNotLowLatency = errors.New("not a Low-Latency HLS playlist (no EXT-X-PART-INF)")

// fetch asks url for the media playlist: plainly when prev is nil, otherwise
// as a blocking reload for the part after prev's last.
func (p *partProbe) fetch(ctx context.Context, url string, prev *mediaPlaylist) (*probeAnswer, error) {
	if prev != nil {
		k := prev.next()
		url += "?" + hlsproto.Directives{MSN: k.msn, Part: k.part, HasMSN: true, HasPart: true}.Encode()
	}
	body, at, err := p.get(ctx, url)
	if err != nil {
		return nil, err
	}
	pl, err := parseMediaPlaylist(body)
	if err != nil {
		return nil, err
	}
	if !pl.lowLatency {
		return nil, errNotLowLatency
	}
	return &probeAnswer{pl: pl, at: at}, nil
}

// get fetches url and returns its body and the time the body had arrived.
// A 404 or 503 answer wraps errNotServed.
func (p *partProbe) get(ctx context.Context, url string) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, partRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	if p.r.cfg.OriginSecret != "" && slices.ContainsFunc(p.r.cfg.Origins, func(o string) bool { return strings.HasPrefix(url, o+"/") }) {
		req.Header.Set(hlsproto.HeaderAuth, p.r.cfg.OriginSecret)
	}
	resp, err := p.r.http.Do(req)
	if err != nil {
		return "", time.Time{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPlaylistBody))
	at := time.Now()
	if err != nil {
		return "", at, fmt.Errorf("read body: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return string(body), at, nil
	case http.StatusNotFound, http.StatusServiceUnavailable:
		return "", at, fmt.Errorf("%w: %s", errNotServed, resp.Status)
	}
	return "", at, errors.New(resp.Status)
}

// sight records when one side (the origin when fromOrigin, else the cache)
// was seen serving part k, and takes a sample once both sides have.
func (p *partProbe) sight(fromOrigin bool, k partKey, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mine, other := p.cache, p.origin
	if fromOrigin {
		mine, other = p.origin, p.cache
	}
	if t, ok := other[k]; ok {
		delete(other, k)
		originAt, cacheAt := t, at
		if fromOrigin {
			originAt, cacheAt = at, t
		}
		if !originAt.Before(p.r.warmEnd) {
			d := ms(cacheAt.Sub(originAt))
			p.r.partAll.add(d)
			p.cacheRs.add(d)
		}
		return
	}
	if _, ok := mine[k]; ok {
		return // the first sighting counts
	}
	mine[k] = at
	for key, t := range mine {
		if at.Sub(t) > partSightingTTL {
			delete(mine, key)
		}
	}
}
