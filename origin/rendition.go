package origin

import (
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/streamgrid/streamgrid/internal/media"
	"github.com/streamgrid/streamgrid/internal/transcode"
)

// Transcoded streams.
//
// A stream a ladder matches keeps its source instance set (instances with
// rend 0: the passthrough rendition, and the one whose numbering is
// persisted) and gets one more instance set per ladder rendition, fed by one
// transcode.Transcoder. Each rendition instance uses the same muxer settings
// and is numbered onto the source's media sequence: the transcoder starts at
// a keyframe where the source muxer starts a segment, its keyframes follow
// the source GOP (measured from the first two keyframes), so gohlslib cuts
// the renditions at the same timestamps as the source, and a rendition
// instance's offset puts its first segment on the number of the source
// segment that starts at the same timestamp. Its media playlists are served
// as r<name>_<gohlslib name>; index.m3u8 is a master playlist listing every
// rendition.

const (
	// tcQueueSize bounds the transcoded output waiting to be packaged.
	tcQueueSize = 1024
	// maxCuts is how many source segment starts are remembered for
	// numbering rendition instances.
	maxCuts = 64
)

// tcState is where a stream's transcoder is.
type tcState int

const (
	tcIdle      tcState = iota // no source keyframe seen yet
	tcMeasuring                // measuring the source GOP between two keyframes
	tcWaitCut                  // GOP known; waiting for a keyframe that starts a source segment
	tcRunning                  // transcoder running and fed
	tcFailed                   // it could not start; the stream stays passthrough
)

// transcodeRun is a transcoded stream's transcoder and rendition sets
// (see the comment above). Only the goroutine holding procMu touches it,
// except where noted.
//
// Invariants:
//   - For a passthrough stream (stream.plan nil) everything here stays empty.
//   - tc runs only in tcRunning; tcPtr publishes it to status readers.
//   - tcOut holds the transcoder's output for the run goroutine: bounded,
//     and a rendition's video resumes at its next IDR after a drop; restart
//     markers are never dropped. Outputs of a transcoder already stopped
//     are ignored (tcPacket.tc).
//   - tcSrc is written under mu (the master playlist reads it).
//   - cuts are the source segment starts, newest last, at most maxCuts.
type transcodeRun struct {
	rends        []*rendState
	tc           *transcode.Transcoder
	tcPtr        atomic.Pointer[transcode.Transcoder]
	tcOut        *media.Queue[*tcPacket]
	tcState      tcState
	tcSrc        transcode.SourceInfo
	tcVideo      int // source track fed to the transcoder; -1 until known
	tcAudioTrack int // -1: none
	gopStart     int64
	gopDur       int64
	gopFrames    int
	cuts         []segCut
	srcPTS       int64
	srcNTP       time.Time
	srcClock     bool
}

// rendState is one transcoded rendition's instance set.
type rendState struct {
	name   string
	prefix string    // "r<name>_": file-name prefix of its media playlists
	cur    *instance // being fed; run goroutine

	// Guarded by s.mu: what retired instances used (see stream.baseNext).
	baseNext, baseDisc uint64
	visible            bool
}

// segCut is where the source muxer started a segment: the 90 kHz PTS of its
// keyframe, the segment's local id and the wall-clock time the muxer got
// with the keyframe (the segment's EXT-X-PROGRAM-DATE-TIME).
type segCut struct {
	pts, id int64
	ntp     time.Time
}

type tcKind int

const (
	tcVideo tcKind = iota
	tcAudio
	tcRestart
)

// tcPacket is one output of the transcoder, handed to the run goroutine.
type tcPacket struct {
	tc      *transcode.Transcoder
	kind    tcKind
	rend    int
	pts     int64
	au      [][]byte
	flags   media.Flags // FlagKeyframe: video that starts an IDR
	attempt int
	err     error
}

// initRenditions prepares the rendition sets after the claim; they continue
// the numbering read from the registry.
func (s *stream) initRenditions() {
	if s.plan == nil {
		return
	}
	s.tcOut = media.NewQueue[*tcPacket](tcQueueSize)
	s.mu.Lock()
	for _, r := range s.plan.rule.Ladder.Renditions {
		s.rends = append(s.rends, &rendState{name: r.Name, prefix: "r" + r.Name + "_",
			baseNext: s.baseNext, baseDisc: s.baseDisc, visible: s.visible})
	}
	s.mu.Unlock()
}

