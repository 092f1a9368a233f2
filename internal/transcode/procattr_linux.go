package transcode

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill ffmpeg if this process dies, so that a
// crashed node leaves no orphaned encoders behind.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
