package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnOptions say how a role reaches the bus.
type ConnOptions struct {
	// URLs of NATS servers (any node of the cluster will do). Required.
	URLs []string
	// Name identifies the connection in the server's monitoring.
	Name string
	// User/Password or Token, or CredsFile for NATS decentralised auth.
	User      string
	Password  string
	Token     string
	CredsFile string
	// TLSCA, when set, is the CA file that verifies the servers'
	// certificates; the connection then uses TLS.
	TLSCA string
	// InboxPrefix replaces "_INBOX" in reply subjects (see InboxPrefix).
	// Default: NATS's "_INBOX".
	InboxPrefix string
	// ConnectTimeout is how long Connect keeps retrying the first
	// connection while no server answers (the bus starting in the same
	// deployment). 0 tries once. A refused authentication fails at once.
	ConnectTimeout time.Duration
	// Dialer, when set, opens the TCP connections (the control-plane
	// simulation keeps them, to cut them the way a killed process does).
	// Default: NATS's own.
	Dialer nats.CustomDialer
	// Log receives connection events. Default slog.Default().
	Log *slog.Logger
}

// Connect dials the bus, retrying for up to o.ConnectTimeout. Once up, the
// connection reconnects forever; events are logged. URLs in errors and logs
// carry no credentials.
func Connect(o ConnOptions) (*nats.Conn, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 500*time.Millisecond),
		nats.Timeout(5 * time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus reconnected", "server", Redact(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("bus async error", "subject", subj, "err", err)
		}),
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	// The connections are followed (gone.go): a node's liveness ends with
	// the connection it was drawn on.
	track := &connTrack{}
	var dialer nats.CustomDialer = &net.Dialer{Timeout: 5 * time.Second}
	if o.Dialer != nil {
		dialer = o.Dialer
	}
	opts = append(opts, nats.SetCustomDialer(&trackingDialer{next: dialer, track: track}),
		nats.ClosedHandler(func(nc *nats.Conn) { tracks.Delete(nc) }))
	urls := strings.Join(o.URLs, ",")
	deadline := time.Now().Add(o.ConnectTimeout)
	wait := 250 * time.Millisecond
	for {
		nc, err := nats.Connect(urls, opts...)
		if err == nil {
			tracks.Store(nc, track)
			return nc, nil
		}
		err = fmt.Errorf("bus: connect %s: %w", Redact(urls), err)
		if authFailed(err) || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		log.Warn("bus not reachable yet, retrying", "in", wait, "err", err)
		time.Sleep(wait + rand.N(wait/4))
		wait = min(2*wait, 5*time.Second)
	}
}

// authFailed reports a refusal that retrying will not change.
func authFailed(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}
