package transcode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/sleep"
)

// Errors of the Transcoder.
var (
	// ErrClosed is returned by writes to a transcoder that is not running.
	ErrClosed = errors.New("transcode: transcoder not running")
	// ErrNoAudio is returned by WriteAudio when the source has no audio.
	ErrNoAudio = errors.New("transcode: source has no audio")
	// ErrDiscontinuity ends an ffmpeg run whose input timestamps went
	// backwards or jumped ahead by more than maxTimestampJump; the next run
	// starts at once (OnRestart gets attempt 0 and this error).
	ErrDiscontinuity = errors.New("transcode: input timestamp discontinuity")
	// ErrStalled ends an ffmpeg run that produced nothing for StallTimeout
	// while input kept arriving.
	ErrStalled = errors.New("transcode: ffmpeg stalled")
	// ErrAudioChanged ends an ffmpeg run because the source's audio, though
	// declared, did not come (the next run is video only) or came back (the
	// next run carries it again); the next run starts at once (OnRestart gets
	// attempt 0 and this error).
	ErrAudioChanged = errors.New("transcode: source audio appeared or disappeared")
)

// Defaults of the Transcoder's fields.
const (
	DefaultQueueSize    = 512
	DefaultStallTimeout = 10 * time.Second
	DefaultBackoffMin   = 250 * time.Millisecond
	DefaultBackoffMax   = 5 * time.Second
	// stableRun is how long an ffmpeg run must last for the next failure to
	// count as the first again (backoff starts over).
	stableRun = 30 * time.Second
	// maxTimestampJump is the largest forward DTS step taken as continuous.
	maxTimestampJump = 10 * 90000
	// audioGrace: a run expecting audio that has written this much video
	// (media time, 90 kHz) without any audio is restarted without audio.
	audioGrace = 2 * 90000
	// audioReturn: a video-only run that has been offered this much audio
	// (media time, 90 kHz) is restarted with audio.
	audioReturn = 90000
)

// Transcoder runs one ffmpeg process that turns one stream into the
// renditions of a ladder, and keeps it running.
//
// Feed it access units in decode order with WriteVideo and WriteAudio; it
// hands the renditions back through OnVideo and OnAudio. Writes never block:
// a bounded queue sits between the caller and ffmpeg's stdin, and when it is
// full packets are dropped (counted) until the next keyframe.
//
// If ffmpeg exits, stalls, or the input's timestamps jump, the process is
// restarted (with exponential backoff after failures), OnRestart is called,
// and feeding resumes at the next keyframe; each run maps its output back to
// the input timeline, so timestamps stay comparable across runs, but the
// caller should mark a discontinuity.
//
// Fill in the fields, call Start, then Close. Fields must not change after
// Start.
type Transcoder struct {
	// FFmpeg is the ffmpeg binary; default "ffmpeg" (looked up in PATH).
	FFmpeg string
	// Ladder to produce; it must have at least one rendition.
	Ladder Ladder
	// Encoder, already resolved by Choose: EncoderX264 or EncoderNVENC.
	Encoder Encoder
	// Source describes the input.
	Source SourceInfo
	// QueueSize is the number of packets (video access units and audio
	// writes) buffered between the writers and ffmpeg; default 512.
	QueueSize int
	// StallTimeout: an ffmpeg run that produces nothing for this long while
	// input keeps arriving is killed and restarted; default 10 s.
	StallTimeout time.Duration
	// BackoffMin and BackoffMax bound the exponential delay before restarting
	// a failed ffmpeg; defaults 250 ms and 5 s.
	BackoffMin, BackoffMax time.Duration

	// OnVideo receives each rendition's access units in decode order: pts and
	// dts in 90 kHz units on the input's timeline, NAL units without start
	// codes or access unit delimiters, SPS and PPS (VPS) in front of every
	// IDR. The slices are not reused: the callee may keep them. Calls for one
	// rendition are sequential; calls for different renditions run
	// concurrently. Required.
	OnVideo func(rendition int, pts, dts int64, au [][]byte)
	// OnAudio receives each rendition's audio (every rendition carries the
	// same audio, see Ladder.AudioOutput): pts in 90 kHz units on the input's
	// timeline, AAC access units or Opus packets. Same rules as OnVideo.
	// A source that declares audio but sends none gets video-only runs until
	// audio arrives (see ErrAudioChanged). Optional.
	OnAudio func(rendition int, pts int64, aus [][]byte)
	// OnRestart is called when ffmpeg was restarted, before the new run's
	// first output. attempt counts consecutive failed runs (1 after the first
	// failure); it is 0 when the restart was caused by the input rather than
	// a failure: a timestamp discontinuity (err wraps ErrDiscontinuity) or
	// audio that stopped or started (err wraps ErrAudioChanged). The caller
	// should mark a discontinuity in its output. Optional.
	OnRestart func(attempt int, err error)
	// Log receives lifecycle messages and ffmpeg's stderr (rate-limited).
	// Default: discard.
	Log *slog.Logger
	// Metrics, shared by the node's transcoders; nil disables metrics.
	Metrics *Metrics
	// Stream labels this transcoder's metric series.
	Stream string

	outs      []Output
	queue     *media.Queue[*packet]
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	now       func() time.Time

	mu     sync.Mutex // guards closed against concurrent writes
	closed bool

	carry *packet                    // packet that ended a run as a discontinuity; owned by the feeding goroutine of the current run
	gen   atomic.Pointer[generation] // the running ffmpeg, nil between runs

	lastFeed  atomic.Int64 // unix ns of the last Write call
	videoIn   atomic.Uint64
	audioIn   atomic.Uint64
	dropped   atomic.Uint64
	restarts  atomic.Uint64
	decodeErr atomic.Uint64
	logDrops  atomic.Uint64
	frames    []atomic.Uint64
	fps       atomic.Uint64 // float64 bits
	speed     atomic.Uint64 // float64 bits
	lagNanos  atomic.Int64
	behind    atomic.Bool
}

