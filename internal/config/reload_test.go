package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReconcile(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Sources = []Source{{Name: "cams/a", URL: "rtsp://a/1", Transport: "tcp", BackoffMin: time.Second, BackoffMax: time.Second, CloseAfter: DefaultCloseAfter}}
		return c
	}
	cases := []struct {
		name             string
		edit             func(c *Config)
		applied, restart []string
	}{
		{"nothing", func(*Config) {}, nil, nil},
		{"a camera added", func(c *Config) {
			c.Sources = append(c.Sources, Source{Name: "cams/b", URL: "rtsp://b/1", Transport: "tcp", BackoffMin: time.Second, BackoffMax: time.Second, CloseAfter: time.Second})
		}, []string{"sources"}, nil},
		{"hls and capacity", func(c *Config) { c.Origin.HLS.SegmentCount = 9; c.Origin.Capacity = 3 },
			[]string{"origin.capacity", "origin.hls"}, nil},
		{"listeners need a restart", func(c *Config) {
			c.Cache.HTTPAddress = ":9999"
			c.Node.Name = "other"
			c.Bus.URLs = []string{"nats://x:4222"}
			c.Cache.MaxBytes = 2 << 20
		}, []string{"cache.max_bytes"}, []string{"bus.urls", "cache.http_address", "node.name"}},
		{"certificates need a restart", func(c *Config) {
			c.Edge.TLSCert, c.Edge.TLSKey = "/etc/hostname", "/etc/hostname"
			c.Edge.RTSPSAddress = ":8323"
		}, nil, []string{"edge.rtsps_address", "edge.tls_cert", "edge.tls_key"}},
		{"hooks", func(c *Config) { c.Hooks.URL = "http://h/x"; c.Hooks.QueueSize = 5 }, []string{"hooks.url"}, []string{"hooks.queue_size"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old, next := base(), base()
			tc.edit(next)
			ch, err := Reconcile(old, next)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ch.Applied, tc.applied) || !reflect.DeepEqual(ch.Restart, tc.restart) {
				t.Fatalf("applied %v restart %v; want %v and %v", ch.Applied, ch.Restart, tc.applied, tc.restart)
			}
			// The keys that need a restart keep their running values.
			if next.Cache.HTTPAddress != old.Cache.HTTPAddress || next.Node.Name != old.Node.Name || next.Bus.URLs != nil {
				t.Fatalf("restart keys were not put back: %+v", next)
			}
		})
	}
}

func TestDiffSources(t *testing.T) {
	a := Source{Name: "a", URL: "rtsp://a/1"}
	b := Source{Name: "b", URL: "rtsp://b/1"}
	b2 := Source{Name: "b", URL: "rtsp://b/2"}
	c := Source{Name: "c", URL: "rtsp://c/1"}
	d := DiffSources([]Source{a, b}, []Source{b2, c})
	want := SourceChanges{Added: []string{"c"}, Removed: []string{"a"}, Changed: []string{"b"}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("diff %+v, want %+v", d, want)
	}
}

func TestHooksAndOnDemandConfig(t *testing.T) {
	c := mustLoad(t, write(t, "hooks:\n  url: http://127.0.0.1:1/h\n  events: [ready, gone]\nsources:\n  - name: cams/a\n    url: rtsp://a/1\n    on_demand: true\n"), nil)
	if c.Hooks.URL == "" || len(c.Hooks.Events) != 2 || !c.Sources[0].OnDemand || c.Sources[0].CloseAfter != DefaultCloseAfter {
		t.Fatalf("loaded %+v %+v", c.Hooks, c.Sources)
	}
	for file, want := range map[string]string{
		"hooks:\n  events: [published]\n":                                     "hooks.events[0]",
		"hooks:\n  url: ftp://x\n":                                            "hooks.url",
		"hooks:\n  timeout: 0s\n":                                             "hooks.timeout",
		"sources:\n  - name: a\n    url: rtsp://a/1\n    close_after: 10ms\n": "sources[0].close_after",
	} {
		if _, err := Load(write(t, file), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to name %s", file, err, want)
		}
	}
}