// feedTranscoder runs after p was packaged by the source instance: it tracks
// the source's segment starts and GOP, starts the transcoder at a segment
// start and feeds it.
func (s *stream) feedTranscoder(p *media.Packet) {
	if s.plan == nil || s.cur == nil || s.tcState == tcFailed {
		return
	}
	tw := s.cur.writers[p.Track]
	if tw == nil {
		return
	}
	pts := rescale(p.PTS, tw.srcRate, 90000)
	if p.Codec.IsVideo() {
		if s.tcVideo >= 0 && int(p.Track) != s.tcVideo {
			return
		}
		s.tcVideo = int(p.Track)
		s.srcPTS, s.srcNTP, s.srcClock = pts, s.packetTime(p, tw.srcRate), true
		cut := false
		if p.Keyframe() {
			cut = s.noteKeyframe(pts, s.srcNTP)
		}
		s.advanceTranscoder(p, pts, cut)
		if s.tcState != tcRunning {
			return
		}
		var au h264.AVCC
		if err := au.Unmarshal(p.Payload); err != nil {
			return // the source muxer counted it already
		}
		dts := rescale(p.DTS, tw.srcRate, 90000)
		_ = s.tc.WriteVideo(pts, dts, au, p.Keyframe()) // full queue: counted by the transcoder
		return
	}
	if s.tcState != tcRunning || int(p.Track) != s.tcAudioTrack {
		return
	}
	_ = s.tc.WriteAudio(pts, [][]byte{p.Payload})
}

// noteKeyframe records where gohlslib starts segments in the source muxer
// (at a keyframe at least SegmentDuration after the previous start); true
// when pts starts one.
func (s *stream) noteKeyframe(pts int64, ntp time.Time) bool {
	minDur := int64(s.hls.SegmentDuration * 90000 / time.Second)
	if n := len(s.cuts); n > 0 && pts-s.cuts[n-1].pts < minDur {
		return false
	}
	id := s.cur.firstID
	if n := len(s.cuts); n > 0 {
		id = s.cuts[n-1].id + 1
	}
	s.cuts = append(s.cuts, segCut{pts: pts, id: id, ntp: ntp})
	if len(s.cuts) > maxCuts {
		s.cuts = s.cuts[len(s.cuts)-maxCuts:]
	}
	return true
}

// advanceTranscoder moves the start-up state machine on one source video
// access unit.
func (s *stream) advanceTranscoder(p *media.Packet, pts int64, cut bool) {
	switch s.tcState {
	case tcIdle:
		if p.Keyframe() {
			s.gopStart, s.gopFrames, s.tcState = pts, 1, tcMeasuring
		}
	case tcMeasuring:
		if !p.Keyframe() {
			s.gopFrames++
			return
		}
		s.gopDur = pts - s.gopStart
		s.tcState = tcWaitCut
		fallthrough
	case tcWaitCut:
		if cut {
			s.startTranscoder()
		}
	}
}