// packet is one queued write.
type packet struct {
	audio    bool
	key      bool
	pts, dts int64
	data     [][]byte
}

// Stats is a snapshot of a Transcoder's counters.
type Stats struct {
	// Running: an ffmpeg process is running now.
	Running bool
	// Audio: the running ffmpeg carries audio (false for a source without
	// audio, or one whose declared audio does not come).
	Audio bool
	// Restarts counts ffmpeg runs after the first.
	Restarts uint64
	// VideoIn and AudioIn count packets accepted into the queue.
	VideoIn, AudioIn uint64
	// Dropped counts packets dropped before reaching ffmpeg.
	Dropped uint64
	// Frames counts the video frames received per rendition.
	Frames []uint64
	// FPS and Speed are ffmpeg's rates over its last progress period (1 s):
	// frames encoded per second (first rendition) and media seconds per
	// wall-clock second.
	FPS, Speed float64
	// BehindRealTime: speed has stayed below 0.9 for over 10 s with input
	// waiting.
	BehindRealTime bool
	// Lag is the media time between the last input written to ffmpeg and the
	// last output of its slowest rendition.
	Lag time.Duration
	// DecodeErrors counts non-fatal errors decoding ffmpeg's output.
	DecodeErrors uint64
	// LogLinesDropped counts ffmpeg stderr lines suppressed by the rate limit.
	LogLinesDropped uint64
}

// Start validates the configuration and starts ffmpeg. It fails when the
// configuration is invalid or ffmpeg cannot be started.
func (t *Transcoder) Start() error {
	if t.queue != nil {
		return errors.New("transcode: already started")
	}
	if err := t.Ladder.Validate(); err != nil {
		return fmt.Errorf("transcode: ladder: %w", err)
	}
	if len(t.Ladder.Renditions) == 0 {
		return errors.New("transcode: the ladder has no rendition to transcode")
	}
	if t.Encoder != EncoderX264 && t.Encoder != EncoderNVENC {
		return fmt.Errorf("transcode: encoder %q is not resolved (use Choose)", string(t.Encoder))
	}
	if err := t.Source.validate(); err != nil {
		return fmt.Errorf("transcode: %w", err)
	}
	if t.OnVideo == nil {
		return errors.New("transcode: OnVideo is required")
	}
	if t.FFmpeg == "" {
		t.FFmpeg = "ffmpeg"
	}
	if t.QueueSize <= 0 {
		t.QueueSize = DefaultQueueSize
	}
	if t.StallTimeout <= 0 {
		t.StallTimeout = DefaultStallTimeout
	}
	if t.BackoffMin <= 0 {
		t.BackoffMin = DefaultBackoffMin
	}
	if t.BackoffMax < t.BackoffMin {
		t.BackoffMax = max(DefaultBackoffMax, t.BackoffMin)
	}
	if t.Log == nil {
		t.Log = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}

	t.outs = t.Ladder.Outputs(t.Source)
	t.frames = make([]atomic.Uint64, len(t.outs))
	t.ctx, t.cancel = context.WithCancel(context.Background())
	gen, err := t.spawn(t.Source.hasAudio())
	if err != nil {
		t.cancel()
		return fmt.Errorf("transcode: start ffmpeg: %w", err)
	}
	t.queue = media.NewQueue[*packet](t.QueueSize)
	t.done = make(chan struct{})
	t.Log.Debug("transcoder started", "pid", gen.cmd.Process.Pid, "encoder", string(t.Encoder),
		"renditions", len(t.outs))
	go t.supervise(gen)
	return nil
}

