package hlscache

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/streamgrid/streamgrid/internal/hlsproto"
)

// Bounds on LL-HLS blocking reloads.
//
// _HLS_msn and _HLS_part come from viewers and become cache keys and
// upstream fetches that outlive the viewer, so the cache checks them against
// the media playlist's window before anything is fetched for them:
//
//   - msn above the segment being written + 1 (the last full segment + 2,
//     the bound RFC 8216bis §6.2.5.2 sets) is a 400, as is a part number
//     above twice the parts a segment can hold (target duration / part
//     target, rounded up) + 1;
//   - msn below the window, or any directive on a playlist that cannot block
//     (a multivariant playlist, one without CAN-BLOCK-RELOAD), is answered
//     as the plain playlist: that is what the origin answers to them at
//     once, and they share its cache key instead of making new ones.
//
// The window is that of the newest full copy of the playlist the cache
// fetched. When none is known, or the request lies above it, the plain
// playlist is fetched first (through the LRU and the flight group, so a
// burst costs one upstream request) and the request judged against it.

// maxPartsPerSegment caps the parts per segment a playlist can claim.
const maxPartsPerSegment = 1000

// playlistWindow is what a media playlist says about the blocking reloads it
// can answer.
type playlistWindow struct {
	first    uint64 // EXT-X-MEDIA-SEQUENCE
	next     uint64 // msn of the segment being written (first + full segments)
	maxPart  uint64 // the highest acceptable _HLS_part
	blocking bool   // CAN-BLOCK-RELOAD=YES and a PART-INF or segments to wait for
	// duration is the sum of the listed segments' EXTINF, target the
	// EXT-X-TARGETDURATION: they bound how long a segment stays available
	// (see availability).
	duration, target time.Duration
}

// parseWindow reads a playlist's window; nil when it is no media playlist
// that can block (a multivariant playlist, a malformed one).
func parseWindow(body []byte) *playlistWindow {
	var w playlistWindow
	var target, partTarget float64
	var haveSeq, canBlock bool
	var segments uint64
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) < 5 || line[0] != '#' {
			continue
		}
		switch {
		case bytes.HasPrefix(line, []byte("#EXTINF:")):
			segments++
			v := line[len("#EXTINF:"):]
			if j := bytes.IndexByte(v, ','); j >= 0 {
				v = v[:j]
			}
			if d, err := strconv.ParseFloat(string(v), 64); err == nil && d > 0 && d < 3600 {
				w.duration += time.Duration(d * float64(time.Second))
			}
		case bytes.HasPrefix(line, []byte("#EXT-X-MEDIA-SEQUENCE:")):
			v, err := strconv.ParseUint(string(line[len("#EXT-X-MEDIA-SEQUENCE:"):]), 10, 63)
			if err != nil {
				return nil
			}
			w.first, haveSeq = v, true
		case bytes.HasPrefix(line, []byte("#EXT-X-TARGETDURATION:")):
			target, _ = strconv.ParseFloat(string(line[len("#EXT-X-TARGETDURATION:"):]), 64)
		case bytes.HasPrefix(line, []byte("#EXT-X-PART-INF:")):
			partTarget = attrFloat(line, "PART-TARGET=")
		case bytes.HasPrefix(line, []byte("#EXT-X-SERVER-CONTROL:")):
			canBlock = bytes.Contains(line, []byte("CAN-BLOCK-RELOAD=YES"))
		}
	}
	if !haveSeq && segments == 0 {
		return nil // no media playlist
	}
	w.next = w.first + segments
	if target > 0 && target < 3600 {
		w.target = time.Duration(target * float64(time.Second))
	}
	w.blocking = canBlock
	if partTarget > 0 && target > 0 {
		// Capped: an origin's odd numbers must not make the bound useless.
		parts := min(math.Ceil(target/partTarget), maxPartsPerSegment)
		w.maxPart = 2*uint64(parts) + 1
	}
	return &w
}

// attrFloat reads a decimal attribute (NAME=) of a tag line; 0 when absent.
func attrFloat(line []byte, name string) float64 {
	i := bytes.Index(line, []byte(name))
	if i < 0 {
		return 0
	}
	v := line[i+len(name):]
	if j := bytes.IndexByte(v, ','); j >= 0 {
		v = v[:j]
	}
	f, _ := strconv.ParseFloat(string(v), 64)
	return f
}

type windowVerdict int

const (
	windowOK      windowVerdict = iota // within the window: fetch as asked
	windowPlain                        // answer as the plain playlist
	windowTooFar                       // above the window: 400
	windowUnknown                      // no window known
)

// judge says how a blocking reload q fares against w (nil: unknown).
func (w *playlistWindow) judge(q hlsproto.Directives) windowVerdict {
	if w == nil {
		return windowUnknown
	}
	if !w.blocking {
		return windowPlain
	}
	if q.MSN > w.next+1 || q.HasPart && q.Part > w.maxPart {
		return windowTooFar
	}
	if q.MSN < w.first {
		return windowPlain
	}
	return windowOK
}

// errOutsideWindow is the 400 of a blocking reload beyond the playlist.
var errOutsideWindow = &requestError{status: http.StatusBadRequest, msg: "_HLS_msn or _HLS_part outside the playlist's window"}

// boundBlocking checks a blocking reload against its playlist's window (see
// above). It may turn req into the plain playlist request; it returns a
// non-nil object when the plain playlist's answer is the answer (it was no
// 200), or errOutsideWindow.
func (c *Cache) boundBlocking(ctx context.Context, changed <-chan struct{}, rt route, req *request) (*object, fetchResult, error) {
	v := c.routes.playlistWindow(req.stream, req.file).judge(req.hls)
	if v == windowUnknown || v == windowTooFar {
		plain := *req
		plain.hls = hlsproto.Directives{}
		obj, res, err := c.get(ctx, changed, rt, &plain)
		if err != nil {
			return nil, res, err
		}
		if obj.status != http.StatusOK {
			return obj, res, nil
		}
		v = obj.window.judge(req.hls)
	}
	switch v {
	case windowTooFar:
		return nil, resultHit, errOutsideWindow
	case windowPlain, windowUnknown:
		req.hls = hlsproto.Directives{Skip: req.hls.Skip}
	}
	return nil, resultHit, nil
}

// fallbackAvailability is how long a segment or part is kept when no media
// playlist of its stream is known (it was asked for directly): a shorter
// stay than its real availability costs one more upstream fetch, nothing else.
const fallbackAvailability = 2 * time.Minute

// availability is how long after the cache fetched it a segment or part of
// a stream whose longest media playlist is w can still be asked for. A
// segment is listed from when it completes (its parts from up to a target
// duration before) for about the playlist's duration, then must stay
// available for its own duration plus the playlist's (RFC 8216 §6.2.2); the
// origin keeps segment_count + 2 more segments than it lists, i.e. the
// playlist's duration + 2 target durations past leaving it. So:
// 2 × duration + 3 × target covers every request the origin can still answer.
func (w *playlistWindow) availability() time.Duration {
	if w == nil || w.target <= 0 {
		return fallbackAvailability
	}
	return 2*max(w.duration, w.target) + 3*w.target
}
