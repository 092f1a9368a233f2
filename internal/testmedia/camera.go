package testmedia

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Camera is a synthetic camera: it publishes a Clip to an RTSP or RTMP server
// in real time (each frame leaves when the wall clock reaches its timestamp),
// looping it with timestamps that keep increasing across passes.
//
// Fill in the fields, call Start, then Wait and/or Close (both only once Start
// has returned). Fields must not be changed after Start.
type Camera struct {
	// URL to publish to: rtsp://[user:pass@]host:port/path or
	// rtmp://[user:pass@]host:port/app/stream (the first path segment is the RTMP
	// application, the rest the stream key, unless the URL has a #streamKey).
	URL string
	// Transport for RTSP: "tcp" (the default) or "udp". Ignored for RTMP.
	Transport string
	// Clip to publish. It defaults to Load().
	Clip *Clip
	// Loops is how many times the clip is published before the camera ends on
	// its own; 0 publishes until Close or until the Start context ends.
	Loops int
	// NoAudio leaves the AAC track out (it is published when the clip has one).
	NoAudio bool
	// StampSEI puts an SEI NAL unit carrying the send time (see
	// MarshalSEITimestamp) in front of the slices of every video access unit, for
	// glass-to-glass latency measurement.
	StampSEI bool
	// WriteQueueSize is the RTSP client's outbound packet queue (a power of two).
	// It defaults to 4096.
	WriteQueueSize int
	// Timeout bounds connecting and every network write. It defaults to 10 s.
	Timeout time.Duration
	// OnStats, when set, is called from the publishing goroutine after every
	// completed pass over the clip and once when the camera ends. It must not
	// block.
	OnStats func(Stats)
	// Log receives the camera's start/stop messages. It defaults to discarding.
	Log *slog.Logger

	ctx       context.Context
	cancel    context.CancelFunc
	pub       publisher
	audio     bool
	done      chan struct{}
	err       error
	startedAt time.Time

	loops       atomic.Int64
	videoFrames atomic.Uint64
	audioFrames atomic.Uint64
	bytes       atomic.Uint64
	queueFull   atomic.Uint64
	dropped     atomic.Uint64
	maxLag      atomic.Int64
}

// Stats is a snapshot of a Camera's counters.
type Stats struct {
	// Loops is the number of completed passes over the clip.
	Loops int
	// VideoFrames and AudioFrames count frames handed to the transport.
	VideoFrames, AudioFrames uint64
	// Bytes counts media payload bytes handed to the transport (before RTP/RTMP
	// framing).
	Bytes uint64
	// QueueFullRetries counts the times the RTSP write queue was full and a
	// packet had to wait.
	QueueFullRetries uint64
	// DroppedPackets counts RTSP packets given up after the queue stayed full.
	DroppedPackets uint64
	// MaxLag is the worst delay of a send behind its schedule (CPU starvation or
	// a blocked connection show up here).
	MaxLag time.Duration
	// Started is when publishing began (the wall clock time of timestamp 0).
	Started time.Time
}

// ErrNotStarted is returned by Wait on a camera whose Start did not succeed.
var ErrNotStarted = errors.New("camera not started")

// errStopped ends the publishing loop when the camera is closed or its context
// ends; Wait reports it as nil.
var errStopped = errors.New("camera stopped")

// publisher is one protocol's connection. Its write methods are called from a
// single goroutine; close may be called concurrently with them.
type publisher interface {
	// writeVideo sends an H264 access unit; ntp is its capture time.
	writeVideo(pts, dts time.Duration, ntp time.Time, au [][]byte) error
	// writeAudio sends one AAC frame.
	writeAudio(pts time.Duration, ntp time.Time, frame []byte) error
	// failed is closed when the connection ends on its own (nil if the protocol
	// only reports failures through writes).
	failed() <-chan struct{}
	// err explains why failed was closed.
	err() error
	// finish ends the session gracefully after the last write.
	finish()
	// close aborts the connection; it is idempotent.
	close()
}

// publisherConfig is what a protocol needs to connect.
type publisherConfig struct {
	url            *url.URL
	transport      string
	clip           *Clip
	audio          bool
	writeQueueSize int
	timeout        time.Duration
	log            *slog.Logger
	onQueueFull    func()
	onDrop         func()
}

// Start connects to the server, announces the tracks and starts publishing in
// the background. ctx bounds the connection attempt and the whole life of the
// camera: when it ends, the camera stops as if closed.
func (c *Camera) Start(ctx context.Context) error {
	if c.done != nil {
		return errors.New("camera already started")
	}
	if err := sourceDefaults(&c.Log, &c.Clip); err != nil {
		return err
	}
	if c.Loops < 0 {
		return fmt.Errorf("invalid Loops %d", c.Loops)
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.WriteQueueSize == 0 {
		c.WriteQueueSize = 4096
	}
	transport := strings.ToLower(c.Transport)
	if transport == "" {
		transport = "tcp"
	}
	if transport != "tcp" && transport != "udp" {
		return fmt.Errorf("invalid Transport %q (want tcp or udp)", c.Transport)
	}

	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("parse camera URL: %w", err)
	}
	c.audio = !c.NoAudio && c.Clip.AudioConfig != nil && len(c.Clip.Audio) > 0
	cfg := publisherConfig{
		url:            u,
		transport:      transport,
		clip:           c.Clip,
		audio:          c.audio,
		writeQueueSize: c.WriteQueueSize,
		timeout:        c.Timeout,
		log:            c.Log,
		onQueueFull:    func() { c.queueFull.Add(1) },
		onDrop:         func() { c.dropped.Add(1) },
	}

	c.ctx, c.cancel = context.WithCancel(ctx)
	dialCtx, dialCancel := context.WithTimeout(c.ctx, c.Timeout)
	defer dialCancel()

	switch u.Scheme {
	case "rtsp", "rtsps":
		c.pub, err = dialRTSP(dialCtx, cfg)
	case "rtmp", "rtmps":
		c.pub, err = dialRTMP(dialCtx, cfg)
	default:
		err = fmt.Errorf("unsupported scheme %q (want rtsp or rtmp)", u.Scheme)
	}
	if err != nil {
		c.cancel()
		return fmt.Errorf("publish to %s: %w", u.Redacted(), err)
	}

	c.done = make(chan struct{})
	c.startedAt = time.Now()
	c.Log.Debug("camera publishing", "url", u.Redacted(), "transport", transport,
		"audio", cfg.audio, "loops", c.Loops)
	go c.run()
	return nil
}

