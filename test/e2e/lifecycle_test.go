package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// createdRE matches what a background "faithif create" prints when the
// instance is ready.
var createdRE = regexp.MustCompile(`^(faith[0-9]+) created \(pid ([0-9]+), log (\S+)\)\n?$`)

// bgCreate runs "faithif create NAME ARGS..." without -f in the router and
// returns the pid of the background instance it reports. The instance is
// stopped by the lab's teardown if the test does not destroy it.
func bgCreate(t *testing.T, lab *netlab.Lab, name string, args ...string) int {
	t.Helper()
	start := time.Now()
	r := lab.Faithif(append([]string{"create", name}, args...)...)
	d := time.Since(start)
	if r.Err != nil || r.ExitCode != 0 {
		t.Fatalf("faithif create %s %s: %s", name, strings.Join(args, " "), r)
	}
	m := createdRE.FindStringSubmatch(r.Stdout)
	if m == nil || m[1] != name {
		t.Fatalf("faithif create %s: stdout %q, want %q", name, r.Stdout, name+" created (pid N, log FILE)")
	}
	if want := filepath.Join(lab.RunDir, name+".log"); m[3] != want {
		t.Errorf("faithif create %s: log %s, want %s", name, m[3], want)
	}
	pid, _ := strconv.Atoi(m[2])
	t.Logf("faithif create %s: pid %d, returned after %v", name, pid, d.Round(time.Millisecond))
	return pid
}

// readLog returns the log of a background instance.
func readLog(lab *netlab.Lab, name string) string {
	b, _ := os.ReadFile(filepath.Join(lab.RunDir, name+".log"))
	return string(b)
}

// socketPath returns the control socket of name in the lab's run dir.
func socketPath(lab *netlab.Lab, name string) string {
	return filepath.Join(lab.RunDir, name+".sock")
}

// checkDestroyed checks that instance name with process pid is gone: no
// link, no socket file (both at once), the process exits (10 s hang guard).
func checkDestroyed(t *testing.T, lab *netlab.Lab, name string, pid int) {
	t.Helper()
	if hasLink(t, lab, name) {
		t.Errorf("link %s still exists after destroy", name)
	}
	if _, err := os.Lstat(socketPath(lab, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket %s still there after destroy (%v)", socketPath(lab, name), err)
	}
	start := time.Now()
	if !netlab.WaitProcessGone(pid, 10*time.Second) {
		t.Errorf("process %d of %s still running 10 s after destroy returned", pid, name)
	} else if d := time.Since(start); d > 100*time.Millisecond {
		t.Logf("process %d exited %v after destroy returned", pid, d.Round(time.Millisecond))
	}
}

// TestBackgroundCreateDestroy checks "faithif create" without -f: it returns
// 0 only once the interface is up and the control socket answers; the
// instance relays; "faithif destroy" removes the link, the socket and the
// process.
func TestBackgroundCreateDestroy(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)

	pid := bgCreate(t, lab, "faith0", "--prefix", netlab.FaithPrefix, "--keepfaith")

	// Right after create returned: the link is there and up, show answers.
	out, err := lab.Router.IP("-o", "link", "show", "dev", "faith0")
	if err != nil {
		t.Fatalf("faith0 does not exist right after create returned: %v", err)
	}
	if !regexp.MustCompile(`<[^>]*\bUP\b[^>]*>`).MatchString(out) {
		t.Errorf("faith0 is not up right after create returned: %s", out)
	}
	st, err := lab.Show()
	if err != nil {
		t.Fatalf("show right after create returned: %v", err)
	}
	if st.PID != pid || st.Name != "faith0" || !st.KeepFaith || !slices.Equal(st.Prefixes, []string{netlab.FaithPrefix}) {
		t.Errorf("show: %s; want pid %d, faith0, keepfaith, prefixes [%s]", st.Raw, pid, netlab.FaithPrefix)
	}
	if !netlab.ProcessAlive(pid) {
		t.Fatalf("process %d reported by create is not running", pid)
	}
	if fi, err := os.Lstat(socketPath(lab, "faith0")); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("control socket: %v, %v; want a socket, mode 0600", fi.Mode(), err)
	}
	if _, ok := findLine(readLog(lab, "faith0"), "msg=ready"); !ok {
		t.Errorf("no msg=ready in the log file:\n%s", readLog(lab, "faith0"))
	}

	routeFaith(t, lab, netlab.FaithPrefix, "faith0")
	if err := echoRoundTrip(ctx, lab, serverAddr(port), "hello through a background faith0"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	r := lab.Faithif("destroy", "faith0")
	d := time.Since(start)
	if r.ExitCode != 0 {
		t.Fatalf("destroy faith0: %s", r)
	}
	if want := fmt.Sprintf("faith0 destroyed (pid %d)", pid); !strings.Contains(r.Stdout, want) {
		t.Errorf("destroy stdout %q, want %q", r.Stdout, want)
	}
	t.Logf("destroy took %v", d.Round(time.Millisecond))
	checkDestroyed(t, lab, "faith0", pid)
	if _, ok := findLine(readLog(lab, "faith0"), "msg=stopped"); !ok {
		t.Errorf("no msg=stopped in the log file:\n%s", readLog(lab, "faith0"))
	}
	// With no open flow the drain ends at once, not when the grace runs out.
	if strings.Contains(readLog(lab, "faith0"), "resetting flows") {
		t.Errorf("destroy with no open flow waited out the grace:\n%s", readLog(lab, "faith0"))
	}
}