// Close stops ffmpeg and waits for every goroutine of the transcoder,
// including running callbacks. It is idempotent.
func (t *Transcoder) Close() {
	if t.done == nil {
		return
	}
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		t.cancel()
	})
	<-t.done
	t.Metrics.forget(t.Stream)
}

// WriteVideo queues one access unit (NAL units without start codes, in
// decode order, pts/dts in 90 kHz units); key says it is a keyframe (the
// packet's media.FlagKeyframe). It copies au and never blocks; when the
// queue is full the unit is dropped, and so is every following unit until
// the next keyframe (drops are counted, not returned as errors).
func (t *Transcoder) WriteVideo(pts, dts int64, au [][]byte, key bool) error {
	if len(au) == 0 {
		return errors.New("transcode: empty access unit")
	}
	tag := media.Tag{Video: true}
	if key {
		tag.Flags = media.FlagKeyframe
	}
	return t.enqueue(&packet{key: key, pts: pts, dts: dts, data: cloneAll(au)}, tag)
}

// WriteAudio queues AAC access units or Opus packets whose first one starts
// at pts (90 kHz units); it copies aus and never blocks. Audio is dropped when
// the queue is full but never waits for a keyframe.
func (t *Transcoder) WriteAudio(pts int64, aus [][]byte) error {
	if !t.Source.hasAudio() {
		return ErrNoAudio
	}
	if len(aus) == 0 {
		return errors.New("transcode: no audio frames")
	}
	return t.enqueue(&packet{audio: true, key: true, pts: pts, dts: pts, data: cloneAll(aus)}, media.Tag{Track: 1})
}

func (t *Transcoder) enqueue(p *packet, tag media.Tag) error {
	if t.queue == nil {
		return ErrClosed
	}
	t.lastFeed.Store(t.now().UnixNano())
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	switch t.queue.Push(p, tag) {
	case media.DropNone:
		if p.audio {
			t.audioIn.Add(1)
		} else {
			t.videoIn.Add(1)
		}
	case media.DropFull:
		t.drop(dropQueueFull)
	case media.DropWaitKeyframe:
		t.drop(dropWaitKey)
	}
	return nil
}

// next waits for the next queued packet; nil once ctx ends.
func (t *Transcoder) next(ctx context.Context) *packet {
	for ctx.Err() == nil {
		if p, ok := t.queue.Pop(); ok {
			return p
		}
		select {
		case <-ctx.Done():
		case <-t.queue.Ready():
		}
	}
	return nil
}

func (t *Transcoder) drop(reason string) {
	t.dropped.Add(1)
	if t.Metrics != nil {
		t.Metrics.dropped.WithLabelValues(t.Stream, reason).Inc()
	}
}

