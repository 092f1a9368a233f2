package testkit

import "go.uber.org/goleak"

// IgnoreMemberlistProbe is the goroutine-leak checks' allowance for
// memberlist: its Shutdown does not wait for a probe in flight, which ends on
// its own timer (ProbeTimeout, 300 ms in internal/gossip) a moment later —
// sometimes after goleak has stopped retrying, on a busy machine.
var IgnoreMemberlistProbe = goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode")
