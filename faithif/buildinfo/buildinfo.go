// Package buildinfo says which faithif this is: its module version and the
// commit it was built from, read from the build information the Go
// toolchain embeds in every binary (runtime/debug.ReadBuildInfo). Nothing
// is stamped in by hand, so `faithif version`, the faithif_build_info metric
// and a bug report all say the same thing.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Info is what the binary says about its own build.
type Info struct {
	// Version is the main module's version: a tag (v1.2.3) or a
	// pseudo-version for a binary built with `go install module@version`,
	// "(devel)" for one built in a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from, "unknown" if
	// it was built outside a checkout (or with -buildvcs=false).
	Commit string `json:"commit"`
	// Modified is true if the checkout had uncommitted changes.
	Modified bool `json:"modified"`
	// CommitTime is the revision's commit time (RFC 3339), empty if
	// unknown.
	CommitTime string `json:"commit_time,omitempty"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown", Commit: "unknown", GoVersion: "unknown"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, Commit: "unknown", GoVersion: bi.GoVersion}
	if in.Version == "" {
		in.Version = "unknown"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.CommitTime = s.Value
		}
	}
	return in
}

// ShortCommit returns the first 12 digits of the commit, with "-dirty"
// when the checkout had uncommitted changes.
func (in Info) ShortCommit() string {
	c := in.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if in.Modified {
		c += "-dirty"
	}
	return c
}

// String is the one line `faithif version` prints.
func (in Info) String() string {
	s := fmt.Sprintf("faithif %s (commit %s", in.Version, in.ShortCommit())
	if in.CommitTime != "" {
		s += ", " + in.CommitTime
	}
	return s + ", " + in.GoVersion + ")"
}
