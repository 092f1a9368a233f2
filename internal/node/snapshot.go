package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/streamgrid/streamgrid/bus"
	"github.com/streamgrid/streamgrid/internal/media"
)

// Snapshots: a JPEG of a stream's latest keyframe, decoded by ffmpeg from
// the GOP the stream's edge keeps (bus.FetchGOP: the same request an origin
// makes when it takes a stream over). Only the keyframe is decoded. A
// picture is kept snapshotTTL per (path, width), concurrent requests for one
// share one decode, and at most snapshotSlots ffmpeg processes run at once,
// so a wall of thumbnails costs little.
const (
	snapshotTTL     = 5 * time.Second
	snapshotSlots   = 2
	snapshotTimeout = 10 * time.Second
	maxSnapshotW    = 3840
	minSnapshotW    = 16
	// maxSnapshots bounds the pictures kept.
	maxSnapshots = 1024
)

// Errors of a snapshot, mapped to HTTP statuses by the API.
var (
	errNoKeyframe = errors.New("no keyframe available for this stream yet")
	errNoFFmpeg   = errors.New("ffmpeg is not installed on this node")
	errNoVideo    = errors.New("the stream has no video track")
)

type snapKey struct {
	path  string
	width int
}

type snapEntry struct {
	done chan struct{} // closed when jpeg/err are set
	jpeg []byte
	err  error
	at   time.Time
}

// snapshotter makes and keeps snapshots. Fill in the fields; the zero cache is ready.
type snapshotter struct {
	nc     *nats.Conn
	ffmpeg string // "" finds ffmpeg on PATH
	now    func() time.Time

	slots  chan struct{}
	once   sync.Once
	ctx    context.Context // cancelled by close: ends the decodes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[snapKey]*snapEntry

	decodes atomic.Int64 // ffmpeg runs, for tests
}

func (s *snapshotter) init() {
	s.once.Do(func() {
		s.slots = make(chan struct{}, snapshotSlots)
		s.entries = make(map[snapKey]*snapEntry)
		if s.now == nil {
			s.now = time.Now
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
	})
}

// close cancels the decodes running and waits for them.
func (s *snapshotter) close() {
	s.init()
	s.cancel()
	s.wg.Wait()
}

// get returns the JPEG of path's latest keyframe, width pixels wide (0: the
// stream's own size), from the cache when fresh.
func (s *snapshotter) get(ctx context.Context, path string, width int) ([]byte, error) {
	s.init()
	k := snapKey{path, width}
	now := s.now()
	s.mu.Lock()
	e := s.entries[k]
	if e != nil {
		select {
		case <-e.done:
			if now.Sub(e.at) > snapshotTTL || e.err != nil && now.Sub(e.at) > time.Second {
				e = nil // stale: make a new one
			}
		default: // being made: share it
		}
	}
	if e == nil {
		e = &snapEntry{done: make(chan struct{})}
		if len(s.entries) >= maxSnapshots {
			s.evictLocked(now)
		}
		s.entries[k] = e
		s.wg.Add(1)
		go s.make(e, path, width)
	}
	s.mu.Unlock()
	select {
	case <-e.done:
		return e.jpeg, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// evictLocked drops finished entries past their TTL, or all finished ones
// when none is that old.
func (s *snapshotter) evictLocked(now time.Time) {
	for _, old := range []bool{true, false} {
		for k, e := range s.entries {
			select {
			case <-e.done:
				if !old || now.Sub(e.at) > snapshotTTL {
					delete(s.entries, k)
				}
			default:
			}
		}
		if len(s.entries) < maxSnapshots {
			return
		}
	}
}

// make runs detached from the requests that wait for it: one leaving does
// not cancel the decode the others share.
func (s *snapshotter) make(e *snapEntry, path string, width int) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, snapshotTimeout)
	defer cancel()
	e.jpeg, e.err = s.decode(ctx, path, width)
	e.at = s.now()
	close(e.done)
}

func (s *snapshotter) decode(ctx context.Context, path string, width int) ([]byte, error) {
	bin := s.ffmpeg
	if bin == "" {
		bin = "ffmpeg"
	}
	bin, err := exec.LookPath(bin)
	if err != nil {
		return nil, errNoFFmpeg
	}
	gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	pkts, err := bus.FetchGOP(gctx, s.nc, path)
	cancel()
	if err != nil {
		if errors.Is(err, bus.ErrNoGOP) {
			return nil, errNoKeyframe
		}
		return nil, fmt.Errorf("fetch GOP: %w", err)
	}
	key, hasVideo := firstKeyframe(pkts)
	if key == nil {
		if !hasVideo && len(pkts) > 0 {
			return nil, errNoVideo
		}
		return nil, errNoKeyframe
	}
	annexB, err := avccToAnnexB(key.Payload)
	if err != nil {
		return nil, err
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.slots }()
	s.decodes.Add(1)
	return runFFmpegJPEG(ctx, bin, key.Codec, annexB, width)
}

// firstKeyframe returns the GOP's first video keyframe (SPS/PPS in front).
func firstKeyframe(pkts []*media.Packet) (key *media.Packet, hasVideo bool) {
	for _, p := range pkts {
		if p.Codec.IsVideo() {
			hasVideo = true
			if p.Keyframe() {
				return p, true
			}
		}
	}
	return nil, hasVideo
}

// avccToAnnexB rewrites 4-byte length-prefixed NAL units with start codes.
func avccToAnnexB(b []byte) ([]byte, error) {
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, errors.New("snapshot: truncated NAL unit length")
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return nil, errors.New("snapshot: NAL unit longer than the access unit")
		}
		out = append(out, 0, 0, 0, 1)
		out = append(out, b[4:4+n]...)
		b = b[4+n:]
	}
	return out, nil
}

// runFFmpegJPEG decodes one keyframe (Annex B) and encodes it as a JPEG,
// scaled to width (keeping the aspect ratio) when width > 0.
func runFFmpegJPEG(ctx context.Context, bin string, codec media.Codec, au []byte, width int) ([]byte, error) {
	format := "h264"
	if codec == media.CodecH265 {
		format = "hevc"
	}
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-f", format, "-i", "pipe:0", "-frames:v", "1"}
	if width > 0 {
		args = append(args, "-vf", "scale="+strconv.Itoa(width)+":-2")
	}
	args = append(args, "-q:v", "3", "-f", "image2", "-c:v", "mjpeg", "pipe:1")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = bytes.NewReader(au)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := bytes.TrimSpace(stderr.Bytes())
		if len(msg) > 300 {
			msg = msg[:300]
		}
		return nil, fmt.Errorf("ffmpeg: %w: %s", err, msg)
	}
	if stdout.Len() < 4 || stdout.Bytes()[0] != 0xFF || stdout.Bytes()[1] != 0xD8 {
		return nil, fmt.Errorf("ffmpeg produced no picture: %s", bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