// TestLabCleanupStopsBackground checks the harness itself: a background
// instance left running by a test is stopped by the lab's teardown.
func TestLabCleanupStopsBackground(t *testing.T) {
	var pid int
	var runDir string
	t.Run("Leave", func(t *testing.T) {
		lab := netlab.New(t)
		runDir = lab.RunDir
		pid = bgCreate(t, lab, "faith0", "--prefix", netlab.FaithPrefix)
	})
	if pid == 0 {
		t.Fatal("no background instance was started")
	}
	if netlab.ProcessAlive(pid) {
		t.Errorf("background faithif (pid %d) still running after its lab was torn down", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if pids := netlab.RunDirPids(runDir); len(pids) > 0 {
		t.Errorf("processes of %s still running: %v", runDir, pids)
	}
}

// TestLifecycleErrors checks the error exits of create, destroy and reload,
// and that a failed create leaves nothing behind.
func TestLifecycleErrors(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, 2*time.Minute)
	port := echoServer(t, lab)
	pfx := netlab.FaithPrefix
	confDir := netlab.TempDir(t, "conf")

	expect := func(t *testing.T, r netlab.Result, code int, subs ...string) {
		t.Helper()
		t.Logf("exit %d, stderr: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
		if r.Err != nil || r.ExitCode != code {
			t.Errorf("exit %d, want %d: %s", r.ExitCode, code, r)
		}
		for _, s := range subs {
			if !strings.Contains(r.Stderr, s) {
				t.Errorf("stderr %q does not mention %q", r.Stderr, s)
			}
		}
	}

	t.Run("DestroyNotRunning", func(t *testing.T) {
		expect(t, lab.Faithif("destroy", "faith9"), 1, "not running")
	})
	t.Run("ReloadNotRunning", func(t *testing.T) {
		expect(t, lab.Faithif("reload", "faith9"), 1, "not running")
	})
	t.Run("BadFlag", func(t *testing.T) {
		expect(t, lab.Faithif("create", "faith0", "--frob"), 2, "frob")
		expect(t, lab.Faithif("create", "faith0", "--prefix", pfx, "--frob", "-f"), 2, "frob")
		checkNothingLeft(t, lab, "after create --frob")
	})

	missing := filepath.Join(confDir, "nonexistent.conf")
	bad := filepath.Join(confDir, "bad.conf")
	if err := os.WriteFile(bad, []byte("2001:db8:1::/64 permit 192.0.2.0/24\n2001:db8:1::/64 allow 192.0.2.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		args []string
	}{{"Background", nil}, {"Foreground", []string{"-f"}}} {
		t.Run("ConfigMissing/"+mode.name, func(t *testing.T) {
			args := append([]string{"create", "faith0", "--prefix", pfx, "--access", missing}, mode.args...)
			expect(t, lab.Faithif(args...), 1, missing)
			checkNothingLeft(t, lab, "after create --config "+missing)
		})
		t.Run("ConfigBadLine/"+mode.name, func(t *testing.T) {
			args := append([]string{"create", "faith0", "--prefix", pfx, "--access", bad}, mode.args...)
			expect(t, lab.Faithif(args...), 1, bad+":2:")
			checkNothingLeft(t, lab, "after create with a bad config")
		})
	}

	t.Run("CreateTwice", func(t *testing.T) {
		pid := bgCreate(t, lab, "faith0", "--prefix", pfx, "--keepfaith")
		routeFaith(t, lab, pfx, "faith0")
		if err := echoRoundTrip(ctx, lab, serverAddr(port), "first"); err != nil {
			t.Fatal(err)
		}
		expect(t, lab.Faithif("create", "faith0", "--prefix", pfx, "--keepfaith"), 1, "already exists")
		expect(t, lab.Faithif("create", "faith0", "--prefix", pfx, "--keepfaith", "-f"), 1, "already exists")
		// Reload of an instance without --config is an error too.
		expect(t, lab.Faithif("reload", "faith0"), 1)

		// The first instance is untouched.
		st, err := lab.Show()
		if err != nil {
			t.Fatal(err)
		}
		if st.PID != pid {
			t.Errorf("show pid %d after the second create, want %d", st.PID, pid)
		}
		if err := echoRoundTrip(ctx, lab, serverAddr(port), "still works after the second create"); err != nil {
			t.Fatal(err)
		}
		if pids := netlab.RunDirPids(lab.RunDir); !slices.Equal(pids, []int{pid}) {
			t.Errorf("faithif processes running: %v, want only %d", pids, pid)
		}
		if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
			t.Fatalf("destroy: %s", r)
		}
		checkDestroyed(t, lab, "faith0", pid)
	})
}

// routeRE matches "PREFIX dev DEV" at the start of a line of "ip -6 route".
func routeRE(prefix, dev string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + ` dev ` + regexp.QuoteMeta(dev) + `\b`)
}

func routes6(t *testing.T, lab *netlab.Lab) string {
	t.Helper()
	out, err := lab.Router.IP("-6", "route", "show")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRouteFlag checks create --route: the routes to faithN are installed
// before create returns, flows work without a hand-made route, and destroy
// removes them.
func TestRouteFlag(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)

	for _, tc := range []struct {
		name     string
		prefixes []string
	}{
		{"OnePrefix", []string{netlab.FaithPrefix}},
		{"TwoPrefixes", []string{netlab.FaithPrefix, "2001:db8:64::/64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--route", "--keepfaith"}
			for _, p := range tc.prefixes {
				args = append(args, "--prefix", p)
			}
			pid := bgCreate(t, lab, "faith0", args...)
			rt := routes6(t, lab)
			for _, p := range tc.prefixes {
				if !routeRE(p, "faith0").MatchString(rt) {
					t.Errorf("no route %s dev faith0 after create --route; ip -6 route:\n%s", p, rt)
				}
			}
			st, err := lab.Show()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(st.Routes, tc.prefixes) {
				t.Errorf("show routes %v, want %v", st.Routes, tc.prefixes)
			}
			for i, p := range tc.prefixes {
				addr := faithTo(p, netlab.ServerAddr, port)
				if err := echoRoundTrip(ctx, lab, addr, fmt.Sprintf("via %s", p)); err != nil {
					t.Errorf("through %s: %v", p, err)
				}
				if st, err := lab.Show(); err != nil {
					t.Fatal(err)
				} else if st.FlowsAccepted != uint64(i+1) {
					t.Errorf("flows_accepted %d after a flow through %s, want %d", st.FlowsAccepted, p, i+1)
				}
			}
			if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
				t.Fatalf("destroy: %s", r)
			}
			checkDestroyed(t, lab, "faith0", pid)
			rt = routes6(t, lab)
			for _, p := range tc.prefixes {
				if strings.Contains(rt, p) {
					t.Errorf("route %s still there after destroy; ip -6 route:\n%s", p, rt)
				}
			}
		})
	}
}

