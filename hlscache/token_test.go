package hlscache

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// The recipe in token.go, computed independently (Python's hmac, hashlib and
// base64.urlsafe_b64encode with the padding stripped): a backend following
// the README gets these exact tokens.
func TestTokenKnownAnswer(t *testing.T) {
	t.Parallel()
	exp := time.Unix(1767225600, 0)
	_, nw, _ := net.ParseCIDR("203.0.113.0/24")
	for _, tc := range []struct {
		network *net.IPNet
		want    string
	}{
		{nw, "1.1767225600.MjAzLjAuMTEzLjAvMjQ.d-2vuaykRItbef9mRFOZLs2aY0lMRsHPOlCSGWs3zJs"},
		{nil, "1.1767225600..im9J7-6TrFm0t1iu0gVuINhwSgEqG7Kiy_4V103ILIY"},
	} {
		if got := Sign(testKey, "live/cam1", exp, tc.network); got != tc.want {
			t.Errorf("Sign(%v) = %q, want %q", tc.network, got, tc.want)
		}
	}
	if got, want := SignPath(testKey, "/live/cam1/", exp, nil), "/s/1.1767225600..im9J7-6TrFm0t1iu0gVuINhwSgEqG7Kiy_4V103ILIY/live/cam1/index.m3u8"; got != want {
		t.Errorf("SignPath = %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour)
	_, v4net, _ := net.ParseCIDR("203.0.113.0/24")
	_, v6net, _ := net.ParseCIDR("2001:db8::/32")
	open := Sign(testKey, "live/cam1", exp, nil)
	bound := Sign(testKey, "live/cam1", exp, v4net)
	bound6 := Sign(testKey, "live/cam1", exp, v6net)
	in4 := netip.MustParseAddr("203.0.113.7")
	out4 := netip.MustParseAddr("198.51.100.7")
	in6 := netip.MustParseAddr("2001:db8::1")
	v := newVerifier(testKey)
	flip := func(s string, i int) string { // another base64url character at i
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name   string
		token  string
		stream string
		client netip.Addr
		now    time.Time
		want   error
	}{
		{"valid", open, "live/cam1", out4, now, nil},
		{"valid until the last second", open, "live/cam1", out4, exp.Add(-time.Second), nil},
		{"expired at exp", open, "live/cam1", out4, exp, ErrTokenExpired},
		{"other stream", open, "live/cam2", out4, now, ErrTokenSignature},
		{"stream prefix", open, "live", out4, now, ErrTokenSignature},
		{"other key", Sign([]byte("another key of 16+ bytes"), "live/cam1", exp, nil), "live/cam1", out4, now, ErrTokenSignature},
		{"tampered signature", flip(open, len(open)-5), "live/cam1", out4, now, ErrTokenSignature},
		{"later expiry", strings.Replace(open, "1800003600", "1900003600", 1), "live/cam1", out4, now, ErrTokenSignature},
		{"network dropped", strings.Replace(bound, ".MjAzLjAuMTEzLjAvMjQ.", "..", 1), "live/cam1", out4, now, ErrTokenSignature},
		{"in network", bound, "live/cam1", in4, now, nil},
		{"in network, v4-mapped", bound, "live/cam1", netip.MustParseAddr("::ffff:203.0.113.7"), now, nil},
		{"out of network", bound, "live/cam1", out4, now, ErrTokenNetwork},
		{"no client address", bound, "live/cam1", netip.Addr{}, now, ErrTokenNetwork},
		{"v6 in network", bound6, "live/cam1", in6, now, nil},
		{"v6 net, v4 client", bound6, "live/cam1", in4, now, ErrTokenNetwork},
		{"missing", "", "live/cam1", out4, now, ErrTokenMissing},
		{"version 2", "2" + open[1:], "live/cam1", out4, now, ErrTokenVersion},
		{"no dots", "1", "live/cam1", out4, now, ErrTokenMalformed},
		{"three fields", "1.1800003600.sig", "live/cam1", out4, now, ErrTokenMalformed},
		{"leading zero", strings.Replace(open, "1.1800003600", "1.01800003600", 1), "live/cam1", out4, now, ErrTokenMalformed},
		{"signed exp", strings.Replace(open, "1.1800003600", "1.+1800003600", 1), "live/cam1", out4, now, ErrTokenMalformed},
		{"short signature", open[:len(open)-1], "live/cam1", out4, now, ErrTokenMalformed},
		{"padded signature", open[:len(open)-1] + "=", "live/cam1", out4, now, ErrTokenMalformed},
		{"std base64 signature", open[:len(open)-1] + "+", "live/cam1", out4, now, ErrTokenMalformed},
		{"network not base64", strings.Replace(bound, ".MjAzLjAuMTEzLjAvMjQ.", ".MjAz*.", 1), "live/cam1", out4, now, ErrTokenMalformed},
		{"overlong", open + strings.Repeat("A", maxTokenLen), "live/cam1", out4, now, ErrTokenMalformed},
	} {
		err := Verify(testKey, tc.token, tc.stream, tc.client, tc.now)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
		for range 2 { // the cache's verifier, a fresh and a reused HMAC state
			if verr := v.verify(tc.token, tc.stream, tc.client, tc.now); verr != err {
				t.Errorf("%s: verifier says %v, Verify %v", tc.name, verr, err)
			}
		}
	}
}

// A token signed over a network field that is no CIDR (a signer not
// following the recipe) is refused, not trusted to mean "anyone".
func TestVerifySignedGarbageNetwork(t *testing.T) {
	t.Parallel()
	exp := time.Unix(1_800_000_000, 0)
	e := "1800000000"
	tok := "1." + e + "." + b64.EncodeToString([]byte("not a cidr")) + "." +
		b64.EncodeToString(tokenMAC(testKey, "live/cam1", e, "not a cidr"))
	if err := Verify(testKey, tok, "live/cam1", netip.MustParseAddr("192.0.2.1"), exp.Add(-time.Minute)); !errors.Is(err, ErrTokenMalformed) {
		t.Fatalf("Verify = %v, want ErrTokenMalformed", err)
	}
}

func TestSplitSignedPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, tok, rest string }{
		{"/s/1.2..x/live/cam1/index.m3u8", "1.2..x", "/live/cam1/index.m3u8"},
		{"/s/tok", "tok", "/"},
		{"/s//live/cam1/index.m3u8", "", "/live/cam1/index.m3u8"},
		{"/live/cam1/index.m3u8", "", "/live/cam1/index.m3u8"},
		{"/sx/live/index.m3u8", "", "/sx/live/index.m3u8"},
	} {
		tok, rest, _ := splitSignedPath(tc.in)
		if tok != tc.tok || rest != tc.rest {
			t.Errorf("%q: %q %q, want %q %q", tc.in, tok, rest, tc.tok, tc.rest)
		}
	}
}

