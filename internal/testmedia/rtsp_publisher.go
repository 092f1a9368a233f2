package testmedia

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"
)

const (
	// How long a packet waits for room in a full RTSP write queue before it is
	// dropped, and how often it retries meanwhile.
	queueFullTimeout = time.Second
	queueFullRetry   = 2 * time.Millisecond
)

// rtspPublisher publishes over RTSP (ANNOUNCE / SETUP / RECORD) with
// gortsplib's client.
type rtspPublisher struct {
	cfg    publisherConfig
	client *gortsplib.Client
	tracks *rtpTracks

	waitDone  chan struct{} // closed when the client has ended
	waitErr   error
	closeOnce sync.Once
}

func dialRTSP(ctx context.Context, cfg publisherConfig) (*rtspPublisher, error) {
	tracks, err := newRTPTracks(cfg.clip, cfg.audio)
	if err != nil {
		return nil, err
	}
	p := &rtspPublisher{cfg: cfg, tracks: tracks}
	desc := tracks.session()
	u, err := base.ParseURL(cfg.url.String())
	if err != nil {
		return nil, fmt.Errorf("parse RTSP URL: %w", err)
	}
	protocol := gortsplib.ProtocolTCP
	if cfg.transport == "udp" {
		protocol = gortsplib.ProtocolUDP
	}
	dialer := &net.Dialer{}
	p.client = &gortsplib.Client{
		Scheme:         u.Scheme,
		Host:           u.Host,
		Protocol:       &protocol,
		ReadTimeout:    cfg.timeout,
		WriteTimeout:   cfg.timeout,
		WriteQueueSize: cfg.writeQueueSize,
		DialContext: func(_ context.Context, network, address string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
		OnPacketsLost: func(lost uint64) {
			cfg.log.Debug("RTSP packets lost", "lost", lost)
		},
		OnDecodeError: func(err error) {
			cfg.log.Debug("RTSP decode error", "err", err)
		},
	}
	if err := p.client.Start(); err != nil {
		return nil, fmt.Errorf("start RTSP client: %w", err)
	}
	// Abort the handshake when ctx ends (the client's own timeouts bound it too).
	stop := context.AfterFunc(ctx, p.client.Close)
	err = p.record(u, desc)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		p.client.Close()
		return nil, err
	}

	p.waitDone = make(chan struct{})
	go func() {
		p.waitErr = p.client.Wait()
		close(p.waitDone)
	}()
	return p, nil
}

func (p *rtspPublisher) record(u *base.URL, desc *description.Session) error {
	if _, err := p.client.Announce(u, desc); err != nil {
		return fmt.Errorf("ANNOUNCE: %w", err)
	}
	if err := p.client.SetupAll(u, desc.Medias); err != nil {
		return fmt.Errorf("SETUP: %w", err)
	}
	if _, err := p.client.Record(); err != nil {
		return fmt.Errorf("RECORD: %w", err)
	}
	return nil
}

func (p *rtspPublisher) writeVideo(pts, _ time.Duration, ntp time.Time, au [][]byte) error {
	pkts, err := p.tracks.videoPackets(au, pts)
	if err != nil {
		return err
	}
	return p.writePackets(p.tracks.video, pkts, ntp)
}

func (p *rtspPublisher) writeAudio(pts time.Duration, ntp time.Time, frame []byte) error {
	if p.tracks.audio == nil {
		return nil
	}
	pkts, err := p.tracks.audioPackets(frame, pts)
	if err != nil {
		return err
	}
	return p.writePackets(p.tracks.audio, pkts, ntp)
}

// writePackets queues the packets of one frame. A full queue is waited out for
// up to queueFullTimeout per packet, then the packet is dropped and counted:
// a synthetic camera must not stall its clock on a slow server for long.
func (p *rtspPublisher) writePackets(medi *description.Media, pkts []*rtp.Packet, ntp time.Time) error {
	for _, pkt := range pkts {
		var deadline time.Time
		for {
			err := p.client.WritePacketRTPWithNTP(medi, pkt, ntp)
			if err == nil {
				break
			}
			if !errors.As(err, &liberrors.ErrClientWriteQueueFull{}) {
				return fmt.Errorf("write RTP: %w", err)
			}
			p.cfg.onQueueFull()
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(queueFullTimeout)
			} else if now.After(deadline) {
				p.cfg.onDrop()
				break
			}
			select {
			case <-time.After(queueFullRetry):
			case <-p.waitDone:
				return fmt.Errorf("write RTP: %w", p.waitErr)
			}
		}
	}
	return nil
}

func (p *rtspPublisher) failed() <-chan struct{} {
	return p.waitDone
}

func (p *rtspPublisher) err() error {
	select {
	case <-p.waitDone:
		return fmt.Errorf("RTSP session ended: %w", p.waitErr)
	default:
		return nil
	}
}

// finishGrace is how long finish lets the client's write queue drain before
// the teardown: gortsplib's Close drops what is still queued, and one frame
// interval is not always enough on a loaded machine.
const finishGrace = 300 * time.Millisecond

// finish tears the session down after the write queue had time to drain.
func (p *rtspPublisher) finish() {
	select {
	case <-time.After(finishGrace):
	case <-p.waitDone: // the session ended by itself
	}
	p.close()
}

func (p *rtspPublisher) close() {
	p.closeOnce.Do(func() {
		p.client.Close()
		<-p.waitDone
	})
}