// TestRouteExists checks create --route when one of the routes is already
// there: create fails naming it, the routes it had added are removed again,
// the route that was there stays, and nothing else is left.
func TestRouteExists(t *testing.T) {
	lab := netlab.New(t)
	const taken = "2001:db8:64::/64"
	if _, err := lab.Router.IP("-6", "route", "add", "blackhole", taken); err != nil {
		t.Fatal(err)
	}
	before := routes6(t, lab)
	for _, fg := range [][]string{nil, {"-f"}} {
		args := append([]string{"create", "faith0", "--prefix", netlab.FaithPrefix, "--prefix", taken, "--route", "--keepfaith"}, fg...)
		r := lab.Faithif(args...)
		t.Logf("%s: exit %d, stderr %q", strings.Join(args, " "), r.ExitCode, r.Stderr)
		if r.ExitCode != 1 {
			t.Errorf("exit %d, want 1: %s", r.ExitCode, r)
		}
		if !strings.Contains(r.Stderr, taken) || !strings.Contains(r.Stderr, "exists") {
			t.Errorf("stderr %q does not say the route for %s already exists", r.Stderr, taken)
		}
		checkNothingLeft(t, lab, "after create --route over an existing route")
		if after := routes6(t, lab); after != before {
			t.Errorf("routes changed by the failed create:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}
}

// TestTwoInterfaces runs faith0 and faith1 side by side in the router, each
// with its own prefix and route: flows go through the right one, each
// instance counts only its own, list shows both.
func TestTwoInterfaces(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)

	ifs := []struct {
		name, prefix string
		flows        int
	}{
		{"faith0", "2001:db8:46::/96", 2},
		{"faith1", "2001:db8:47::/96", 3},
	}
	pids := map[string]int{}
	for _, fi := range ifs {
		pids[fi.name] = bgCreate(t, lab, fi.name, "--prefix", fi.prefix, "--route", "--keepfaith")
	}
	if pids["faith0"] == pids["faith1"] {
		t.Fatalf("both interfaces report pid %d", pids["faith0"])
	}
	for _, fi := range ifs {
		addr := faithTo(fi.prefix, netlab.ServerAddr, port)
		for i := range fi.flows {
			if err := echoRoundTrip(ctx, lab, addr, fmt.Sprintf("%s flow %d", fi.name, i)); err != nil {
				t.Fatalf("%s: %v", fi.name, err)
			}
		}
	}
	for _, fi := range ifs {
		st, err := lab.ShowIf(fi.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Name != fi.name || st.PID != pids[fi.name] || !slices.Equal(st.Prefixes, []string{fi.prefix}) ||
			!slices.Equal(st.Routes, []string{fi.prefix}) {
			t.Errorf("show %s: %s; want name %s, pid %d, prefixes and routes [%s]", fi.name, st.Raw, fi.name, pids[fi.name], fi.prefix)
		}
		if st.FlowsAccepted != uint64(fi.flows) || st.FlowsTotal != uint64(fi.flows) {
			t.Errorf("show %s: flows_accepted %d, flows_total %d, want %d (its own flows only)", fi.name, st.FlowsAccepted, st.FlowsTotal, fi.flows)
		}
	}
	all, raw, err := lab.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range all {
		names = append(names, st.Name)
		if st.PID != pids[st.Name] {
			t.Errorf("list: %s has pid %d, want %d", st.Name, st.PID, pids[st.Name])
		}
	}
	if !slices.Equal(names, []string{"faith0", "faith1"}) {
		t.Errorf("list --json names %v, want [faith0 faith1]:\n%s", names, raw)
	}

	// Destroying one leaves the other working.
	if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
		t.Fatalf("destroy faith0: %s", r)
	}
	checkDestroyed(t, lab, "faith0", pids["faith0"])
	addr1 := faithTo(ifs[1].prefix, netlab.ServerAddr, port)
	if err := echoRoundTrip(ctx, lab, addr1, "faith1 after faith0 is gone"); err != nil {
		t.Fatal(err)
	}
	if r := lab.Faithif("destroy", "faith1"); r.ExitCode != 0 {
		t.Fatalf("destroy faith1: %s", r)
	}
	checkDestroyed(t, lab, "faith1", pids["faith1"])
	if rt := routes6(t, lab); strings.Contains(rt, "faith") {
		t.Errorf("routes to faith links left:\n%s", rt)
	}
	if all, raw, err := lab.List(); err != nil {
		t.Error(err)
	} else if len(all) != 0 || strings.TrimSpace(raw) != "[]" {
		t.Errorf("list --json with no instance: %q, want []", raw)
	}
}

// TestLinkDelete checks that "ip link del faith0" ends the instance cleanly:
// exit status 0, control socket removed; also with flows open, whose IPv4
// sides are then reset at once (the interface is gone, so nothing can be
// drained): each server reads ECONNRESET, not the EOF a process exit would
// give, and not nothing.
func TestLinkDelete(t *testing.T) {
	for _, flows := range []int{0, 3} {
		name := "Idle"
		if flows > 0 {
			name = "OpenFlows"
		}
		t.Run(name, func(t *testing.T) {
			lab, f := startLab(t, "--keepfaith")
			ctx := testCtx(t, time.Minute)
			port := echoServer(t, lab)
			if err := echoRoundTrip(ctx, lab, serverAddr(port), "before ip link del"); err != nil {
				t.Fatal(err)
			}
			// A server that echoes one byte, then reports how its side of
			// the flow ends.
			l, hport := listenServer(t, lab)
			serverEnd := make(chan error, flows)
			serve(t, l, func(c *net.TCPConn) {
				c.SetDeadline(time.Now().Add(time.Minute)) // hang guard
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err != nil {
					serverEnd <- fmt.Errorf("before the echo: %w", err)
					return
				}
				c.Write(b)
				_, err := c.Read(b)
				serverEnd <- err
			})
			for range flows {
				c := mustDialServer(t, ctx, lab, hport)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "x")
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			}
			f.ExpectExit()
			start := time.Now()
			if _, err := lab.Router.IP("link", "del", "faith0"); err != nil {
				t.Fatal(err)
			}
			for i := range flows {
				select {
				case err := <-serverEnd:
					if !errors.Is(err, syscall.ECONNRESET) {
						t.Errorf("flow %d: the IPv4 server read %v after ip link del, want ECONNRESET", i, err)
					} else {
						t.Logf("flow %d: the IPv4 server was reset %v after ip link del", i, time.Since(start).Round(time.Millisecond))
					}
				case <-time.After(30 * time.Second): // hang guard
					t.Fatalf("flow %d: the IPv4 server side still open 30 s after ip link del", i)
				}
			}
			if !f.Wait(5 * time.Second) {
				t.Fatalf("faithif still running 5 s after ip link del faith0")
			}
			t.Logf("faithif exited %v after ip link del", time.Since(start).Round(time.Millisecond))
			if err := f.ExitErr(); err != nil {
				t.Errorf("faithif exit after ip link del: %v, want status 0\nstderr:\n%s", err, f.Stderr())
			}
			if _, err := os.Lstat(socketPath(lab, "faith0")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("control socket still there after the instance exited (%v)", err)
			}
			if r := lab.Faithif("show", "faith0"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "faithif: show: faith0: not running") {
				t.Errorf("show faith0 after exit: %s, want exit 1, faith0: not running", r)
			}
			if flows > 0 {
				if line, ok := findLine(f.Stderr(), "resetting open flows"); !ok {
					t.Errorf("the log does not say the open flows were reset:\n%s", f.Stderr())
				} else {
					t.Logf("log: %s", line)
				}
			}
		})
	}
}

// TestBackgroundSigterm checks that SIGTERM stops a background instance
// like destroy does.
func TestBackgroundSigterm(t *testing.T) {
	lab := netlab.New(t)
	pid := bgCreate(t, lab, "faith0", "--prefix", netlab.FaithPrefix, "--route", "--keepfaith")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !netlab.WaitProcessGone(pid, 3*time.Second) {
		t.Fatalf("background faithif (pid %d) still running 3 s after SIGTERM", pid)
	}
	checkDestroyed(t, lab, "faith0", pid)
	if rt := routes6(t, lab); strings.Contains(rt, "faith0") {
		t.Errorf("route to faith0 left after SIGTERM:\n%s", rt)
	}
	if _, ok := findLine(readLog(lab, "faith0"), "msg=stopped"); !ok {
		t.Errorf("no msg=stopped in the log:\n%s", readLog(lab, "faith0"))
	}
}

// makeStaleSocket leaves a Unix socket file at path that nobody listens on,
// as a crashed instance would.
func makeStaleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("stale socket %s: %v %v", path, fi, err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		t.Fatalf("someone answers on the stale socket %s", path)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial the stale socket %s: %v, want ECONNREFUSED", path, err)
	}
}

