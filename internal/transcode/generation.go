package transcode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/substructs"
	"golang.org/x/sync/errgroup"

	"github.com/streamgrid/streamgrid/internal/media"
)

// pipeBuffer sizes the buffered reader and writer on ffmpeg's pipes.
const pipeBuffer = 128 << 10

// generation is one ffmpeg process and the goroutines that serve it: the
// stdin feeder, one reader per rendition, the progress and stderr readers,
// a stall watchdog, the process waiter and its killer. They live and die
// together in an errgroup; closing the pipes and killing the process stops
// them.
type generation struct {
	t         *Transcoder
	cmd       *exec.Cmd
	startedAt time.Time
	withAudio bool // the source's audio is declared to this run

	stdin    *os.File   // write end of ffmpeg's stdin
	outs     []*os.File // read ends of the renditions' pipes
	progress *os.File   // read end of the -progress pipe
	stderrR  *os.File   // read end of stderr
	stderr   *stderrLog

	base       atomic.Int64 // input PTS of the first keyframe fed to this run
	firstWrite atomic.Int64 // unix ns when that keyframe was written, 0 before
	lastOut    atomic.Int64 // unix ns of the last output frame of any rendition
	inDTS      atomic.Int64 // input DTS of the last video unit written
	outDTS     []atomic.Int64
	outSeen    []atomic.Bool

	videoWritten atomic.Uint64 // access units written to ffmpeg
	audioWritten atomic.Uint64 // audio writes passed to ffmpeg
}

// spawn starts one ffmpeg process with its pipes; withAudio declares the
// source's audio to it.
func (t *Transcoder) spawn(withAudio bool) (*generation, error) {
	g := &generation{
		t:         t,
		withAudio: withAudio,
		outDTS:    make([]atomic.Int64, len(t.outs)),
		outSeen:   make([]atomic.Bool, len(t.outs)),
	}
	src := t.Source
	if !withAudio {
		src.AudioCodec, src.AudioConfig = media.CodecInvalid, nil
	}
	args := BuildArgs(t.Ladder, t.Encoder, src)
	g.stderr = t.newStderrLog()

	pp, err := openFFmpegPipes(len(t.outs))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(t.FFmpeg, args...)
	cmd.Stdin = pp.stdinR
	cmd.Stderr = pp.errW
	cmd.ExtraFiles = append(append(make([]*os.File, 0, len(pp.outW)+1), pp.outW...), pp.progW)
	setProcAttr(cmd)
	err = cmd.Start()
	closeFiles(pp.childEnds()) // the child has its copies now
	if err != nil {
		closeFiles(pp.parentEnds())
		return nil, err
	}
	g.cmd, g.stdin, g.outs, g.progress, g.stderrR = cmd, pp.stdinW, pp.outR, pp.progR, pp.errR
	g.startedAt = t.now()
	t.gen.Store(g)
	if t.Metrics != nil {
		t.Metrics.running.Inc()
	}
	return g, nil
}

// newStderrLog returns the keeper of one ffmpeg run's stderr; the lines it
// drops are counted.
func (t *Transcoder) newStderrLog() *stderrLog {
	return &stderrLog{log: t.Log, now: t.now, onDropped: func(n int) {
		t.logDrops.Add(uint64(n))
		if t.Metrics != nil {
			t.Metrics.logDropped.WithLabelValues(t.Stream).Add(float64(n))
		}
	}}
}

// ffmpegPipes are the pipes between the transcoder and one ffmpeg run: the
// parent keeps one end of each, the child inherits the other.
type ffmpegPipes struct {
	stdinR, stdinW *os.File   // ffmpeg's stdin
	outR, outW     []*os.File // one per rendition; the child's ends become fds 3, 4, ...
	progR, progW   *os.File   // -progress, the fd after the renditions'
	errR, errW     *os.File   // ffmpeg's stderr
}

// openFFmpegPipes opens the pipes of a run with outs renditions; when one
// fails it closes those already open.
func openFFmpegPipes(outs int) (*ffmpegPipes, error) {
	pp := &ffmpegPipes{}
	fail := func(err error) (*ffmpegPipes, error) {
		closeFiles(pp.parentEnds())
		closeFiles(pp.childEnds())
		return nil, fmt.Errorf("create pipe: %w", err)
	}
	var err error
	if pp.stdinR, pp.stdinW, err = os.Pipe(); err != nil {
		return fail(err)
	}
	for range outs {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		pp.outR, pp.outW = append(pp.outR, r), append(pp.outW, w)
	}
	if pp.progR, pp.progW, err = os.Pipe(); err != nil {
		return fail(err)
	}
	if pp.errR, pp.errW, err = os.Pipe(); err != nil {
		return fail(err)
	}
	return pp, nil
}