// startTranscoder starts the stream's transcoder; on failure the stream
// stays passthrough-only (logged once).
func (s *stream) startTranscoder() {
	info := s.info.Load()
	src := transcode.SourceInfo{GOPFrames: s.gopFrames}
	s.tcAudioTrack = -1
	for _, ti := range info.Tracks {
		tw := s.cur.writers[ti.ID]
		if tw == nil {
			continue
		}
		switch {
		case int(ti.ID) == s.tcVideo:
			src.Codec = ti.Codec
			if err := src.ParseSPS(ti.SPS); err != nil {
				s.log.Debug("source SPS not parsed; ffmpeg derives the sizes", "err", err)
			}
		case s.tcAudioTrack < 0 && ti.Codec == media.CodecAAC:
			if c, ok := tw.track.Codec.(*codecs.MPEG4Audio); ok {
				cfg := c.Config
				src.AudioCodec, src.AudioConfig, s.tcAudioTrack = media.CodecAAC, &cfg, int(ti.ID)
			}
		case s.tcAudioTrack < 0 && ti.Codec == media.CodecOpus:
			src.AudioCodec, src.AudioChannels, s.tcAudioTrack = media.CodecOpus, max(ti.Channels, 0), int(ti.ID)
		}
	}
	if src.FPS == 0 && s.gopDur > 0 {
		src.FPS = int(math.Round(float64(s.gopFrames) * 90000 / float64(s.gopDur)))
	}
	tc := &transcode.Transcoder{
		FFmpeg:  s.o.Transcode.FFmpeg,
		Ladder:  s.plan.rule.Ladder,
		Encoder: s.plan.encoder,
		Source:  src,
		Log:     s.log,
		Metrics: s.o.tr.metrics,
		Stream:  s.path,
	}
	tc.OnVideo = func(r int, pts, _ int64, au [][]byte) { s.transcodedVideo(tc, r, pts, au) }
	tc.OnAudio = func(r int, pts int64, aus [][]byte) {
		s.transcoded(&tcPacket{tc: tc, kind: tcAudio, rend: r, pts: pts, au: aus}, media.Tag{Track: uint8(r)})
	}
	tc.OnRestart = func(attempt int, err error) { s.transcoderRestarted(tc, attempt, err) }
	if err := tc.Start(); err != nil {
		s.tcState = tcFailed
		s.log.Warn("transcoder did not start; serving the source only", "err", err)
		return
	}
	s.tc = tc
	s.tcPtr.Store(tc)
	s.mu.Lock() // the master playlist reads tcSrc
	s.tcSrc = src
	s.mu.Unlock()
	s.tcState = tcRunning
	s.log.Info("transcoder started", "encoder", string(s.plan.encoder), "renditions", len(s.rends),
		"source", fmt.Sprintf("%dx%d@%d", src.Width, src.Height, src.FPS), "gop_frames", src.GOPFrames,
		"keyframe_gap", s.plan.rule.Ladder.KeyframeGap(src))
}

// transcodedVideo queues a rendition's access unit, detecting once
// whether it starts an IDR (ffmpeg's output carries no flags); after a
// drop the rendition waits for its next IDR.
func (s *stream) transcodedVideo(tc *transcode.Transcoder, r int, pts int64, au [][]byte) {
	var flags media.Flags
	if media.IsRandomAccess(s.renditionCodec(r), au) {
		flags = media.FlagKeyframe
	}
	s.transcoded(&tcPacket{tc: tc, kind: tcVideo, rend: r, pts: pts, au: au, flags: flags},
		media.Tag{Track: uint8(r), Video: true, Flags: flags})
}

// transcoded queues an output without blocking; a refused one is counted.
func (s *stream) transcoded(p *tcPacket, tag media.Tag) {
	if s.tcOut.Push(p, tag) != media.DropNone {
		s.drop()
	}
}

// transcoderRestarted queues the restart marker ahead of the new run's
// output; a marker is never dropped.
func (s *stream) transcoderRestarted(tc *transcode.Transcoder, attempt int, err error) {
	s.tcOut.Force(&tcPacket{tc: tc, kind: tcRestart, attempt: attempt, err: err})
}

// renditionCodec is the video codec of rendition r's output.
func (s *stream) renditionCodec(r int) media.Codec {
	if s.plan.rule.Ladder.Renditions[r].Codec == transcode.CodecH265 {
		return media.CodecH265
	}
	return media.CodecH264
}

// transcodedReady receives when transcoder output waits; nil (never) for a
// passthrough stream.
func (s *stream) transcodedReady() <-chan struct{} {
	if s.tcOut == nil {
		return nil
	}
	return s.tcOut.Ready()
}

// handleTranscodedQueue packages every queued transcoder output (run goroutine).
func (s *stream) handleTranscodedQueue() {
	for {
		p, ok := s.tcOut.Pop()
		if !ok {
			return
		}
		s.handleTranscoded(p)
	}
}