// TestStaleSocket checks that a control socket left by a crashed instance
// does not stop a new instance: it is replaced (and logged), mode 0600.
func TestStaleSocket(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	sock := socketPath(lab, "faith0")

	checkSocket := func(t *testing.T, wantPid int) {
		t.Helper()
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("control socket mode %v, want a socket with mode 0600", fi.Mode())
		}
		st, err := lab.Show()
		if err != nil {
			t.Fatal(err)
		}
		if st.PID != wantPid {
			t.Errorf("show pid %d, want %d", st.PID, wantPid)
		}
		routeFaith(t, lab, netlab.FaithPrefix, "faith0")
		if err := echoRoundTrip(ctx, lab, serverAddr(port), "after a stale socket"); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Background", func(t *testing.T) {
		makeStaleSocket(t, sock)
		pid := bgCreate(t, lab, "faith0", "--prefix", netlab.FaithPrefix, "--keepfaith")
		if line, ok := findLine(readLog(lab, "faith0"), "stale control socket", sock); !ok {
			t.Errorf("the log does not say the stale socket was replaced:\n%s", readLog(lab, "faith0"))
		} else {
			t.Logf("log: %s", line)
		}
		checkSocket(t, pid)
		if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
			t.Fatalf("destroy: %s", r)
		}
		checkDestroyed(t, lab, "faith0", pid)
	})
	t.Run("Foreground", func(t *testing.T) {
		makeStaleSocket(t, sock)
		f := lab.StartFaithif(t, "--keepfaith")
		if line, ok := f.WaitLog(time.Second, func(l string) bool { return hasAll(l, "stale control socket", sock) }); !ok {
			t.Errorf("the log does not say the stale socket was replaced:\n%s", f.Stderr())
		} else {
			t.Logf("log: %s", line)
		}
		checkSocket(t, f.Pid())
		if err := f.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
}

// TestConcurrentCreate starts three background "create faith0" at once,
// ten times: exactly one wins, the others exit 1 saying the interface
// already exists, and their error is their own: one line, without log lines
// of the winning instance or of the other losers (all background instances
// of faith0 append to the same RUNDIR/faith0.log, from which a failed
// create reports its error).
func TestConcurrentCreate(t *testing.T) {
	lab := netlab.New(t)
	const rounds, racers = 10, 3
	foreign := 0
	for i := range rounds {
		var wg sync.WaitGroup
		res := make([]netlab.Result, racers)
		for j := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[j] = lab.Faithif("create", "faith0", "--prefix", netlab.FaithPrefix)
			}()
		}
		wg.Wait()
		winners := 0
		for _, r := range res {
			if r.ExitCode == 0 {
				winners++
				continue
			}
			if r.ExitCode != 1 || !strings.Contains(r.Stderr, "already exists") {
				t.Errorf("round %d: a losing create: %s; want exit 1, already exists", i, r)
			}
			if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 {
				foreign++
				if foreign <= 3 {
					t.Errorf("round %d: a losing create printed %d lines, want its own error only:\n%s", i, len(lines), r.Stderr)
				}
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d of %d concurrent creates succeeded, want 1: %v", i, winners, racers, res)
		}
		if _, err := lab.Show(); err != nil {
			t.Fatal(err)
		}
		if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
			t.Fatalf("round %d: destroy: %s", i, r)
		}
		checkNothingLeft(t, lab, fmt.Sprintf("round %d", i))
	}
	if foreign > 0 {
		t.Errorf("%d of %d losing creates reported more than their own error", foreign, rounds*(racers-1))
	}
}

