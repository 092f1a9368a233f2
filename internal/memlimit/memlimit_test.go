package memlimit

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	write := func(t *testing.T, root, file, content string) {
		t.Helper()
		p := filepath.Join(root, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		configured int64
		files      map[string]string
		want       int64
		source     string
		err        bool
	}{
		{"configured wins over the cgroup", 512 << 20, map[string]string{"memory.max": "1073741824\n"}, 512 << 20, "node.memory_limit", false},
		{"off", Off, map[string]string{"memory.max": "1073741824\n"}, 0, "off", false},
		{"bad", -2, nil, 0, "", true},
		{"cgroup v2", 0, map[string]string{"memory.max": "1073741824\n"}, 858993459, "cgroup memory.max", false},
		{"cgroup v2 without limit", 0, map[string]string{"memory.max": "max\n"}, 0, "none", false},
		{"cgroup v1", 0, map[string]string{"memory/memory.limit_in_bytes": "2147483648\n"}, 1717986918, "cgroup memory.limit_in_bytes", false},
		{"cgroup v1 unlimited", 0, map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, "none", false},
		{"no cgroup", 0, nil, 0, "none", false},
		{"garbage", 0, map[string]string{"memory.max": "lots\n"}, 0, "none", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for f, c := range tc.files {
				write(t, root, f, c)
			}
			l, err := Resolve(tc.configured, root)
			if (err != nil) != tc.err || l.Bytes != tc.want || !tc.err && l.Source != tc.source {
				t.Errorf("got %+v, %v; want %d from %q", l, err, tc.want, tc.source)
			}
		})
	}
}

func TestCacheBudget(t *testing.T) {
	for _, tc := range []struct {
		max, limit, want int64
	}{
		{256 << 20, 0, 256 << 20},
		{256 << 20, 2 << 30, 256 << 20},
		{256 << 20, 256 << 20, 128 << 20},
		{256 << 20, 1 << 20, 1 << 20},
	} {
		if got := CacheBudget(tc.max, Limit{Bytes: tc.limit}); got != tc.want {
			t.Errorf("CacheBudget(%d, %d) = %d, want %d", tc.max, tc.limit, got, tc.want)
		}
	}
}

func TestApply(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	env := func(v string) func(string) string { return func(string) string { return v } }
	if Apply(Limit{Bytes: 1 << 30}, env("500MiB")) {
		t.Error("applied over GOMEMLIMIT")
	}
	if Apply(Limit{}, env("")) {
		t.Error("applied no limit")
	}
	if !Apply(Limit{Bytes: 1 << 30}, env("")) || debug.SetMemoryLimit(-1) != 1<<30 {
		t.Error("limit not set")
	}
}