// cloneAll copies a list of byte slices into one allocation.
func cloneAll(in [][]byte) [][]byte {
	n := 0
	for _, b := range in {
		n += len(b)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(in))
	for i, b := range in {
		start := len(buf)
		buf = append(buf, b...)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// Stats returns a snapshot of the counters.
func (t *Transcoder) Stats() Stats {
	gen := t.gen.Load()
	s := Stats{
		Running:         gen != nil,
		Audio:           gen != nil && gen.withAudio,
		Restarts:        t.restarts.Load(),
		VideoIn:         t.videoIn.Load(),
		AudioIn:         t.audioIn.Load(),
		Dropped:         t.dropped.Load(),
		Frames:          make([]uint64, len(t.frames)),
		FPS:             loadFloat(&t.fps),
		Speed:           loadFloat(&t.speed),
		BehindRealTime:  t.behind.Load(),
		Lag:             time.Duration(t.lagNanos.Load()),
		DecodeErrors:    t.decodeErr.Load(),
		LogLinesDropped: t.logDrops.Load(),
	}
	for i := range t.frames {
		s.Frames[i] = t.frames[i].Load()
	}
	return s
}

// supervise runs ffmpeg generations until Close: it waits for the running
// one to end and starts the next, at once when the input caused the end,
// after a backoff when ffmpeg failed.
func (t *Transcoder) supervise(gen *generation) {
	defer close(t.done)
	attempt := 0
	for {
		err := gen.run()
		if t.ctx.Err() != nil {
			t.Log.Debug("transcoder closed")
			return
		}
		withAudio := gen.withAudio
		immediate := true
		switch {
		case gen.withAudio && gen.audioWritten.Load() == 0 && gen.videoWritten.Load() > 0:
			// Declared audio that never came makes ffmpeg fail or wait
			// forever: carry on without it.
			withAudio = false
			if !errors.Is(err, ErrAudioChanged) {
				err = fmt.Errorf("%w: no audio in the input (%w)", ErrAudioChanged, err)
			}
			t.Log.Info("source sends no audio; transcoding video only", "err", err)
		case errors.Is(err, ErrAudioChanged):
			withAudio = true
			t.Log.Info("source audio is back; restarting ffmpeg with audio")
		case errors.Is(err, ErrDiscontinuity):
			t.Log.Info("input timestamps jumped; restarting ffmpeg", "err", err)
		default:
			immediate = false
		}

		callbackAttempt := 0
		if !immediate {
			if t.now().Sub(gen.startedAt) >= stableRun {
				attempt = 0
			}
			attempt++
			callbackAttempt = attempt
			if !t.waitRetry("ffmpeg ended; restarting", err, attempt) {
				return
			}
		}

		for {
			next, spawnErr := t.spawn(withAudio)
			if spawnErr == nil {
				gen = next
				break
			}
			attempt++
			callbackAttempt = attempt
			if !t.waitRetry("restart ffmpeg failed", spawnErr, attempt) {
				return
			}
		}
		t.restarts.Add(1)
		if t.Metrics != nil {
			t.Metrics.restarts.WithLabelValues(t.Stream).Inc()
		}
		if t.OnRestart != nil {
			t.OnRestart(callbackAttempt, err)
		}
	}
}

// newRestartBackoff returns the pacing of ffmpeg restarts (cenkalti/backoff):
// lo, doubling up to hi, without jitter.
func newRestartBackoff(lo, hi time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: lo, Multiplier: 2, MaxInterval: hi}
}

// backoff returns the delay before restart attempt n (1-based): the n-th
// pause of newRestartBackoff. supervise counts the attempts (and starts over
// after a stable run), so the policy is replayed from its start; once at the
// ceiling it stays there.
func (t *Transcoder) backoff(n int) time.Duration {
	b := newRestartBackoff(t.BackoffMin, t.BackoffMax)
	d := b.NextBackOff()
	for i := 1; i < n && d < t.BackoffMax; i++ {
		d = b.NextBackOff()
	}
	return d
}

// waitRetry logs msg with err and the attempt number, then waits the
// attempt's back-off; it reports whether the transcoder still runs.
func (t *Transcoder) waitRetry(msg string, err error, attempt int) bool {
	delay := t.backoff(attempt)
	t.Log.Warn(msg, "err", err, "attempt", attempt, "backoff", delay)
	return sleep.For(t.ctx, delay)
}

// pid returns the process id of the running ffmpeg, 0 between runs (a test
// hook).
func (t *Transcoder) pid() int {
	if g := t.gen.Load(); g != nil {
		return g.cmd.Process.Pid
	}
	return 0
}

// queued returns the number of packets waiting for ffmpeg (a test hook).
func (t *Transcoder) queued() int { return t.queue.Len() }