// handleTranscoded packages one transcoder output (run goroutine).
func (s *stream) handleTranscoded(p *tcPacket) {
	if p.tc != s.tc || s.tc == nil {
		return // from a transcoder already stopped
	}
	switch p.kind {
	case tcRestart:
		s.log.Info("transcoder restarted; discontinuity in every rendition", "attempt", p.attempt, "err", p.err)
		s.retireRenditions()
		return
	case tcAudio:
		if i := s.rends[p.rend].cur; i != nil {
			s.checkRenditionWrite(p.rend, i.writeAudioAUs(p.pts, p.au, s.ntpFor(p.pts)))
		}
		return
	}
	rs := s.rends[p.rend]
	if rs.cur == nil {
		if p.flags&media.FlagKeyframe == 0 {
			return // gohlslib would drop it too
		}
		rs.cur = s.newRenditionInstance(p.rend, p.pts, p.au)
		if rs.cur == nil {
			return
		}
	}
	s.checkRenditionWrite(p.rend, rs.cur.writeVideoAU(p.pts, p.au, s.ntpFor(p.pts)))
}

// checkRenditionWrite counts a rendition write error and re-creates a muxer
// that keeps refusing input (at the next IDR).
func (s *stream) checkRenditionWrite(r int, err error) {
	i := s.rends[r].cur
	if i == nil {
		return
	}
	if err == nil {
		i.errors = 0
		i.written++
		return
	}
	s.writeErrs.Add(1)
	s.o.m.writeErrors.Inc()
	i.errors++
	if i.errors >= maxConsecutiveWriteErrors {
		s.log.Warn("HLS muxer of a rendition keeps refusing input; re-creating it", "rendition", s.rends[r].name, "err", err)
		s.retire(i)
		s.rends[r].cur = nil
	}
}

// ntpFor maps a 90 kHz timestamp onto the source's wall clock: from the
// source segment start at or before it, so that a rendition segment gets
// exactly the EXT-X-PROGRAM-DATE-TIME of the source segment it matches.
func (s *stream) ntpFor(pts int64) time.Time {
	for k := len(s.cuts) - 1; k >= 0; k-- {
		if c := s.cuts[k]; c.pts <= pts {
			return c.ntp.Add(time.Duration(pts-c.pts) * time.Second / 90000)
		}
	}
	if !s.srcClock {
		return time.Now()
	}
	return s.srcNTP.Add(time.Duration(pts-s.srcPTS) * time.Second / 90000)
}

// newRenditionInstance creates the muxer of rendition r, starting with the
// IDR at pts, numbered onto the source segment that starts there.
func (s *stream) newRenditionInstance(r int, pts int64, au [][]byte) *instance {
	out := s.plan.rule.Ladder.Outputs(s.tcSrc)[r]
	vps, sps, pps := media.ParameterSets(out.Codec, au)
	vt := &gohlslib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}, ClockRate: 90000}
	if out.Codec == media.CodecH265 {
		vt.Codec = &codecs.H265{VPS: vps, SPS: sps, PPS: pps}
	}
	tracks := []*gohlslib.Track{vt}
	variant := s.baseVariant
	at := s.renditionAudioTrack()
	if at != nil {
		tracks = append(tracks, at)
	}
	if variant == gohlslib.MuxerVariantMPEGTS && (out.Codec == media.CodecH265 || at != nil && at.ClockRate == 48000 && isOpus(at)) {
		variant = gohlslib.MuxerVariantFMP4
	}
	firstID := firstSegmentID(variant)

	rs := s.rends[r]
	s.mu.Lock()
	offset := max(s.sourceMSNLocked(pts)-firstID, int64(rs.baseNext)-firstID, 0)
	i := &instance{
		s:          s,
		variant:    variant,
		rend:       r + 1,
		vtrack:     vt,
		vcodec:     out.Codec,
		atrack:     at,
		generation: s.generation.Load(),
		firstID:    firstID,
		offset:     offset,
	}
	if rs.visible {
		i.disc, i.discStart = rs.baseDisc+1, true
	}
	if s.cur != nil && s.cur.disc > i.disc {
		i.disc, i.discStart = s.cur.disc, s.cur.discStart
	}
	s.mu.Unlock()
	if err := i.start(tracks); err != nil {
		s.log.Warn("cannot package rendition", "rendition", rs.name, "err", err)
		return nil
	}
	s.addInstance(i)
	s.log.Debug("rendition muxer started", "rendition", rs.name, "first_msn", offset+firstID, "discontinuity", i.disc)
	return i
}

