package main

import (
	"strings"

	"github.com/streamgrid/streamgrid/internal/node"
)

// sysmonSetting keeps the Go runtime's system monitor (sysmon) from parking.
//
// Why: a node at 25 cameras is idle between bursts of work (a frame or an
// audio packet arrives, is packaged, and every goroutine parks again; ~1 700
// times a second). Each time every P is idle, sysmon parks on a futex
// until the next syscall; that syscall wakes it (a futex wake, ~5 % of the
// node's CPU profile), and sysmon then polls every 20 us for a while
// (~1 000-1 300 nanosleeps a second) before it backs off, a cost that
// shows in the process's CPU time but not in its Go profile. With
// schedtrace set, the runtime never parks sysmon (proc.go, sysmon: "if
// debug.schedtrace <= 0 && ..."): it polls, backing off to every 10 ms
// while nothing needs it, and no syscall wakes it. Measured: the node's
// CPU per camera 0.50 % against 0.65-0.72 %, the ratio to nginx-rtmp
// 0.83-0.86x against 1.16-1.18x (docs/benchmarks.md, "The Go runtime's
// system monitor").
//
// The value is the largest the runtime takes (ms, int32, ~24.8 days): the
// scheduler trace it enables is printed when the monotonic clock (time since
// boot) passes a multiple of it, so a host up for more than 24.8 days gets
// one "SCHED ..." line on stderr at start and one every 24.8 days.
const sysmonSetting = "schedtrace=2147483647"

// sysmonEnv returns the environment to re-execute a node with, and whether
// to: only for node roles (args as given to run), and when GODEBUG does not
// set schedtrace already (GODEBUG=schedtrace=0 keeps Go's default).
func sysmonEnv(args, environ []string) ([]string, bool) {
	role := node.RoleRun
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		role = args[0]
	}
	switch role {
	case node.RoleRun, node.RoleBus, node.RoleEdge, node.RoleOrigin, node.RoleCache:
	default:
		return nil, false
	}
	if hasVersionFlag(args) {
		return nil, false
	}
	env := make([]string, 0, len(environ)+1)
	godebug := ""
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v
			continue
		}
		env = append(env, kv)
	}
	for _, s := range strings.Split(godebug, ",") {
		if k, _, _ := strings.Cut(strings.TrimSpace(s), "="); k == "schedtrace" {
			return nil, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(env, "GODEBUG="+godebug+sysmonSetting), true
}
