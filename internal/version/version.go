// Package version holds the build's version, stamped at link time with
// -ldflags "-X github.com/rotator-dev/rotator/internal/version.Version=v1.2.3".
package version

import "runtime"

// Version is the release; "dev" for unstamped builds.
var Version = "dev"

// GoVersion is the toolchain that built the binary.
func GoVersion() string { return runtime.Version() }