// BenchmarkVerify is the cost of one token check, what every signed viewer
// request pays on top.
//
//	go test -run '^$' -bench Verify -benchmem ./hlscache/
func BenchmarkVerify(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	_, nw, _ := net.ParseCIDR("203.0.113.0/24")
	for _, bc := range []struct {
		name    string
		network *net.IPNet
	}{{"open", nil}, {"network", nw}} {
		tok := Sign(testKey, "live/cam1", now.Add(time.Hour), bc.network)
		client := netip.MustParseAddr("203.0.113.9")
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := Verify(testKey, tok, "live/cam1", client, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		v := newVerifier(testKey)
		b.Run(bc.name+"-cache", func(b *testing.B) { // the cache's pooled HMAC states
			b.ReportAllocs()
			for b.Loop() {
				if err := v.verify(tok, "live/cam1", client, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzToken: parsing and verifying any token never panics, never accepts
// what was not signed with the key for that stream, and every signed token
// verifies.
func FuzzToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	_, nw, _ := net.ParseCIDR("203.0.113.0/24")
	f.Add(Sign(testKey, "live/cam1", now.Add(time.Hour), nil), "live/cam1", int64(3600))
	f.Add(Sign(testKey, "live/cam1", now.Add(time.Hour), nw), "live/cam1", int64(60))
	f.Add("1.1767225600..im9J7-6TrFm0t1iu0gVuINhwSgEqG7Kiy_4V103ILIY", "a", int64(-5))
	f.Add("1..MjAz.", "", int64(0))
	f.Add("2.x.y.z", "x/y", int64(1))
	f.Fuzz(func(t *testing.T, tok, stream string, ttl int64) {
		client := netip.MustParseAddr("203.0.113.9")
		if err := Verify(testKey, tok, stream, client, now); err == nil {
			// Accepted: it must be exactly what Sign makes for this stream.
			p, perr := parseToken(tok)
			if perr != nil {
				t.Fatalf("accepted an unparsable token %q: %v", tok, perr)
			}
			// Without a network the encoding is canonical: the only
			// accepted form is Sign's own.
			if re := Sign(testKey, stream, time.Unix(p.expires, 0), nil); p.network == "" && re != tok {
				t.Fatalf("accepted %q for %q, Sign makes %q", tok, stream, re)
			}
		}
		if stream == "" || strings.HasPrefix(stream, "/") || strings.HasSuffix(stream, "/") {
			return // Sign trims slashes: not a stream path
		}
		exp := now.Add(time.Duration(ttl%(1<<40)) * time.Second)
		signed := Sign(testKey, stream, exp, nil)
		err := Verify(testKey, signed, stream, client, now)
		switch {
		case exp.Unix() > now.Unix() && err != nil:
			t.Fatalf("own token %q for %q refused: %v", signed, stream, err)
		case exp.Unix() <= now.Unix() && !errors.Is(err, ErrTokenExpired) && !errors.Is(err, ErrTokenMalformed):
			t.Fatalf("expired token %q: %v", signed, err)
		}
	})
}

// FuzzSignedRequest: a viewer's path with a token prefix splits into a
// token without '/' and the path the cache looks up; an accepted request
// names the stream the token was checked for.
func FuzzSignedRequest(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add("/s/" + Sign(testKey, "live/cam1", now.Add(time.Hour), nil) + "/live/cam1/index.m3u8")
	f.Add("/s/x/live/cam1/abc_video1_part3.mp4")
	f.Add("/s//live/../x.ts")
	f.Add("/s/")
	f.Add("/s/a/b/")
	f.Fuzz(func(t *testing.T, p string) {
		tok, rest, ok := splitSignedPath(p)
		if !ok {
			if rest != p || tok != "" {
				t.Fatalf("%q: not signed, yet split into %q %q", p, tok, rest)
			}
			return
		}
		if strings.Contains(tok, "/") || p != "/s/"+tok+rest && !(rest == "/" && p == "/s/"+tok) {
			t.Fatalf("%q: split into %q %q", p, tok, rest)
		}
		req, err := parseRequest(rest, "")
		if err != nil {
			return
		}
		if rest != "/"+req.stream+"/"+req.file {
			t.Fatalf("%q: looked up as %q + %q", p, req.stream, req.file)
		}
		// Whatever the token, it verifies for at most the stream it was signed for.
		if Verify(testKey, tok, req.stream, netip.MustParseAddr("192.0.2.1"), now) == nil {
			parsed, err := parseToken(tok)
			if err != nil {
				t.Fatalf("accepted token %q does not parse: %v", tok, err)
			}
			if parsed.network == "" && tok != Sign(testKey, req.stream, time.Unix(parsed.expires, 0), nil) {
				t.Fatalf("%q: token accepted for %q but not Sign's", p, req.stream)
			}
		}
	})
}