// TestAdoptTUN: a persistent TUN device made beforehand (ip tuntap add, as a
// host does for a container that may not create devices) is adopted by
// create, relays, and is left in place by destroy with its MTU and down
// state as they were; a second create while it is adopted is refused.
func TestAdoptTUN(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	if _, err := lab.Router.IP("tuntap", "add", "dev", "faith0", "mode", "tun"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Router.IP("link", "set", "dev", "faith0", "mtu", "1400"); err != nil {
		t.Fatal(err)
	}
	link := func() string {
		t.Helper()
		out, err := lab.Router.IP("-d", "-o", "link", "show", "dev", "faith0")
		if err != nil {
			t.Fatalf("faith0 is gone: %v", err)
		}
		return out
	}
	up := regexp.MustCompile(`<[^>]*\bUP\b[^>]*>`)

	for round := 1; round <= 2; round++ {
		pid := bgCreate(t, lab, "faith0", "--prefix", netlab.FaithPrefix, "--keepfaith")
		if l := link(); !up.MatchString(l) || !strings.Contains(l, " mtu 1500 ") {
			t.Errorf("round %d: adopted faith0 is not up with mtu 1500: %s", round, l)
		}
		if _, ok := findLine(readLog(lab, "faith0"), `msg="adopted an existing TUN device"`); !ok {
			t.Errorf("round %d: no adoption line in the log:\n%s", round, readLog(lab, "faith0"))
		}
		if r := lab.Faithif("create", "faith0", "--prefix", netlab.FaithPrefix, "-f"); r.ExitCode != 1 || !strings.Contains(r.Stderr, "in use by another") {
			t.Errorf("round %d: a second create while adopted: %s; want exit 1, in use by another instance or process", round, r)
		}
		routeFaith(t, lab, netlab.FaithPrefix, "faith0")
		if err := echoRoundTrip(ctx, lab, serverAddr(port), fmt.Sprintf("round %d through an adopted faith0", round)); err != nil {
			t.Fatal(err)
		}
		if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
			t.Fatalf("round %d: destroy: %s", round, r)
		}
		if !netlab.WaitProcessGone(pid, 5*time.Second) {
			t.Fatalf("round %d: faithif pid %d still running after destroy", round, pid)
		}
		l := link()
		if up.MatchString(l) || !strings.Contains(l, " mtu 1400 ") || !strings.Contains(l, "persist on") {
			t.Errorf("round %d: after destroy faith0 should be there as it was (down, mtu 1400, persistent): %s", round, l)
		}
	}
}

