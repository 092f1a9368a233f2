package testmedia

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortmplib"
	rtmpcodecs "github.com/bluenviron/gortmplib/pkg/codecs"
)

// rtmpDrainTimeout bounds the wait for the server to hang up after the camera
// has half-closed a finished RTMP session.
const rtmpDrainTimeout = 2 * time.Second

// rtmpPublisher publishes over RTMP with gortmplib's client. Writes are
// synchronous TCP writes bounded by a deadline; the client is never read while
// publishing (gortmplib's reader answers pings by writing, which would race with
// the media writes), so the session is ended by a half-close and a drain.
type rtmpPublisher struct {
	cfg        publisherConfig
	client     *gortmplib.Client
	writer     *gortmplib.Writer
	videoTrack *gortmplib.Track
	audioTrack *gortmplib.Track
	closeOnce  sync.Once
}

func dialRTMP(ctx context.Context, cfg publisherConfig) (*rtmpPublisher, error) {
	p := &rtmpPublisher{cfg: cfg}
	p.client = &gortmplib.Client{
		URL:     rtmpClientURL(cfg.url),
		Publish: true,
	}
	if err := p.client.Initialize(ctx); err != nil {
		return nil, fmt.Errorf("RTMP connect: %w", err)
	}

	p.videoTrack = &gortmplib.Track{Codec: &rtmpcodecs.H264{SPS: cfg.clip.SPS, PPS: cfg.clip.PPS}}
	tracks := []*gortmplib.Track{p.videoTrack}
	if cfg.audio {
		p.audioTrack = &gortmplib.Track{Codec: &rtmpcodecs.MPEG4Audio{Config: cfg.clip.AudioConfig}}
		tracks = append(tracks, p.audioTrack)
	}
	p.writer = &gortmplib.Writer{Conn: p.client, Tracks: tracks}

	// Writes do not watch ctx: close the connection if it ends meanwhile.
	stop := context.AfterFunc(ctx, p.client.Close)
	p.setDeadline()
	err := p.writer.Initialize()
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		p.client.Close()
		return nil, fmt.Errorf("RTMP send track headers: %w", err)
	}
	return p, nil
}

// rtmpClientURL turns rtmp://host/app/stream into gortmplib's
// rtmp://host/app#stream form, so the server sees application "app" and stream
// key "stream" as OBS and ffmpeg send them. A URL that already has a #fragment
// or a single path segment is left alone.
func rtmpClientURL(u *url.URL) *url.URL {
	out := *u
	if out.Fragment != "" {
		return &out
	}
	path := strings.TrimPrefix(out.Path, "/")
	app, key, ok := strings.Cut(path, "/")
	if !ok || app == "" || key == "" {
		return &out
	}
	if out.RawQuery != "" {
		key += "?" + out.RawQuery
	}
	out.Path = "/" + app
	out.RawPath = ""
	out.RawQuery = ""
	out.Fragment = key
	return &out
}

func (p *rtmpPublisher) setDeadline() {
	_ = p.client.NetConn().SetWriteDeadline(time.Now().Add(p.cfg.timeout))
}

func (p *rtmpPublisher) writeVideo(pts, dts time.Duration, _ time.Time, au [][]byte) error {
	p.setDeadline()
	if err := p.writer.WriteH264(p.videoTrack, pts, dts, au); err != nil {
		return fmt.Errorf("RTMP write video: %w", err)
	}
	return nil
}

func (p *rtmpPublisher) writeAudio(pts time.Duration, _ time.Time, frame []byte) error {
	if p.audioTrack == nil {
		return nil
	}
	p.setDeadline()
	if err := p.writer.WriteMPEG4Audio(p.audioTrack, pts, frame); err != nil {
		return fmt.Errorf("RTMP write audio: %w", err)
	}
	return nil
}

// failed returns nil: a dead RTMP connection shows up as a write error.
func (p *rtmpPublisher) failed() <-chan struct{} { return nil }

func (p *rtmpPublisher) err() error { return nil }

// finish half-closes the connection, so the server reads everything sent and
// then EOF, and waits for the server to hang up. Closing at once could reset
// the connection (unread acknowledgements in the receive buffer) and lose the
// tail of the stream.
func (p *rtmpPublisher) finish() {
	nc := p.client.NetConn()
	cw, ok := nc.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	if err := cw.CloseWrite(); err != nil {
		return
	}
	_ = nc.SetReadDeadline(time.Now().Add(rtmpDrainTimeout))
	_, _ = io.Copy(io.Discard, nc)
}

func (p *rtmpPublisher) close() {
	p.closeOnce.Do(p.client.Close)
}