// parentEnds are the ends the transcoder keeps (those open so far).
func (pp *ffmpegPipes) parentEnds() []*os.File {
	return append([]*os.File{pp.stdinW, pp.progR, pp.errR}, pp.outR...)
}

// childEnds are the ends ffmpeg inherits (those open so far).
func (pp *ffmpegPipes) childEnds() []*os.File {
	return append([]*os.File{pp.stdinR, pp.progW, pp.errW}, pp.outW...)
}

// closeFiles closes files, skipping nil ones.
func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			_ = f.Close()
		}
	}
}

// run serves the process until it ends (or Close) and returns why it ended.
func (g *generation) run() error {
	t := g.t
	grp, ctx := errgroup.WithContext(t.ctx)
	var exitErr error
	grp.Go(func() error {
		err := g.cmd.Wait()
		if err == nil {
			err = errors.New("exit status 0")
		}
		exitErr = fmt.Errorf("ffmpeg exited: %w", err)
		return exitErr
	})
	grp.Go(func() error {
		<-ctx.Done()
		_ = g.cmd.Process.Kill() // fails only when it has exited already
		return nil
	})
	grp.Go(func() error { return g.feed(ctx) })
	for i := range g.outs {
		grp.Go(func() error { return g.read(i) })
	}
	grp.Go(g.readProgress)
	grp.Go(func() error {
		g.stderr.consume(g.stderrR)
		return nil
	})
	grp.Go(func() error { return g.watch(ctx) })

	err := grp.Wait()
	_ = g.stdin.Close()
	for _, f := range g.outs {
		_ = f.Close()
	}
	_ = g.progress.Close()
	_ = g.stderrR.Close()
	t.gen.CompareAndSwap(g, nil)
	if t.Metrics != nil {
		t.Metrics.running.Dec()
		t.Metrics.fps.WithLabelValues(t.Stream).Set(0)
		t.Metrics.speed.WithLabelValues(t.Stream).Set(0)
	}
	storeFloat(&t.fps, 0)
	storeFloat(&t.speed, 0)

	// Report why the run ended: a stall or a change in the input as such,
	// anything else (a broken pipe, an unreadable output) by ffmpeg's exit
	// and its last words.
	if !errors.Is(err, ErrStalled) && !errors.Is(err, ErrDiscontinuity) && !errors.Is(err, ErrAudioChanged) && exitErr != nil {
		err = exitErr
	}
	if tail := g.stderr.lastLines(); tail != "" {
		err = fmt.Errorf("%w (stderr: %s)", err, tail)
	}
	return err
}

// feed writes queued packets to ffmpeg's stdin as MPEG-TS, starting at the
// first video keyframe. The timeline is shifted so that this keyframe lands on
// timelineStart.
func (g *generation) feed(ctx context.Context) error {
	t := g.t
	in, err := g.newTSInput()
	if err != nil {
		return err
	}
	started := false
	var base, lastDTS int64
	var offeredFrom int64 = -1 // first audio PTS offered to a video-only run
	for {
		p := t.carry
		t.carry = nil
		if p == nil {
			if p = t.next(ctx); p == nil {
				return nil
			}
		}
		if !started {
			if p.audio || !p.key {
				t.drop(dropBeforeStart)
				continue
			}
			started = true
			base = p.pts
			g.base.Store(base)
		} else if !p.audio && (p.dts < lastDTS || p.dts-lastDTS > maxTimestampJump) {
			t.carry = p
			return fmt.Errorf("%w: DTS %d after %d", ErrDiscontinuity, p.dts, lastDTS)
		}
		if p.audio && in.audio == nil {
			// A video-only run: restart with audio once it has been
			// coming for a while.
			if offeredFrom < 0 {
				offeredFrom = p.pts
			}
			if p.pts-offeredFrom >= audioReturn {
				return fmt.Errorf("%w: audio is back", ErrAudioChanged)
			}
			continue
		}
		if !p.audio && in.audio != nil && g.audioWritten.Load() == 0 && p.dts-base >= audioGrace {
			return fmt.Errorf("%w: no audio %v after the first keyframe", ErrAudioChanged,
				time.Duration(p.dts-base)*time.Second/90000)
		}
		ts := p.pts - base + timelineStart
		if p.audio && ts < 0 {
			continue
		}
		if err := in.write(p, ts, p.dts-base+timelineStart); err != nil {
			return fmt.Errorf("write to ffmpeg: %w", err)
		}
		if !p.audio {
			lastDTS = p.dts
		}
		g.noteWritten(p)
	}
}