// Wait blocks until the camera ends: after Loops passes, after Close or the end
// of the Start context (both nil), or when the connection fails (the error).
func (c *Camera) Wait() error {
	if c.done == nil {
		return ErrNotStarted
	}
	<-c.done
	return c.err
}

// Close stops publishing, disconnects and waits for the camera's goroutine. It
// may be called any number of times, also concurrently with Wait.
func (c *Camera) Close() {
	if c.done == nil {
		return
	}
	c.cancel()
	<-c.done
}

// FramesSent returns the number of video access units handed to the transport.
func (c *Camera) FramesSent() uint64 {
	return c.videoFrames.Load()
}

// Stats returns a snapshot of the camera's counters.
func (c *Camera) Stats() Stats {
	return Stats{
		Loops:            int(c.loops.Load()),
		VideoFrames:      c.videoFrames.Load(),
		AudioFrames:      c.audioFrames.Load(),
		Bytes:            c.bytes.Load(),
		QueueFullRetries: c.queueFull.Load(),
		DroppedPackets:   c.dropped.Load(),
		MaxLag:           time.Duration(c.maxLag.Load()),
		Started:          c.startedAt,
	}
}

func (c *Camera) run() {
	defer close(c.done)
	defer c.cancel()

	err := c.runInner()
	if err == nil {
		// Publishing is over: let the session end cleanly, unless the camera is
		// closed meanwhile.
		stop := context.AfterFunc(c.ctx, c.pub.close)
		c.pub.finish()
		stop()
	}
	c.pub.close()

	if c.OnStats != nil {
		c.OnStats(c.Stats())
	}

	st := c.Stats()
	switch {
	case errors.Is(err, errStopped):
		err = nil
		c.Log.Debug("camera closed", "frames", st.VideoFrames, "loops", st.Loops)
	case err == nil:
		c.Log.Debug("camera finished", "frames", st.VideoFrames, "loops", st.Loops)
	default:
		c.Log.Warn("camera failed", "err", err, "frames", st.VideoFrames, "loops", st.Loops)
	}
	c.err = err
}

// scheduled is one frame of a pass, in send order.
type scheduled struct {
	at    time.Duration // DTS within the pass
	video *Frame
	audio *Frame
}

func (c *Camera) schedule(audio bool) []scheduled {
	out := make([]scheduled, 0, len(c.Clip.Video)+len(c.Clip.Audio))
	for i := range c.Clip.Video {
		out = append(out, scheduled{at: c.Clip.Video[i].DTS, video: &c.Clip.Video[i]})
	}
	if audio {
		for i := range c.Clip.Audio {
			out = append(out, scheduled{at: c.Clip.Audio[i].DTS, audio: &c.Clip.Audio[i]})
		}
	}
	// stable: at equal times video goes first, each track keeps its own order
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
}

func (c *Camera) runInner() error {
	sched := c.schedule(c.audio)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	wait := func(deadline time.Time) error {
		d := time.Until(deadline)
		if d <= 0 {
			if lag := -d; lag > time.Duration(c.maxLag.Load()) {
				c.maxLag.Store(int64(lag))
			}
			return c.checkStopped()
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			return nil
		case <-c.ctx.Done():
			return errStopped
		case <-c.pub.failed():
			return c.pub.err()
		}
	}

	for loop := 0; c.Loops == 0 || loop < c.Loops; loop++ {
		offset := time.Duration(loop) * c.Clip.Duration
		for _, s := range sched {
			capture := c.startedAt.Add(offset + s.at)
			if err := wait(capture); err != nil {
				return err
			}
			if s.video != nil {
				au := s.video.NALUs
				if c.StampSEI {
					au = WithSEITimestamp(au, time.Now())
				}
				if err := c.pub.writeVideo(s.video.PTS+offset, s.video.DTS+offset, capture, au); err != nil {
					return c.writeError(err)
				}
				c.videoFrames.Add(1)
				for _, nalu := range au {
					c.bytes.Add(uint64(len(nalu)))
				}
			} else {
				if err := c.pub.writeAudio(s.audio.PTS+offset, capture, s.audio.Data); err != nil {
					return c.writeError(err)
				}
				c.audioFrames.Add(1)
				c.bytes.Add(uint64(len(s.audio.Data)))
			}
		}
		c.loops.Add(1)
		if c.OnStats != nil {
			c.OnStats(c.Stats())
		}
	}

	// The last frame lasts one frame interval: end the session when it is over,
	// which also gives queued packets time to leave.
	return wait(c.startedAt.Add(time.Duration(c.Loops) * c.Clip.Duration))
}

func (c *Camera) checkStopped() error {
	select {
	case <-c.ctx.Done():
		return errStopped
	case <-c.pub.failed():
		return c.pub.err()
	default:
		return nil
	}
}

// writeError reports a write failure, or errStopped when the write failed
// because the camera is being closed.
func (c *Camera) writeError(err error) error {
	if c.ctx.Err() != nil {
		return errStopped
	}
	return err
}
