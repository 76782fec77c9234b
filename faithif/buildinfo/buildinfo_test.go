package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	cases := []struct {
		name string
		bi   debug.BuildInfo
		want Info
		line string
	}{
		{
			name: "checkout, dirty",
			bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-11-30T12:00:00Z"},
			}},
			want: Info{Version: "(devel)", Commit: "0123456789abcdef0123", Modified: true, CommitTime: "2026-11-30T12:00:00Z", GoVersion: "go1.26.8"},
			line: "faithif (devel) (commit 0123456789ab-dirty, 2026-11-30T12:00:00Z, go1.26.8)",
		},
		{
			name: "go install at a tag, no VCS",
			bi:   debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want: Info{Version: "v1.2.3", Commit: "unknown", GoVersion: "go1.26.8"},
			line: "faithif v1.2.3 (commit unknown, go1.26.8)",
		},
		{
			name: "no main version",
			bi:   debug.BuildInfo{GoVersion: "go1.26.8"},
			want: Info{Version: "unknown", Commit: "unknown", GoVersion: "go1.26.8"},
			line: "faithif unknown (commit unknown, go1.26.8)",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := fromBuildInfo(&c.bi)
			if got != c.want {
				t.Errorf("fromBuildInfo = %+v, want %+v", got, c.want)
			}
			if s := got.String(); s != c.line {
				t.Errorf("String = %q, want %q", s, c.line)
			}
		})
	}
}

// The test binary itself has build information: Read must not fall back.
func TestReadOwnBinary(t *testing.T) {
	in := Read()
	if in.GoVersion == "" || in.GoVersion == "unknown" {
		t.Errorf("Read() = %+v: no Go version from the test binary's own build info", in)
	}
}