// TestCreateWarnings: create says once what keeps the interface from
// relaying as expected (keepfaith 0, IPv6 forwarding off) and how to fix it;
// show says the same while it holds, and nothing once it is fixed.
func TestCreateWarnings(t *testing.T) {
	lab := netlab.New(t)
	const keepWarn, fwdWarn = "keepfaith is 0: nothing is captured", "IPv6 forwarding is off"
	warnings := func() []string {
		t.Helper()
		st, err := lab.Show()
		if err != nil {
			t.Fatal(err)
		}
		return st.Warnings
	}
	has := func(ws []string, sub string) bool {
		return slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, sub) })
	}

	r := lab.Faithif("create", "faith0", "--prefix", netlab.FaithPrefix)
	if r.ExitCode != 0 {
		t.Fatalf("create: %s", r)
	}
	if want := "faithif: warning: faith0: " + keepWarn + "; turn it on with 'faithif sysctl -w net.inet6.ip6.keepfaith=1' (or create --keepfaith)\n"; r.Stderr != want {
		t.Errorf("create's stderr with keepfaith 0 and forwarding on:\n%q\nwant\n%q", r.Stderr, want)
	}
	if ws := warnings(); len(ws) != 1 || !has(ws, keepWarn) {
		t.Errorf("show warnings %q, want only the keepfaith one", ws)
	}
	if r := lab.Faithif("sysctl", "-w", "net.inet6.ip6.keepfaith=1"); r.ExitCode != 0 {
		t.Fatalf("sysctl: %s", r)
	}
	if ws := warnings(); len(ws) != 0 {
		t.Errorf("show warnings %q with keepfaith 1 and forwarding on, want none", ws)
	}
	if err := lab.Router.Sysctl("net.ipv6.conf.all.forwarding", "0"); err != nil {
		t.Fatal(err)
	}
	if ws := warnings(); len(ws) != 1 || !has(ws, fwdWarn) || !has(ws, "reach faith0") {
		t.Errorf("show warnings %q with forwarding off, want the forwarding one naming faith0", ws)
	}
	if r := lab.Faithif("show", "faith0"); !strings.Contains(r.Stdout, fwdWarn) {
		t.Errorf("text show does not carry the warning:\n%s", r.Stdout)
	}
	if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
		t.Fatalf("destroy: %s", r)
	}
	// A new instance with forwarding still off says so at once.
	r = lab.Faithif("create", "faith0", "--prefix", netlab.FaithPrefix, "--keepfaith")
	if r.ExitCode != 0 {
		t.Fatalf("create: %s", r)
	}
	if !strings.Contains(r.Stderr, "faithif: warning: faith0: "+fwdWarn) || strings.Contains(r.Stderr, keepWarn) {
		t.Errorf("create's stderr with forwarding off and --keepfaith: %q; want only the forwarding warning", r.Stderr)
	}
}

