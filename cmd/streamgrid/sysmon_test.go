package main

import (
	"slices"
	"testing"
)

// TestSysmonEnv: node roles are re-executed with schedtrace added to
// GODEBUG (other settings kept); other commands, --version, and a GODEBUG
// that sets schedtrace itself are left alone.
func TestSysmonEnv(t *testing.T) {
	base := []string{"HOME=/root", "SG_NODE_NAME=a"}
	for _, tc := range []struct {
		name    string
		args    []string
		godebug string // "" : none in the environment
		want    string // GODEBUG after; "" : no re-exec
	}{
		{"run by default", nil, "", "GODEBUG=" + sysmonSetting},
		{"run with flags", []string{"--config", "x.yml"}, "", "GODEBUG=" + sysmonSetting},
		{"edge", []string{"edge"}, "", "GODEBUG=" + sysmonSetting},
		{"origin keeps other settings", []string{"origin"}, "madvdontneed=1", "GODEBUG=madvdontneed=1," + sysmonSetting},
		{"explicit schedtrace=0", []string{"run"}, "madvdontneed=1, schedtrace=0", ""},
		{"loadtest", []string{"loadtest", "--cameras", "2"}, "", ""},
		{"version", []string{"version"}, "", ""},
		{"--version", []string{"run", "--version"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := slices.Clone(base)
			if tc.godebug != "" {
				env = append(env, "GODEBUG="+tc.godebug)
			}
			got, ok := sysmonEnv(tc.args, env)
			if tc.want == "" {
				if ok {
					t.Fatalf("re-exec with %v", got)
				}
				return
			}
			if !ok {
				t.Fatal("no re-exec")
			}
			want := append(slices.Clone(base), tc.want)
			if !slices.Equal(got, want) {
				t.Fatalf("environment %v, want %v", got, want)
			}
		})
	}
}
