package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamgrid/streamgrid/internal/auth/authreq"
	"github.com/streamgrid/streamgrid/internal/config"
	"github.com/streamgrid/streamgrid/internal/testkit"
)

var (
	loopback = net.ParseIP("127.0.0.1")
	lan      = net.ParseIP("192.168.1.20")
	far      = net.ParseIP("203.0.113.9")
)

// testSalt is a fixed salt: tests need reproducible hashes, nothing more.
var testSalt = []byte("0123456789abcdef")

func newAuth(t *testing.T, c config.Auth) (*Authenticator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a := &Authenticator{Config: c, Node: "n1", Role: "run", Metrics: reg}
	a.sleep = func(context.Context, time.Duration) {} // the delays have their own test
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, reg
}

func defaults() config.Auth { return config.Default().Auth }

func TestAuthenticate(t *testing.T) {
	c := defaults()
	c.Users = []config.AuthUser{
		{User: "admin", Pass: "adminpw", Permissions: []config.AuthPermission{
			{Action: "publish"}, {Action: "read"}, {Action: "api"}, {Action: "metrics"}, {Action: "pprof"}}},
		{User: "cam", Pass: HashSHA256("campw"), IPs: []string{"192.168.1.0/24", "127.0.0.1"},
			Permissions: []config.AuthPermission{{Action: "publish", Path: "live/*"}}},
		{User: "argon", Pass: hashArgon2("argonpw", testSalt, 64, 1, 1),
			Permissions: []config.AuthPermission{{Action: "publish", Path: "a/b"}}},
		{User: "any", Permissions: []config.AuthPermission{{Action: "read", Path: "public/*"}}},
	}
	a, _ := newAuth(t, c)
	tests := []struct {
		name string
		req  authreq.Request
		want error
	}{
		{"admin publishes anywhere", authreq.Request{User: "admin", Pass: "adminpw", IP: far, Action: authreq.ActionPublish, Path: "x/y"}, nil},
		{"admin uses the API", authreq.Request{User: "admin", Pass: "adminpw", IP: far, Action: authreq.ActionAPI}, nil},
		{"wrong password", authreq.Request{User: "admin", Pass: "nope", IP: far, Action: authreq.ActionPublish, Path: "x"}, authreq.ErrBadCredentials},
		{"unknown user", authreq.Request{User: "eve", Pass: "adminpw", IP: far, Action: authreq.ActionPublish, Path: "x"}, authreq.ErrBadCredentials},
		{"no credentials", authreq.Request{IP: far, Action: authreq.ActionPublish, Path: "live/cam1"}, authreq.ErrNoCredentials},
		{"sha256 user on its path", authreq.Request{User: "cam", Pass: "campw", IP: lan, Action: authreq.ActionPublish, Path: "live/cam1"}, nil},
		{"sha256 user, wrong password", authreq.Request{User: "cam", Pass: "campw2", IP: lan, Action: authreq.ActionPublish, Path: "live/cam1"}, authreq.ErrBadCredentials},
		{"sha256 user off its path", authreq.Request{User: "cam", Pass: "campw", IP: lan, Action: authreq.ActionPublish, Path: "other/cam1"}, authreq.ErrForbidden},
		{"sha256 user, * does not cross /", authreq.Request{User: "cam", Pass: "campw", IP: lan, Action: authreq.ActionPublish, Path: "live/a/b"}, authreq.ErrForbidden},
		{"sha256 user from a bare IP", authreq.Request{User: "cam", Pass: "campw", IP: loopback, Action: authreq.ActionPublish, Path: "live/cam1"}, nil},
		{"sha256 user from another network", authreq.Request{User: "cam", Pass: "campw", IP: far, Action: authreq.ActionPublish, Path: "live/cam1"}, authreq.ErrForbidden},
		{"sha256 user without read", authreq.Request{User: "cam", Pass: "campw", IP: lan, Action: authreq.ActionRead, Path: "live/cam1"}, authreq.ErrForbidden},
		{"sha256 user without api", authreq.Request{User: "cam", Pass: "campw", IP: loopback, Action: authreq.ActionAPI}, authreq.ErrForbidden},
		{"argon2 user", authreq.Request{User: "argon", Pass: "argonpw", IP: far, Action: authreq.ActionPublish, Path: "a/b"}, nil},
		{"argon2 user, wrong password", authreq.Request{User: "argon", Pass: "argonpw!", IP: far, Action: authreq.ActionPublish, Path: "a/b"}, authreq.ErrBadCredentials},
		{"any reads public paths", authreq.Request{IP: far, Action: authreq.ActionRead, Path: "public/x"}, nil},
		{"any with credentials too", authreq.Request{User: "cam", Pass: "whatever", IP: far, Action: authreq.ActionRead, Path: "public/x"}, nil},
		{"any does not publish", authreq.Request{IP: far, Action: authreq.ActionPublish, Path: "public/x"}, authreq.ErrNoCredentials},
		{"unknown action", authreq.Request{User: "admin", Pass: "adminpw", IP: far, Action: "delete"}, authreq.ErrForbidden},
		{"digest with a plain password", authreq.Request{User: "admin", IP: far, Action: authreq.ActionPublish, Path: "x",
			Verify: func(u, p string) bool { return u == "admin" && p == "adminpw" }}, nil},
		{"digest that does not verify", authreq.Request{User: "admin", IP: far, Action: authreq.ActionPublish, Path: "x",
			Verify: func(string, string) bool { return false }}, authreq.ErrBadCredentials},
		{"digest cannot check a hash", authreq.Request{User: "cam", IP: lan, Action: authreq.ActionPublish, Path: "live/cam1",
			Verify: func(string, string) bool { return true }}, authreq.ErrBadCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Authenticate(context.Background(), tc.req)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if errors.Is(err, authreq.ErrUnauthorized) == errors.Is(err, authreq.ErrForbidden) {
				t.Fatalf("%v is both or neither of 401 and 403", err)
			}
		})
	}
}

