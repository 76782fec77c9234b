package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// TestCreateErrors checks that "faithif create" fails cleanly: the right
// exit status (2 for usage errors, 1 for runtime errors), a message on
// stderr, and nothing left behind (no new link, no socket file).
func TestCreateErrors(t *testing.T) {
	lab := netlab.New(t)
	ns := lab.Router
	bin := netlab.Binary(t)
	pfx := netlab.FaithPrefix

	// An existing non-TUN link named faith1: a dummy, or a veth pair where
	// the kernel has no dummy driver.
	if _, err := ns.IP("link", "add", "faith1", "type", "dummy"); err != nil {
		t.Logf("no dummy link (%v): using a veth pair faith1/faith1p instead", err)
		if _, err := ns.IP("link", "add", "faith1", "type", "veth", "peer", "name", "faith1p"); err != nil {
			t.Fatal(err)
		}
	}
	// An existing persistent TAP device named faith4: a TUN device is
	// adopted (TestAdoptTUN), a TAP device never (nor attached to).
	if _, err := ns.IP("tuntap", "add", "dev", "faith4", "mode", "tap"); err != nil {
		t.Fatal(err)
	}
	tunBefore, err := ns.IP("-d", "-o", "link", "show", "dev", "faith4")
	if err != nil {
		t.Fatal(err)
	}
	dummyBefore, err := ns.IP("-d", "-o", "link", "show", "dev", "faith1")
	if err != nil {
		t.Fatal(err)
	}
	linksBefore, err := ns.LinkNames()
	if err != nil {
		t.Fatal(err)
	}

	// A run dir of the unprivileged user (nobody), writable by it alone, so
	// that for its run the only obstacle is the missing CAP_NET_ADMIN (a
	// run dir others may write to is refused before that: TestRunDirTrust).
	nobodyRunDir := netlab.TempDir(t, "nobody")
	if err := os.Chown(nobodyRunDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// A copy of the binary that nobody can execute whatever FAITHIF_BIN is.
	pubBin := publicCopy(t, bin)

	type tc struct {
		name     string
		argv     []string // command run in the router namespace
		env      []string
		runDir   string
		code     int
		stderrRE string // must match stderr (case-insensitive); every case has one
	}
	create := func(args ...string) []string { return append([]string{bin, "create"}, args...) }
	cases := []tc{
		{name: "BadName/eth0", argv: create("eth0", "--prefix", pfx, "-f"), code: 2, stderrRE: `^faithif: interface name "eth0": must be faith<N>`},
		{name: "BadName/faith", argv: create("faith", "--prefix", pfx, "-f"), code: 2, stderrRE: `^faithif: interface name "faith": must be faith<N>`},
		{name: "BadName/faithX", argv: create("faithX", "--prefix", pfx, "-f"), code: 2, stderrRE: `^faithif: interface name "faithX": must be faith<N>`},
		{name: "Exists", argv: create("faith1", "--prefix", pfx, "-f"), code: 1, stderrRE: `exist`},
		{name: "ExistsTap", argv: create("faith4", "--prefix", pfx, "-f"), code: 1, stderrRE: `already exists \(a TAP device`},
		{name: "Prefix/nonsense", argv: create("faith0", "--prefix", "nonsense", "-f"), code: 2, stderrRE: `^faithif: --prefix: prefix "nonsense": not an IPv6 prefix`},
		{name: "Prefix/IPv4", argv: create("faith0", "--prefix", "192.0.2.0/24", "-f"), code: 2, stderrRE: `^faithif: --prefix: prefix "192\.0\.2\.0/24": not an IPv6 prefix`},
		{name: "Prefix/TooLong", argv: create("faith0", "--prefix", "2001:db8::/97", "-f"), code: 2, stderrRE: `^faithif: --prefix: prefix "2001:db8::/97": longer than /96`},
		{
			name: "NoTun",
			argv: []string{"unshare", "-m", "sh", "-c", `mount -t tmpfs tmpfs /dev/net && exec "$0" "$@"`,
				bin, "create", "faith2", "--prefix", pfx, "-f"},
			code: 1, stderrRE: `/dev/net/tun`,
		},
		{
			name: "NoCapNetAdmin",
			argv: []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
				pubBin, "create", "faith3", "--prefix", pfx, "-f"},
			runDir: nobodyRunDir,
			code:   1, stderrRE: `permission|not permitted|cap_net_admin|privilege|eperm`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runDir := lab.RunDir
			if c.runDir != "" {
				runDir = c.runDir
			}
			if _, err := exec.LookPath(c.argv[0]); err != nil {
				t.Fatalf("%s not found: %v", c.argv[0], err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			r := netlab.RunCommand(ns.Command(ctx, []string{"FAITHIF_RUN_DIR=" + runDir}, c.argv[0], c.argv[1:]...))
			msg := strings.TrimSpace(r.Stderr)
			if lines := strings.Split(msg, "\n"); len(lines) > 1 {
				msg = fmt.Sprintf("%s [+%d lines]", lines[0], len(lines)-1)
			}
			t.Logf("%s: exit %d, stderr: %s", strings.Join(c.argv, " "), r.ExitCode, msg)
			if r.Err != nil {
				t.Errorf("did not exit by itself within 15 s (%v): it should have failed at once", r.Err)
			} else if r.ExitCode != c.code {
				t.Errorf("exit status %d, want %d", r.ExitCode, c.code)
			}
			// A panic also exits non-zero with something on stderr: each
			// case names its message, and a panic is never one.
			if c.stderrRE == "" {
				t.Fatalf("case %s has no expected message", c.name)
			}
			if strings.Contains(r.Stderr, "panic:") || strings.Contains(r.Stderr, "goroutine ") {
				t.Errorf("it panicked:\n%s", r.Stderr)
			} else if !regexp.MustCompile("(?im)" + c.stderrRE).MatchString(r.Stderr) {
				t.Errorf("stderr %q does not match /%s/im", r.Stderr, c.stderrRE)
			}
			if c.code == 2 && !strings.Contains(r.Stderr, "Run 'faithif create --help' for usage.") {
				t.Errorf("a usage error without the usage hint: %q", r.Stderr)
			}

			// Nothing left behind.
			links, err := ns.LinkNames()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(links, linksBefore) {
				t.Errorf("links after the failed create: %v, before: %v", links, linksBefore)
			}
			if socks, _ := filepath.Glob(filepath.Join(runDir, "*.sock")); len(socks) > 0 {
				t.Errorf("socket files left in the run dir: %v", socks)
			}
			if dummy, err := ns.IP("-d", "-o", "link", "show", "dev", "faith1"); err != nil || dummy != dummyBefore {
				t.Errorf("the existing faith1 changed:\nbefore: %s\nafter:  %s %v", dummyBefore, dummy, err)
			}
			if tun, err := ns.IP("-d", "-o", "link", "show", "dev", "faith4"); err != nil || tun != tunBefore {
				t.Errorf("the existing TUN faith4 changed:\nbefore: %s\nafter:  %s %v", tunBefore, tun, err)
			}
		})
	}
}

// publicCopy copies bin into a new world-readable directory and returns the
// copy's path, so that an unprivileged user can run it.
func publicCopy(t *testing.T, bin string) string {
	t.Helper()
	dir := netlab.TempDir(t, "pub")
	src, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "faithif")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
