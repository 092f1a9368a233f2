package bus

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultMaxPayload is the NATS max payload the cluster runs with: large
// enough for most keyframes in one message; bigger access units are chunked.
const DefaultMaxPayload = 4 << 20

// Server is an embedded NATS server node with JetStream, optionally clustered
// through routes. Fill in the fields, then Start.
type Server struct {
	// Name is the unique server name (required for JetStream clustering). Default "streamgrid".
	Name string
	// Host and Port of the client listener. Port -1 picks a random port; 0 means 4222.
	Host string
	Port int
	// ClusterName, ClusterHost, ClusterPort enable routes when ClusterPort != 0 (-1 = random).
	ClusterName string
	ClusterHost string
	ClusterPort int
	// ClusterAdvertise is the address announced to other nodes (host:port). Default: none.
	ClusterAdvertise string
	// Routes are the other nodes' cluster URLs, nats://host:port.
	Routes []string
	// StoreDir holds JetStream data. Default: a new temporary directory, removed on Close.
	StoreDir string
	// MaxPayload is the largest message. Default DefaultMaxPayload.
	MaxPayload int32
	// JetStreamMaxMemory and JetStreamMaxStore bound JetStream. Default 256 MiB and 1 GiB.
	JetStreamMaxMemory int64
	JetStreamMaxStore  int64
	// Users are the role users clients authenticate as, each limited to its
	// role's subjects (see RolePermissions). Exclusive with User and Token.
	Users Users
	// User and Password, when set, are one user with every permission,
	// required from clients and (without RoutePassword) from routes.
	User     string
	Password string
	// Token, when set, is required from clients (no user then).
	Token string
	// RoutePassword authenticates routes between bus nodes as user "route":
	// required from nodes dialling in, added to Routes URLs that carry no
	// credentials. Required for a clustered server that authenticates clients
	// with Users or Token.
	RoutePassword string
	// TLS, when set, is required from clients (its Certificates identify the
	// server). Routes then use RouteTLS.
	TLS *tls.Config
	// RouteTLS, when set, secures the routes: the same configuration dials
	// and accepts them, so it holds this node's certificate, the CAs that
	// verify the others (RootCAs and ClientCAs) and requires their certificates.
	RouteTLS *tls.Config
	// Log receives the server's notices. Default slog.Default().
	Log *slog.Logger

	ns     *server.Server
	tmpDir string
	// notifier publishes the death notices (gone.go); notifierPass is its
	// password among role users.
	notifier     *nats.Conn
	notifierPass string
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() error {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	opts, err := s.options()
	if err != nil {
		s.cleanup()
		return err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.cleanup()
		return fmt.Errorf("bus: nats server: %s", Redact(err.Error()))
	}
	ns.SetLoggerV2(&natsLogger{log: s.Log.With("component", "nats")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		s.cleanup()
		return errors.New("bus: nats server not ready within 15s (port in use?)")
	}
	if err := s.startNotifier(ns); err != nil {
		// Heartbeats still find a dead node, only later (bus.node_ttl).
		s.Log.Warn("death notices off: dead nodes are found by their heartbeats only", "err", err)
	}
	s.ns = ns
	return nil
}

// options checks the fields and turns them into the NATS server's options,
// creating the temporary store directory when StoreDir is empty (Start
// removes it on failure).
func (s *Server) options() (*server.Options, error) {
	name := s.Name
	if name == "" {
		name = "streamgrid"
	}
	port := s.Port
	if port == 0 {
		port = 4222
	}
	storeDir := s.StoreDir
	if storeDir == "" {
		d, err := os.MkdirTemp("", "streamgrid-nats-")
		if err != nil {
			return nil, fmt.Errorf("bus: store dir: %w", err)
		}
		s.tmpDir, storeDir = d, d
	}
	maxPayload := s.MaxPayload
	if maxPayload == 0 {
		maxPayload = DefaultMaxPayload
	}
	switch {
	case s.Token != "" && (s.Users.any() || s.User != ""):
		return nil, errors.New("bus: a token and users cannot be combined (NATS allows one or the other)")
	case s.User != "" && s.Users.any():
		return nil, errors.New("bus: the single user (bus.user) and role users (bus.server.users) cannot be combined")
	}
	opts := &server.Options{
		ServerName:         name,
		Host:               s.Host,
		Port:               port,
		JetStream:          true,
		StoreDir:           storeDir,
		JetStreamMaxMemory: cmp.Or(s.JetStreamMaxMemory, 256<<20),
		JetStreamMaxStore:  cmp.Or(s.JetStreamMaxStore, 1<<30),
		MaxPayload:         maxPayload,
		MaxPending:         64 << 20,
		NoSigs:             true,
		Username:           s.User,
		Password:           s.Password,
		Authorization:      s.Token,
		Users:              s.Users.serverUsers(),
	}
	if u := s.notifierUser(); u != nil {
		opts.Users = append(opts.Users, u)
	}
	if s.TLS != nil {
		opts.TLSConfig = s.TLS
		opts.TLS = true
		opts.TLSVerify = s.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.TLSTimeout = 5
	}
	if s.ClusterPort != 0 {
		if err := s.clusterOptions(opts); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// clusterOptions fills in the routes to the other bus nodes.
func (s *Server) clusterOptions(opts *server.Options) error {
	if len(s.Routes) == 0 {
		return errors.New("bus: a clustered server needs routes (list every bus node, this one included)")
	}
	routeUser, routePass := UserRoute, s.RoutePassword
	if routePass == "" {
		routeUser, routePass = s.User, s.Password
	}
	auth := s.Users.any() || s.User != "" || s.Token != ""
	if auth && routePass == "" {
		return errors.New("bus: a clustered server that authenticates clients needs a route password (bus.server.cluster_password)")
	}
	opts.Cluster = server.ClusterOpts{
		Name:      cmp.Or(s.ClusterName, "streamgrid"),
		Host:      s.ClusterHost,
		Port:      s.ClusterPort,
		Advertise: s.ClusterAdvertise,
		Username:  routeUser,
		Password:  routePass,
	}
	if s.RouteTLS != nil {
		opts.Cluster.TLSConfig = s.RouteTLS
		opts.Cluster.TLSTimeout = 5
	}
	routes := make([]string, 0, len(s.Routes))
	for _, r := range s.Routes {
		u, err := withUserinfo(strings.TrimSpace(r), routeUser, routePass)
		if err != nil {
			return fmt.Errorf("bus: %w", err)
		}
		routes = append(routes, u)
	}
	opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
	return nil
}

// ClientURL is the URL clients use to reach this node.
func (s *Server) ClientURL() string {
	addr, ok := s.ns.Addr().(*net.TCPAddr)
	if !ok {
		return s.ns.ClientURL()
	}
	host := s.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// ClusterURL is the route URL other nodes use to reach this node ("" without clustering).
func (s *Server) ClusterURL() string {
	if s.ns == nil || s.ClusterPort == 0 {
		return ""
	}
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	host := s.ClusterHost
	if host == "" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// Interest returns how many subscriptions match subject in the clients'
// account of this server, other nodes' interest through routes included. It
// is what a Hub asks before it puts an in-process packet on NATS.
func (s *Server) Interest(subject string) int {
	ns := s.ns
	if ns == nil {
		return 0
	}
	return ns.GlobalAccount().Interest(subject)
}

// Subscriptions returns how many subscriptions the clients' account of this
// server holds in all; a Hub asks Interest again only when it moves.
func (s *Server) Subscriptions() int {
	ns := s.ns
	if ns == nil {
		return 0
	}
	return ns.GlobalAccount().TotalSubs()
}

// NATS exposes the underlying server (for health checks and tests).
func (s *Server) NATS() *server.Server { return s.ns }

// Close shuts the server down and waits. Calling it twice is harmless.
func (s *Server) Close() {
	if s.notifier != nil {
		s.notifier.Close()
		s.notifier = nil
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
		s.tmpDir = ""
	}
}

// natsLogger adapts slog to the nats-server logger interface.
type natsLogger struct{ log *slog.Logger }

// Every line goes through Redact: the server names route URLs, which carry
// the route password.
func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(Redact(fmt.Sprintf(format, v...))) }
func (l *natsLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Plaintext passwords detected") {
		// The passwords come from this node's configuration, in memory
		// either way: hashing them here would protect nothing. A bcrypt hash
		// in bus.server.users is accepted and silences nothing either.
		l.log.Debug(msg)
		return
	}
	l.log.Warn(Redact(msg))
}
func (l *natsLogger) Fatalf(format string, v ...any) { l.log.Error(Redact(fmt.Sprintf(format, v...))) }
func (l *natsLogger) Errorf(format string, v ...any) { l.log.Error(Redact(fmt.Sprintf(format, v...))) }
func (l *natsLogger) Debugf(format string, v ...any) {}
func (l *natsLogger) Tracef(format string, v ...any) {}