// TestReadOpen: ReadOpen holds exactly when every read is allowed: no auth
// section, or a user "any" from anywhere reading every path, wherever it
// stands among the users; and Authenticate agrees.
func TestReadOpen(t *testing.T) {
	admin := config.AuthUser{User: "admin", Pass: "adminpw", Permissions: []config.AuthPermission{{Action: "read"}, {Action: "api"}}}
	cam := config.AuthUser{User: "cam", Pass: "campw", Permissions: []config.AuthPermission{{Action: "publish", Path: "live/*"}}}
	anyReads := func(path string, ips ...string) config.AuthUser {
		return config.AuthUser{User: "any", IPs: ips, Permissions: []config.AuthPermission{{Action: "publish", Path: "x"}, {Action: "read", Path: path}}}
	}
	for _, tc := range []struct {
		name  string
		users []config.AuthUser
		open  bool
	}{
		{"no auth section", nil, true},
		{"users, no public reads", []config.AuthUser{admin, cam}, false},
		{"any reads every path, last", []config.AuthUser{admin, cam, anyReads("")}, true},
		{"any reads every path, first", []config.AuthUser{anyReads(""), admin}, true},
		{"any reads some paths", []config.AuthUser{admin, anyReads("public/*")}, false},
		{"any reads every path from one network", []config.AuthUser{admin, anyReads("", "192.168.1.0/24")}, false},
		{"any publishes only", []config.AuthUser{{User: "any", Permissions: []config.AuthPermission{{Action: "publish"}}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			c.Users = tc.users
			a, _ := newAuth(t, c)
			if a.ReadOpen() != tc.open {
				t.Fatalf("ReadOpen %v, want %v", a.ReadOpen(), tc.open)
			}
			for _, req := range []authreq.Request{
				{IP: far, Action: authreq.ActionRead, Path: "live/cam1"},
				{User: "admin", Pass: "wrong", IP: lan, Action: authreq.ActionRead, Path: "a/b/c"},
				{User: "cam", Pass: "campw", IP: loopback, Action: authreq.ActionRead, Path: "live/cam1"},
			} {
				err := a.Authenticate(context.Background(), req)
				if tc.open && err != nil {
					t.Errorf("ReadOpen, but %+v is refused: %v", req, err)
				}
				if !tc.open && err == nil && req.User == "" {
					t.Errorf("not ReadOpen, yet an anonymous read from far away is allowed")
				}
			}
		})
	}
}

func TestOpenDefaults(t *testing.T) {
	a, reg := newAuth(t, defaults())
	if a.Enabled() {
		t.Fatal("enabled without users")
	}
	for _, tc := range []struct {
		action authreq.Action
		ip     net.IP
		want   error
	}{
		{authreq.ActionPublish, far, nil},
		{authreq.ActionRead, far, nil},
		{authreq.ActionAPI, loopback, nil},
		{authreq.ActionAPI, net.ParseIP("::1"), nil},
		{authreq.ActionMetrics, loopback, nil},
		{authreq.ActionPprof, loopback, nil},
		{authreq.ActionAPI, lan, authreq.ErrForbidden},
		{authreq.ActionMetrics, far, authreq.ErrForbidden},
		{authreq.ActionPprof, far, authreq.ErrForbidden},
		{authreq.ActionAPI, nil, authreq.ErrForbidden},
	} {
		err := a.Authenticate(context.Background(), authreq.Request{Action: tc.action, IP: tc.ip, Protocol: "http"})
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s from %v: got %v, want %v", tc.action, tc.ip, err, tc.want)
		}
	}
	if n := testutil.ToFloat64(a.denied.WithLabelValues("pprof", "http", reasonNotLoopback)); n != 1 {
		t.Errorf("denied{pprof,http,not_loopback} = %v, want 1", n)
	}
	if n, err := testutil.GatherAndCount(reg, "streamgrid_auth_denied_total"); err != nil || n == 0 {
		t.Errorf("metric not registered: %d %v", n, err)
	}
}

