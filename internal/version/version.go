// Package version holds the build's version, stamped at build time:
//
//	go build -ldflags "-X github.com/streamgrid/streamgrid/internal/version.Version=v1.2.3" ./cmd/streamgrid
//
// Without the stamp it is the module version when built with `go install
// mod@version`, else "dev".
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is the release, set by -ldflags -X; see the package comment.
var Version = "dev"

// String is Version, or the module version recorded in the binary when
// Version was not stamped.
func String() string {
	if Version != "dev" && Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// GoVersion is the Go release that built the binary.
func GoVersion() string { return runtime.Version() }
