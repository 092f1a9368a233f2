package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamgrid/streamgrid/hlscache"
)

func TestSign(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	cfg := filepath.Join(t.TempDir(), "streamgrid.yml")
	if err := os.WriteFile(cfg, []byte("auth:\n  signing_key: \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if rc := runSign([]string{"--config", cfg, "--path", "live/cam1", "--ttl", "10m", "--ip", "203.0.113.0/24"}, &out, &errs); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errs.String())
	}
	line := strings.TrimSpace(out.String())
	rest, ok := strings.CutPrefix(line, "/s/")
	tok, p, _ := strings.Cut(rest, "/")
	if !ok || p != "live/cam1/index.m3u8" {
		t.Fatalf("printed %q", line)
	}
	now := time.Now()
	if err := hlscache.Verify(key, tok, "live/cam1", netip.MustParseAddr("203.0.113.5"), now); err != nil {
		t.Errorf("printed token refused: %v", err)
	}
	if err := hlscache.Verify(key, tok, "live/cam1", netip.MustParseAddr("203.0.113.5"), now.Add(11*time.Minute)); err == nil {
		t.Error("token valid past its ttl")
	}
	if err := hlscache.Verify(key, tok, "live/cam1", netip.MustParseAddr("192.0.2.1"), now); err == nil {
		t.Error("token valid outside its network")
	}
	for _, args := range [][]string{
		{"--config", cfg},
		{"--config", cfg, "--path", "live/../x"},
		{"--config", cfg, "--path", "live/cam1", "--ip", "nope"},
		{"--config", cfg, "--path", "live/cam1", "--ttl", "-1h"},
		{"--path", "live/cam1"}, // no key in the defaults
	} {
		out.Reset()
		errs.Reset()
		t.Setenv("SG_AUTH_SIGNING_KEY", "")
		if rc := runSign(args, &out, &errs); rc == 0 || out.Len() != 0 || errs.Len() == 0 {
			t.Errorf("%q: rc %d, out %q, err %q", args, rc, out.String(), errs.String())
		}
	}
}