func TestUpdate(t *testing.T) {
	a, _ := newAuth(t, defaults())
	req := authreq.Request{User: "u", Pass: "p", IP: far, Action: authreq.ActionPublish, Path: "x"}
	if err := a.Authenticate(context.Background(), req); err != nil {
		t.Fatalf("open defaults refused: %v", err)
	}
	c := defaults()
	c.Users = []config.AuthUser{{User: "u", Pass: "p2", Permissions: []config.AuthPermission{{Action: "publish"}}}}
	if err := a.Update(c); err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate(context.Background(), req); !errors.Is(err, authreq.ErrBadCredentials) {
		t.Fatalf("after update: %v", err)
	}
	bad := c
	bad.Users = []config.AuthUser{{User: "u", Pass: "sha256:zz", Permissions: []config.AuthPermission{{Action: "publish"}}}}
	if err := a.Update(bad); err == nil || !strings.Contains(err.Error(), "auth.users[0].pass") {
		t.Fatalf("bad hash: %v", err)
	}
	req.Pass = "p2"
	if err := a.Authenticate(context.Background(), req); err != nil {
		t.Fatalf("a failed update replaced the rules: %v", err)
	}
}

func TestParsePassword(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{"plain", ""},
		{"", ""},
		{HashSHA256("x"), ""},
		{"sha256:!!", "not base64"},
		{"sha256:aGVsbG8=", "32 bytes"},
		{hashArgon2("x", testSalt, 8, 1, 1), ""},
		{"argon2:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", ""},
		{"argon2:$argon2d$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "variant"},
		{"argon2:$argon2id$v=16$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "version"},
		{"argon2:$argon2id$v=19$m=99999999,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "memory"},
		{"argon2:$argon2id$v=19$m=65536,t=3$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "required"},
		{"argon2:$argon2id$v=19$m=65536,t=3,p=4,x=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "unknown"},
		{"argon2:$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA", "salt"},
		{"argon2:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA", "hash"},
		{"argon2:nonsense", "want"},
	} {
		_, err := parsePassword(tc.in)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("parsePassword(%q) = %v, want error containing %q", tc.in, err, tc.err)
		}
	}
	// Full-strength argon2 costs 64 MiB and seconds a hash under -race:
	// what HashArgon2 writes, and a hash checked against the reference CLI's.
	t.Run("full strength", func(t *testing.T) {
		testkit.Slow(t)
		if _, err := parsePassword(HashArgon2("x", testSalt)); err != nil {
			t.Errorf("parsePassword(HashArgon2(...)): %v", err)
		}
		// A hash made by the reference argon2 CLI:
		// echo -n password | argon2 somesalt -i -t 2 -m 16 -p 4 -l 24 -e
		p, err := parsePassword("argon2:$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG")
		if err != nil {
			t.Fatal(err)
		}
		if !p.matches("password") || p.matches("Password") {
			t.Fatal("reference argon2i hash does not check")
		}
	})
}

func TestFailureDelays(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, failureDelay(n))
	}
	want := []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3 * time.Second, 3 * time.Second, 3 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}

	c := defaults()
	c.Users = []config.AuthUser{{User: "u", Pass: "p", Permissions: []config.AuthPermission{{Action: "publish"}}}}
	a, _ := newAuth(t, c)
	now := time.Unix(1e9, 0)
	a.now = func() time.Time { return now }
	var slept []time.Duration
	a.sleep = func(_ context.Context, d time.Duration) { slept = append(slept, d) }
	try := func(ip net.IP, pass string) error {
		return a.Authenticate(context.Background(), authreq.Request{User: "u", Pass: pass, IP: ip, Action: authreq.ActionPublish, Path: "x"})
	}
	for range 3 {
		_ = try(far, "bad")
	}
	_ = try(lan, "bad") // another address starts from zero
	if len(slept) != 2 || slept[0] != 200*time.Millisecond || slept[1] != 400*time.Millisecond {
		t.Fatalf("slept %v", slept)
	}
	if err := try(far, "p"); err != nil {
		t.Fatal(err)
	}
	_ = try(far, "bad") // success forgot the failures
	if len(slept) != 2 {
		t.Fatalf("slept after success: %v", slept)
	}
	_ = try(lan, "bad")
	now = now.Add(failureWindow + time.Second)
	_ = try(lan, "bad") // the window passed: counts from one again
	if len(slept) != 3 {
		t.Fatalf("slept %v", slept)
	}
	// Missing credentials are not a failure.
	for range 5 {
		_ = a.Authenticate(context.Background(), authreq.Request{IP: net.ParseIP("198.51.100.1"), Action: authreq.ActionPublish, Path: "x"})
	}
	if len(slept) != 3 {
		t.Fatalf("challenges were slowed: %v", slept)
	}
}