// tsInput muxes the packets fed to one ffmpeg run into MPEG-TS on its stdin.
type tsInput struct {
	bw           *bufio.Writer
	w            *mpegts.Writer
	video, audio *mpegts.Track // audio is nil in a video-only run
	h265, aac    bool          // the source's video and audio codecs
}

// newTSInput returns the muxer of g's stdin: the source's video track, and
// its audio track when the run has audio.
func (g *generation) newTSInput() (*tsInput, error) {
	src := g.t.Source
	in := &tsInput{
		bw:    bufio.NewWriterSize(g.stdin, pipeBuffer),
		video: &mpegts.Track{Codec: &tscodecs.H264{}},
		h265:  src.videoCodec() == media.CodecH265,
		aac:   src.AudioCodec == media.CodecAAC,
	}
	if in.h265 {
		in.video.Codec = &tscodecs.H265{}
	}
	tracks := []*mpegts.Track{in.video}
	switch {
	case !g.withAudio:
	case src.AudioCodec == media.CodecAAC:
		in.audio = &mpegts.Track{Codec: &tscodecs.MPEG4Audio{Config: *src.AudioConfig}}
	case src.AudioCodec == media.CodecOpus:
		in.audio = &mpegts.Track{Codec: &tscodecs.Opus{
			Desc: &substructs.OpusAudioDescriptor{ChannelConfigCode: uint8(src.audioChannels())},
		}}
	}
	if in.audio != nil {
		tracks = append(tracks, in.audio)
	}
	in.w = &mpegts.Writer{W: in.bw, Tracks: tracks}
	if err := in.w.Initialize(); err != nil {
		return nil, fmt.Errorf("initialise MPEG-TS writer: %w", err)
	}
	return in, nil
}

// write muxes p with presentation time ts and (video) decoding time dts,
// both on the run's timeline, and flushes it to ffmpeg.
func (in *tsInput) write(p *packet, ts, dts int64) error {
	var err error
	switch {
	case p.audio && in.aac:
		err = in.w.WriteMPEG4Audio(in.audio, ts, p.data)
	case p.audio:
		err = in.w.WriteOpus(in.audio, ts, p.data)
	case in.h265:
		err = in.w.WriteH265(in.video, ts, dts, p.data)
	default:
		err = in.w.WriteH264(in.video, ts, dts, p.data)
	}
	if err != nil {
		return err
	}
	return in.bw.Flush()
}

// noteWritten counts p as written to ffmpeg.
func (g *generation) noteWritten(p *packet) {
	if p.audio {
		g.audioWritten.Add(1)
		return
	}
	g.videoWritten.Add(1)
	g.inDTS.Store(p.dts)
	if g.firstWrite.Load() == 0 {
		g.firstWrite.Store(g.t.now().UnixNano())
	}
}

