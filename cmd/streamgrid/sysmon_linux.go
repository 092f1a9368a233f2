package main

import (
	"os"
	"syscall"
)

// keepSysmonAwake re-executes the process with sysmonSetting in GODEBUG
// (the runtime reads it only at start) when sysmonEnv says so. If the
// executable cannot be found or exec fails, the process goes on as it is.
func keepSysmonAwake() {
	env, ok := sysmonEnv(os.Args[1:], os.Environ())
	if !ok {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, env) // returns only on failure
}