func TestFailureTableBounded(t *testing.T) {
	var f failures
	now := time.Unix(1e9, 0)
	for i := range maxFailureIPs * 3 {
		ip := addrOf(net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)))
		f.fail(ip, now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := f.len(); n > maxFailureIPs {
		t.Fatalf("%d entries, bound %d", n, maxFailureIPs)
	}
}

// authorizerStub is a real HTTP authorizer: it allows user "ok" and counts calls.
type authorizerStub struct {
	calls atomic.Int64
	mu    sync.Mutex
	last  authorizerBody
	block chan struct{} // when non-nil, requests wait on it (a hung authorizer)
}

func (s *authorizerStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	var b authorizerBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.last = b
	s.mu.Unlock()
	if s.block != nil {
		select {
		case <-s.block:
		case <-r.Context().Done():
		}
		return
	}
	switch b.User {
	case "ok":
		w.WriteHeader(http.StatusNoContent)
	case "":
		w.WriteHeader(http.StatusUnauthorized)
	default:
		w.WriteHeader(http.StatusForbidden)
	}
}

func TestExternalAuthorizer(t *testing.T) {
	stub := &authorizerStub{}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	c := defaults()
	c.HTTPAddress = srv.URL + "/auth"
	c.HTTPCacheTTL = time.Minute
	c.Users = []config.AuthUser{{User: "local", Pass: "pw", Permissions: []config.AuthPermission{{Action: "publish"}}}}
	a, _ := newAuth(t, c)
	now := time.Unix(1e9, 0)
	a.now = func() time.Time { return now }
	_ = a.Update(c) // the authorizer takes the clock at Update
	ctx := context.Background()
	okReq := authreq.Request{User: "ok", Pass: "secret", IP: far, Action: authreq.ActionPublish, Path: "live/cam1", Protocol: "rtmp", Query: "user=ok&pass=secret"}

	if err := a.Authenticate(ctx, okReq); err != nil {
		t.Fatalf("allowed user refused: %v", err)
	}
	stub.mu.Lock()
	got := stub.last
	stub.mu.Unlock()
	want := authorizerBody{User: "ok", Pass: "secret", IP: far.String(), Action: "publish", Path: "live/cam1", Protocol: "rtmp", Query: "user=ok&pass=secret"}
	if got != want {
		t.Fatalf("authorizer got %+v, want %+v", got, want)
	}
	// Cache hit: no second call.
	if err := a.Authenticate(ctx, okReq); err != nil || stub.calls.Load() != 1 {
		t.Fatalf("second call: err %v, calls %d", err, stub.calls.Load())
	}
	// A negative decision is cached too.
	bad := okReq
	bad.User = "mallory"
	for range 2 {
		if err := a.Authenticate(ctx, bad); !errors.Is(err, authreq.ErrForbidden) {
			t.Fatalf("denied user: %v", err)
		}
	}
	if stub.calls.Load() != 2 {
		t.Fatalf("calls %d, want 2 (negative answer cached)", stub.calls.Load())
	}
	// No credentials: a challenge.
	if err := a.Authenticate(ctx, authreq.Request{IP: far, Action: authreq.ActionPublish, Path: "x", Protocol: "rtsp"}); !errors.Is(err, authreq.ErrNoCredentials) {
		t.Fatalf("no credentials: %v", err)
	}
	// Local users are checked first, without a call.
	calls := stub.calls.Load()
	if err := a.Authenticate(ctx, authreq.Request{User: "local", Pass: "pw", IP: far, Action: authreq.ActionPublish, Path: "x"}); err != nil || stub.calls.Load() != calls {
		t.Fatalf("local user: %v, calls %d→%d", err, calls, stub.calls.Load())
	}
	// Expiry: the decision is asked again.
	now = now.Add(2 * time.Minute)
	if err := a.Authenticate(ctx, okReq); err != nil || stub.calls.Load() != calls+1 {
		t.Fatalf("after expiry: %v, calls %d", err, stub.calls.Load())
	}
}

