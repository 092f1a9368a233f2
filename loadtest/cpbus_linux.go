package loadtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel stop a bus node when the simulation dies
// without its clean-up (SIGKILL, a crash).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
