package bus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The bus's users: one per role, each allowed only the subjects that role
// uses, so a compromised cache cannot write a lease and a compromised edge
// cannot rewrite a stream's playlist state. Admin has no restriction (for
// the nats CLI); Run is the all-in-one joining a separate bus.
const (
	UserEdge   = "edge"
	UserOrigin = "origin"
	UserCache  = "cache"
	UserRun    = "run"
	UserAdmin  = "admin"
	// UserRoute is the user routes between bus nodes authenticate as.
	UserRoute = "route"
)

// InboxPrefix is the reply-subject prefix a role's connections use: each
// role may subscribe to its own inboxes only, so one role cannot read the
// replies (KV records, GOPs) sent to another.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// kvOpen is what opening a registry bucket takes: its stream's info, and
// creating it when it is missing (never updating it: the settings of an
// existing bucket are checked, see Registry.Start).
func kvOpen(bucket string) []string {
	s := "KV_" + bucket
	return []string{"$JS.API.STREAM.INFO." + s, "$JS.API.STREAM.CREATE." + s}
}

// kvRead is what reading a bucket's keys takes: direct gets.
func kvRead(bucket string) []string {
	s := "KV_" + bucket
	// STREAM.MSG.GET also serves a watch mending a loss of republished
	// records by sequence (republish.go).
	return []string{"$JS.API.DIRECT.GET." + s + ".>", "$JS.API.STREAM.MSG.GET." + s}
}

// kvWatch is what a watcher takes: an ordered push consumer on the bucket's
// stream, delivered to the role's inbox, and its flow-control replies.
func kvWatch(bucket string) []string {
	s := "KV_" + bucket
	return []string{
		"$JS.API.CONSUMER.CREATE." + s, "$JS.API.CONSUMER.CREATE." + s + ".>",
		"$JS.API.CONSUMER.DELETE." + s + ".>", "$JS.API.CONSUMER.INFO." + s + ".>",
		"$JS.FC." + s + ".>",
	}
}

// kvWrite is what writing a bucket's keys takes (put, create, update, delete).
func kvWrite(bucket string) []string { return []string{"$KV." + bucket + ".>"} }

// RolePermissions returns the subject permissions of a role's user (edge,
// origin, cache or run); nil for admin and for an unknown user.
func RolePermissions(user string) *server.Permissions {
	var pub, sub []string
	// Every role may open the buckets and read and watch the cluster's
	// topology (streams, owners, camera pulls): the console and /v1/streams
	// of any node list the whole cluster. Playlist state is the origins'.
	// Every node's API also asks the others for their statistics, and answers,
	// and asks an edge for a stream's GOP (the console's snapshots); any node
	// may signal viewers' demand for an on-demand camera (caches do).
	open := func() {
		pub = append(pub, "$JS.API.INFO", StatsSubject, gopPrefix+">", demandPrefix+">")
		// The bus nodes' death notices (gone.go): every role may read them,
		// only the bus nodes themselves publish them.
		sub = append(sub, StatsSubject, GoneSubject)
		for _, b := range []string{BucketStreams, BucketOwners, BucketState, BucketSources} {
			pub = append(pub, kvOpen(b)...)
		}
		for _, b := range []string{BucketStreams, BucketOwners, BucketSources} {
			pub = append(pub, kvRead(b)...)
			pub = append(pub, kvWatch(b)...)
			// A watch follows the bucket's republished records once it has
			// caught up (republish.go).
			sub = append(sub, RepublishPrefix+b+".>")
		}
	}
	edge := func() {
		pub = append(pub, mediaPrefix+">")
		for _, b := range []string{BucketStreams, BucketSources} {
			pub = append(pub, kvWrite(b)...)
		}
		sub = append(sub, gopPrefix+">", demandPrefix+">") // answered through the responses permission
		// Node liveness: edges send heartbeats (their stream records and
		// camera leases hold by them) and follow the others' (camera
		// take-overs, dead edges' records).
		pub = append(pub, AliveSubject)
		sub = append(sub, AliveSubject)
	}
	origin := func() {
		for _, b := range []string{BucketOwners, BucketState} {
			pub = append(pub, kvWrite(b)...)
		}
		pub = append(pub, kvRead(BucketState)...)
		// Node liveness: origins send heartbeats and follow each other's.
		pub = append(pub, AliveSubject)
		sub = append(sub, mediaPrefix+">", AliveSubject)
	}
	switch user {
	case UserEdge:
		open()
		edge()
	case UserOrigin:
		open()
		origin()
	case UserCache:
		open() // reading is all a cache does
	case UserRun:
		open()
		edge()
		origin()
	default:
		return nil
	}
	sub = append(sub, InboxPrefix(user)+".>")
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: dedup(pub)},
		Subscribe: &server.SubjectPermission{Allow: dedup(sub)},
		// An edge answers a GOP request with one message per packet, and
		// every watcher answers its consumer's flow-control requests: replies
		// to messages received are allowed, for a few seconds each.
		Response: &server.ResponsePermission{MaxMsgs: -1, Expires: 30 * time.Second},
	}
}

func dedup(v []string) []string {
	seen := make(map[string]bool, len(v))
	out := v[:0]
	for _, s := range v {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Users are the passwords of the embedded server's users; an empty password
// leaves that user out. Password may be a bcrypt hash ("$2a$...") on the
// server side.
type Users struct {
	Edge, Origin, Cache, Run, Admin string
}

// any reports whether a user is set.
func (u Users) any() bool { return u.Edge+u.Origin+u.Cache+u.Run+u.Admin != "" }

// serverUsers maps u to the server's users with their permissions.
func (u Users) serverUsers() []*server.User {
	var out []*server.User
	for _, x := range []struct{ name, pass string }{
		{UserEdge, u.Edge}, {UserOrigin, u.Origin}, {UserCache, u.Cache}, {UserRun, u.Run}, {UserAdmin, u.Admin},
	} {
		if x.pass != "" {
			out = append(out, &server.User{Username: x.name, Password: x.pass, Permissions: RolePermissions(x.name)})
		}
	}
	return out
}

// withUserinfo returns a route URL with user and password set, unless it
// carries credentials already.
func withUserinfo(raw, user, pass string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("route %s: %w", Redact(raw), err)
	}
	if u.User == nil && user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String(), nil
}

// userinfo matches the user[:password]@ part of URLs in free text.
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s,]*@`)

// Redact removes the whole userinfo (user and password) from every URL in
// s: "nats://edge:pw@bus1:4222" becomes "nats://***@bus1:4222". It is for
// URLs in logs and errors, where a decoded-password mask would still leak a
// password that contains URL-escaped bytes or sits in the user part.
func Redact(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfo.ReplaceAllString(s, "${1}***@")
}

// ServerTLS loads a bus node's certificate for its client listener.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("bus: tls certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// RouteTLS is the configuration of routes between bus nodes: mutual TLS,
// each node presenting certFile and verifying the others against caFile
// (the system's roots when empty).
func RouteTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	c, err := ServerTLS(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if caFile != "" {
		pool, err := loadCAs(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs, c.ClientCAs = pool, pool
	} else if c.ClientCAs, err = x509.SystemCertPool(); err != nil {
		return nil, fmt.Errorf("bus: system CAs: %w", err)
	}
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c, nil
}

func loadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("bus: tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("bus: tls ca %s: no PEM certificate", file)
	}
	return pool, nil
}