// TestHealth: 'faithif health' exits 0 only while the interfaces relay,
// and otherwise 1 saying why.
func TestHealth(t *testing.T) {
	lab := netlab.New(t)
	check := func(what string, r netlab.Result, code int, stdout, stderrSub string) {
		t.Helper()
		if r.Err != nil || r.ExitCode != code || r.Stdout != stdout || !strings.Contains(r.Stderr, stderrSub) || strings.Contains(r.Stderr, "panic") {
			t.Errorf("%s: %s; want exit %d, stdout %q, stderr with %q", what, r, code, stdout, stderrSub)
		}
	}
	check("nothing running", lab.Faithif("health"), 1, "", "not ready: no faith interfaces are running")
	if r := lab.Faithif("create", "faith0", "--prefix", netlab.FaithPrefix); r.ExitCode != 0 {
		t.Fatalf("create: %s", r)
	}
	check("keepfaith 0", lab.Faithif("health"), 1, "", "faithif: health: not ready: faith0: keepfaith is 0, nothing is captured")
	if r := lab.Faithif("sysctl", "-w", "net.inet6.ip6.keepfaith=1"); r.ExitCode != 0 {
		t.Fatalf("sysctl: %s", r)
	}
	check("relaying", lab.Faithif("health"), 0, "faith0: ready\n", "")
	check("relaying, by name", lab.Faithif("health", "faith0"), 0, "faith0: ready\n", "")
	check("another name", lab.Faithif("health", "faith1"), 1, "", "faith1: not running")
	if _, err := lab.Router.IP("link", "set", "dev", "faith0", "down"); err != nil {
		t.Fatal(err)
	}
	check("link down", lab.Faithif("health", "faith0"), 1, "", "faith0 is down")
	check("bad flag", lab.Faithif("health", "--frob"), 2, "", "frob")
	check("bad name", lab.Faithif("health", "eth0"), 2, "", "must be faith<N>")
}

