package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/streamgrid/streamgrid/internal/sleep"
)

// errRedirectElsewhere refuses a camera's redirect to another host: the
// client would send the camera's credentials there.
var errRedirectElsewhere = errors.New("the camera redirected to another host; refused (pulls stay on the configured host)")

// pinnedDial dials only the configured camera's host (any port): gortsplib
// follows DESCRIBE redirects and keeps the URL's credentials.
func (p *puller) pinnedDial(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil || !strings.EqualFold(host, p.u.Hostname()) {
		p.e.m.rejected.WithLabelValues(ProtocolPull, rejectRedirect).Inc()
		return nil, errRedirectElsewhere
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// redactURL returns u as a string without its user info.
func redactURL(u *base.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// redactedError hides a URL's credentials from an error's text while
// keeping the error chain.
type redactedError struct {
	msg string
	err error
}

func (r *redactedError) Error() string { return r.msg }

func (r *redactedError) Unwrap() error { return r.err }

// redact removes u's credentials from err's text.
func redact(err error, u *base.URL) error {
	if err == nil || u.User == nil {
		return err
	}
	msg := err.Error()
	if pass, ok := u.User.Password(); ok && pass != "" {
		msg = strings.ReplaceAll(msg, pass, "xxxxx")
	}
	if name := u.User.Username(); name != "" {
		msg = strings.ReplaceAll(msg, name+":", "xxxxx:")
		msg = strings.ReplaceAll(msg, name+"@", "xxxxx@")
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

func (p *puller) setPulling(v bool) {
	p.mu.Lock()
	p.pulling = v
	p.mu.Unlock()
}

// pullLoop pulls the camera until ctx ends, reconnecting with backoff.
func (p *puller) pullLoop(ctx context.Context) {
	retry := newPullBackoff(p.src.BackoffMin, p.src.BackoffMax)
	lastMsg := ""
	for {
		began := time.Now()
		played, err := p.pullOnce(ctx)
		p.setPulling(false)
		if ctx.Err() != nil {
			return
		}
		if played && time.Since(began) >= stableSession {
			retry.Reset()
		}
		msg := "camera pull ended"
		if err != nil {
			msg = err.Error()
		}
		p.mu.Lock()
		p.reconnects++
		p.lastErr = msg
		p.mu.Unlock()
		p.mReconnects.Inc()
		// The same failure again (a camera that stays down) is logged at debug level.
		level := slog.LevelWarn
		if msg == lastMsg {
			level = slog.LevelDebug
		}
		lastMsg = msg
		d := max(retry.NextBackOff(), minPullBackoff)
		p.log.Log(ctx, level, "camera pull failed; reconnecting", "err", err, "retry_in", d.Round(time.Millisecond))
		if !sleep.For(ctx, d) {
			return
		}
	}
}

// pullOnce connects to the camera, publishes it until the connection ends
// and reports whether it got to play. Errors carry no credentials.
func (p *puller) pullOnce(ctx context.Context) (played bool, err error) {
	e := p.e
	attempt, kick := context.WithCancel(ctx)
	defer kick()
	c := &gortsplib.Client{
		Scheme:       p.u.Scheme,
		Host:         p.u.Host,
		Protocol:     p.proto,
		ReadTimeout:  e.ReadTimeout,
		WriteTimeout: e.ReadTimeout,
		OnTransportSwitch: func(err error) {
			p.log.Debug("camera transport switched", "err", redact(err, p.u))
		},
		DialContext:   p.pinnedDial,
		OnPacketsLost: func(n uint64) { e.m.packetsLost.WithLabelValues(ProtocolPull).Add(float64(n)) },
		OnDecodeError: func(error) { e.m.decodeErrors.WithLabelValues(ProtocolPull).Inc() },
	}
	if err := c.Start(); err != nil {
		return false, redact(fmt.Errorf("start client: %w", err), p.u)
	}
	stop := context.AfterFunc(attempt, c.Close)
	defer func() {
		stop()
		c.Close()
	}()

	desc, _, err := c.Describe(p.u)
	if err != nil {
		return false, redact(fmt.Errorf("describe: %w", err), p.u)
	}
	tracks, ignored := rtpTracks(desc)
	if len(ignored) > 0 {
		p.log.Debug("ignoring unsupported camera tracks", "codecs", strings.Join(ignored, ","))
	}
	if len(tracks) == 0 {
		return false, errors.New("camera offers no supported track (H264, H265, AAC, Opus)")
	}
	for _, tr := range tracks {
		if _, err := c.Setup(desc.BaseURL, tr.media, 0, 0); err != nil {
			return false, redact(fmt.Errorf("setup: %w", err), p.u)
		}
	}
	s, err := e.openStream(streamRequest{
		path: p.src.Name, protocol: ProtocolPull, remote: p.url,
		tracks: trackInfos(tracks), kick: kick,
	})
	if err != nil {
		return false, fmt.Errorf("publish %s: %w", p.src.Name, err)
	}
	for i, tr := range tracks {
		if err := tr.attach(c, s, i); err != nil {
			s.close(err)
			return false, err
		}
	}
	if _, err := c.Play(nil); err != nil {
		err = redact(fmt.Errorf("play: %w", err), p.u)
		s.close(err)
		return false, err
	}
	p.setPulling(true)
	err = c.Wait()
	if attempt.Err() != nil {
		err = nil // kicked or closing
	} else {
		err = redact(fmt.Errorf("camera connection: %w", err), p.u)
	}
	s.close(err)
	return true, err
}

// stableSession is how long a pull must have played for the backoff to start over.
const stableSession = 5 * time.Second
