// Package version holds the build's version and commit, set by the linker.
package version

import "runtime"

var (
	// Version is the release version, set with -ldflags -X at build time.
	Version = "dev"
	// Commit is the short git commit the binary was built from.
	Commit = "unknown"
)

// GoVersion is the Go toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