func TestExternalAuthorizerDown(t *testing.T) {
	stub := &authorizerStub{block: make(chan struct{})}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	defer close(stub.block)
	for _, fallback := range []string{"deny", "allow"} {
		t.Run(fallback, func(t *testing.T) {
			c := defaults()
			c.HTTPAddress = srv.URL
			c.HTTPTimeout = 50 * time.Millisecond // the stub never answers
			c.HTTPFallback = fallback
			a, _ := newAuth(t, c)
			req := authreq.Request{User: "ok", Pass: "secret", IP: far, Action: authreq.ActionPublish, Path: "x", Protocol: "rtsp"}
			err := a.Authenticate(context.Background(), req)
			if fallback == "allow" && err != nil {
				t.Fatalf("fallback allow refused: %v", err)
			}
			if fallback == "deny" {
				if !errors.Is(err, authreq.ErrForbidden) {
					t.Fatalf("fallback deny: %v", err)
				}
				if n := testutil.ToFloat64(a.denied.WithLabelValues("publish", "rtsp", reasonAuthorizerDown)); n != 1 {
					t.Fatalf("authorizer_down count %v", n)
				}
			}
			if !a.rules.Load().http.down.Load() {
				t.Fatal("outage not noted")
			}
		})
	}
	// A dead address (connection refused) is down as well, and recovery is noticed.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	c := defaults()
	c.HTTPAddress = deadURL
	a, _ := newAuth(t, c)
	if err := a.Authenticate(context.Background(), authreq.Request{User: "ok", Pass: "x", IP: far, Action: authreq.ActionAPI, Protocol: "http"}); !errors.Is(err, authreq.ErrForbidden) {
		t.Fatalf("dead authorizer: %v", err)
	}
}

// FuzzParsePassword: any pass value either is refused with an error or
// checks passwords without panicking; a plain one matches itself.
func FuzzParsePassword(f *testing.F) {
	for _, s := range []string{"plain", "", HashSHA256("x"), "sha256:", "argon2:",
		"argon2:$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
		"argon2:$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, conf, try string) {
		p, err := parsePassword(conf)
		if err != nil {
			return
		}
		if p.kind == passArgon2 && p.a2.memory*p.a2.time > 64*4 {
			return // a real hash: too slow to run on every input
		}
		p.matches(try)
		if plain, ok := p.plainText(); ok && (!p.matches(plain) || plain != conf) {
			t.Fatalf("plain %q does not match itself", conf)
		}
	})
}