// TestDestroyUsesInstanceGrace: destroy without --grace drains for the
// instance's own grace (show says it), not a default of its own; a bad
// --grace is a usage error that says what a duration is.
func TestDestroyUsesInstanceGrace(t *testing.T) {
	lab := netlab.New(t)
	bgCreate(t, lab, "faith0", "--prefix", netlab.FaithPrefix, "--grace", "1500ms")
	if st, err := lab.Show(); err != nil || st.Grace != "1.5s" {
		t.Fatalf("show: grace %q (%v); want 1.5s", st.Grace, err)
	}
	for _, bad := range []string{"xyz", "1", "-1s"} {
		r := lab.Faithif("destroy", "faith0", "--grace", bad)
		if r.ExitCode != 2 || !strings.Contains(r.Stderr, "--grace") || strings.Contains(r.Stderr, "parse error") {
			t.Errorf("destroy --grace %s: %s; want exit 2 naming --grace and saying why", bad, r)
		}
	}
	if r := lab.Faithif("destroy", "faith0"); r.ExitCode != 0 {
		t.Fatalf("destroy: %s", r)
	}
	if _, ok := findLine(readLog(lab, "faith0"), "msg=stopping", "why=destroy", "grace=1.5s"); !ok {
		t.Errorf("no stopping line with the instance's grace=1.5s:\n%s", readLog(lab, "faith0"))
	}
}

// TestOverlapAcrossInstances: a create whose prefix overlaps one of an
// interface already running in the namespace is refused, naming it, and
// leaves nothing behind; a prefix beside it is fine.
func TestOverlapAcrossInstances(t *testing.T) {
	lab := netlab.New(t)
	pid := bgCreate(t, lab, "faith0", "--prefix", "2001:db8:46::/96")
	for _, fg := range [][]string{nil, {"-f"}} {
		r := lab.Faithif(append([]string{"create", "faith1", "--prefix", "2001:db8:46::/64"}, fg...)...)
		want := fmt.Sprintf("prefix 2001:db8:46::/64 overlaps 2001:db8:46::/96 of faith0 (pid %d)", pid)
		if r.ExitCode != 1 || !strings.Contains(r.Stderr, want) {
			t.Errorf("create faith1 %v with an overlapping prefix: %s; want exit 1 and %q", fg, r, want)
		}
		if hasLink(t, lab, "faith1") {
			t.Errorf("faith1 left behind after the refused create")
		}
	}
	bgCreate(t, lab, "faith1", "--prefix", "2001:db8:47::/96")
}