// renditionAudioTrack is the audio track of the renditions: the ladder's
// audio output, when the transcoder carries audio.
func (s *stream) renditionAudioTrack() *gohlslib.Track {
	if !s.tc.Stats().Audio {
		return nil
	}
	switch acodec, aconf := s.plan.rule.Ladder.AudioOutput(s.tcSrc); acodec {
	case media.CodecAAC:
		if aconf != nil && aconf.SampleRate > 0 {
			return &gohlslib.Track{Codec: &codecs.MPEG4Audio{Config: *aconf}, ClockRate: aconf.SampleRate}
		}
	case media.CodecOpus:
		ch := s.tcSrc.AudioChannels
		if ch <= 0 {
			ch = 2
		}
		return &gohlslib.Track{Codec: &codecs.Opus{ChannelCount: ch}, ClockRate: 48000}
	}
	return nil
}

// sourceMSNLocked is the global number of the source segment starting at
// pts, or of the one after the last source segment start before it; the
// source's next free number when no start is known.
func (s *stream) sourceMSNLocked(pts int64) int64 {
	if s.cur != nil {
		for k := len(s.cuts) - 1; k >= 0; k-- {
			c := s.cuts[k]
			if c.pts == pts {
				return c.id + s.cur.offset
			}
			if c.pts < pts {
				return c.id + 1 + s.cur.offset
			}
		}
	}
	return int64(s.baseNext)
}

func isOpus(t *gohlslib.Track) bool {
	_, ok := t.Codec.(*codecs.Opus)
	return ok
}

// retireRenditions retires every rendition's current instance (the next
// output starts new ones, after a discontinuity).
func (s *stream) retireRenditions() {
	for _, rs := range s.rends {
		if rs.cur != nil {
			s.retire(rs.cur)
			rs.cur = nil
		}
	}
}

// stopTranscoder stops the transcoder and retires the rendition instances;
// the next source instance starts a new transcoder.
func (s *stream) stopTranscoder() {
	if s.tc != nil {
		s.tc.Close()
		s.tc = nil
		s.tcPtr.Store(nil)
	}
	s.tcState, s.tcVideo, s.cuts = tcIdle, -1, nil
	s.retireRenditions()
}

// writeVideoAU feeds one access unit of a rendition instance.
func (i *instance) writeVideoAU(pts int64, au [][]byte, ntp time.Time) error {
	i.held.add(time.Now(), auBytes(au))
	if i.vcodec == media.CodecH265 {
		return i.muxer.WriteH265(i.vtrack, ntp, pts, au)
	}
	return i.muxer.WriteH264(i.vtrack, ntp, pts, au)
}

// writeAudioAUs feeds audio (90 kHz pts) to a rendition instance.
func (i *instance) writeAudioAUs(pts int64, aus [][]byte, ntp time.Time) error {
	if i.atrack == nil {
		return nil
	}
	i.held.add(time.Now(), auBytes(aus))
	pts = rescale(pts, 90000, i.atrack.ClockRate)
	if isOpus(i.atrack) {
		return i.muxer.WriteOpus(i.atrack, ntp, pts, aus)
	}
	return i.muxer.WriteMPEG4Audio(i.atrack, ntp, pts, aus)
}

// auBytes is the size of an access unit's (or audio frames') payloads.
func auBytes(au [][]byte) int {
	n := 0
	for _, b := range au {
		n += len(b)
	}
	return n
}

// resolveName maps a media playlist name to its rendition set: "r<name>_x"
// is rendition <name>'s x; anything else belongs to the source set.
func (s *stream) resolveName(name string) (int, string, string) {
	best := -1
	for k, rs := range s.rends {
		if strings.HasPrefix(name, rs.prefix) && (best < 0 || len(rs.prefix) > len(s.rends[best].prefix)) {
			best = k
		}
	}
	if best < 0 {
		return 0, name, ""
	}
	return best + 1, strings.TrimPrefix(name, s.rends[best].prefix), s.rends[best].prefix
}
