//go:build !linux

package main

// keepSysmonAwake: measured on Linux only; elsewhere Go's default stays.
func keepSysmonAwake() {}