// read demuxes one rendition's MPEG-TS output and hands it to the callbacks,
// with timestamps mapped back to the input timeline.
func (g *generation) read(i int) error {
	t := g.t
	r := &mpegts.Reader{R: bufio.NewReaderSize(g.outs[i], pipeBuffer)}
	if err := r.Initialize(); err != nil {
		return fmt.Errorf("rendition %s: read MPEG-TS tables: %w", t.outs[i].Rendition.Name, err)
	}
	r.OnDecodeError(func(err error) {
		t.decodeErr.Add(1)
		if t.Metrics != nil {
			t.Metrics.decodeErrors.WithLabelValues(t.Stream).Inc()
		}
		t.Log.Debug("decode ffmpeg output", "rendition", t.outs[i].Rendition.Name, "err", err)
	})

	// One decoder per output unwraps the 33-bit timestamps of its tracks
	// into one timeline; the first timestamp anchors it near timelineStart.
	var td mpegts.TimeDecoder
	td.Initialize()
	var first int64
	anchored := false
	conv := func(raw int64) int64 {
		if !anchored {
			anchored = true
			first = raw
		}
		return first + td.Decode(raw) - timelineStart + g.base.Load()
	}
	video := func(pts, dts int64, au [][]byte) error {
		pts, dts = conv(pts), conv(dts)
		g.outDTS[i].Store(dts)
		g.outSeen[i].Store(true)
		g.lastOut.Store(t.now().UnixNano())
		t.frames[i].Add(1)
		if t.Metrics != nil {
			t.Metrics.frames.WithLabelValues(t.Stream, t.outs[i].Rendition.Name).Inc()
		}
		t.OnVideo(i, pts, dts, au)
		return nil
	}
	audio := func(pts int64, aus [][]byte) error {
		pts = conv(pts)
		if t.OnAudio != nil {
			t.OnAudio(i, pts, aus)
		}
		return nil
	}
	for _, track := range r.Tracks() {
		switch track.Codec.(type) {
		case *tscodecs.H264:
			r.OnDataH264(track, video)
		case *tscodecs.H265:
			r.OnDataH265(track, video)
		case *tscodecs.MPEG4Audio:
			r.OnDataMPEG4Audio(track, audio)
		case *tscodecs.Opus:
			r.OnDataOpus(track, audio)
		}
	}
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("rendition %s: read MPEG-TS: %w", t.outs[i].Rendition.Name, err)
		}
	}
}

// readProgress turns ffmpeg's -progress reports into rates, the lag and the
// behind-real-time flag.
func (g *generation) readProgress() error {
	t := g.t
	var meter speedMeter
	err := readProgress(g.progress, func(rep progressReport) {
		lag, known := g.lag()
		if known {
			t.lagNanos.Store(int64(lag))
		}
		waiting := t.queue.Len() > 0 || (known && lag > time.Second)
		fps, speed, behind, ok := meter.update(rep, t.now(), waiting)
		if ok {
			storeFloat(&t.fps, fps)
			storeFloat(&t.speed, speed)
		}
		if was := t.behind.Swap(behind); was != behind {
			if behind {
				t.Log.Warn("ffmpeg is behind real time", "speed", speed, "lag", lag)
			} else {
				t.Log.Info("ffmpeg caught up with real time", "speed", speed)
			}
		}
		if t.Metrics != nil {
			if ok {
				t.Metrics.fps.WithLabelValues(t.Stream).Set(fps)
				t.Metrics.speed.WithLabelValues(t.Stream).Set(speed)
			}
			if known {
				t.Metrics.lag.WithLabelValues(t.Stream).Set(lag.Seconds())
			}
			b := 0.0
			if behind {
				b = 1
			}
			t.Metrics.behind.WithLabelValues(t.Stream).Set(b)
		}
	})
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("read ffmpeg progress: %w", err)
	}
	return nil
}

// lag returns the media time between the last video written to ffmpeg and
// the last output of the slowest rendition; known is false until every
// rendition has produced a frame.
func (g *generation) lag() (time.Duration, bool) {
	if g.firstWrite.Load() == 0 {
		return 0, false
	}
	slowest := int64(math.MaxInt64)
	for i := range g.outDTS {
		if !g.outSeen[i].Load() {
			return 0, false
		}
		slowest = min(slowest, g.outDTS[i].Load())
	}
	ticks := max(g.inDTS.Load()-slowest, 0)
	return time.Duration(ticks) * time.Second / 90000, true
}

// watch kills a run that stopped producing output while input kept coming:
// nothing out for StallTimeout, and input written or offered for at least
// half of that after the last output.
func (g *generation) watch(ctx context.Context) error {
	t := g.t
	tick := time.NewTicker(max(min(time.Second, t.StallTimeout/4), 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		first := g.firstWrite.Load()
		if first == 0 {
			continue // nothing fed yet: ffmpeg cannot be blamed
		}
		lastOut := max(g.lastOut.Load(), first)
		now := t.now().UnixNano()
		silent := time.Duration(now - lastOut)
		fedAfter := time.Duration(t.lastFeed.Load() - lastOut)
		if silent >= t.StallTimeout && fedAfter >= t.StallTimeout/2 {
			return fmt.Errorf("%w: no output for %v while input arrived", ErrStalled, silent.Round(time.Millisecond))
		}
	}
}

func loadFloat(v *atomic.Uint64) float64 { return math.Float64frombits(v.Load()) }

func storeFloat(v *atomic.Uint64, f float64) { v.Store(math.Float64bits(f)) }
