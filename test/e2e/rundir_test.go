package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faithif/faithif/test/netlab"
)

// TestRunDirTrust checks that faithif refuses a run directory another user
// could write to or owns (where a planted control socket could answer
// root's destroy, or a planted symbolic link redirect the background log):
// exit 1, a message naming the directory and what is wrong, nothing
// created. And that a symbolic link planted at the log path is refused,
// not followed.
func TestRunDirTrust(t *testing.T) {
	lab := netlab.New(t)
	pfx := netlab.FaithPrefix

	expectRefused := func(t *testing.T, runDir string, args []string, subs ...string) {
		t.Helper()
		r := faithifIn(t, lab.Router, runDir, args...)
		t.Logf("faithif %s: exit %d, stderr: %s", strings.Join(args, " "), r.ExitCode, strings.TrimSpace(r.Stderr))
		if r.Err != nil || r.ExitCode != 1 {
			t.Errorf("faithif %s: exit %d, want 1: %s", strings.Join(args, " "), r.ExitCode, r)
		}
		for _, s := range append([]string{runDir}, subs...) {
			if !strings.Contains(r.Stderr, s) {
				t.Errorf("faithif %s: stderr %q does not mention %q", strings.Join(args, " "), r.Stderr, s)
			}
		}
		if l := faithLinks(t, lab); len(l) > 0 {
			t.Errorf("faith links left in the router: %v", l)
		}
		if ents, _ := os.ReadDir(runDir); len(ents) > 0 {
			t.Errorf("files created in the refused run dir %s: %v", runDir, ents)
		}
	}

	for _, mode := range []os.FileMode{0o777, 0o777 | os.ModeSticky, 0o775} {
		t.Run("Writable/"+mode.String(), func(t *testing.T) {
			dir := netlab.TempDir(t, "open")
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			want := "writable by"
			expectRefused(t, dir, []string{"create", "faith0", "--prefix", pfx}, want)
			expectRefused(t, dir, []string{"create", "faith0", "--prefix", pfx, "-f"}, want)
			expectRefused(t, dir, []string{"sysctl", "-w", "net.inet6.ip6.keepfaith=1"}, want)
			expectRefused(t, dir, []string{"sysctl", "net.inet6.ip6.keepfaith"}, want)
			expectRefused(t, dir, []string{"show"}, want)
			expectRefused(t, dir, []string{"destroy", "faith0"}, want)
		})
	}
	t.Run("OwnedByOther", func(t *testing.T) {
		dir := netlab.TempDir(t, "other")
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		want := "owned by uid 65534"
		expectRefused(t, dir, []string{"create", "faith0", "--prefix", pfx}, want)
		expectRefused(t, dir, []string{"create", "faith0", "--prefix", pfx, "-f"}, want)
		expectRefused(t, dir, []string{"destroy", "faith0"}, want)
	})

	t.Run("LogSymlink", func(t *testing.T) {
		// The link was planted while the run dir was open, say.
		target := filepath.Join(netlab.TempDir(t, "target"), "target")
		writeFile(t, target, "untouched\n")
		logPath := filepath.Join(lab.RunDir, "faith0.log")
		if err := os.Symlink(target, logPath); err != nil {
			t.Fatal(err)
		}
		r := lab.Faithif("create", "faith0", "--prefix", pfx, "--keepfaith")
		t.Logf("create with a symlink at %s: exit %d, stderr: %s", logPath, r.ExitCode, strings.TrimSpace(r.Stderr))
		if r.Err != nil || r.ExitCode != 1 || !strings.Contains(r.Stderr, logPath) || !strings.Contains(r.Stderr, "symbolic link") {
			t.Errorf("create with a symlink at the log path: %s; want exit 1 naming %s, a symbolic link", r, logPath)
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != "untouched\n" {
			t.Errorf("the symlink's target now holds %q (%v): the log followed it", b, err)
		}
		checkNothingLeft(t, lab, "after create with a symlink at the log path")

		// Once the link is gone, the log is a file of faithif's own.
		if err := os.Remove(logPath); err != nil {
			t.Fatal(err)
		}
		pid := bgCreate(t, lab, "faith0", "--prefix", pfx)
		if fi, err := os.Lstat(logPath); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("log %s: %v, %v; want a regular file writable only by its owner", logPath, fi.Mode(), err)
		}
		if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
			t.Fatalf("destroy: %s", r)
		}
		checkDestroyed(t, lab, "faith0", pid)
	})
}
