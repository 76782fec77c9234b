package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/status"
	"github.com/faithif/faithif/test/netlab"
)

// Tests of the run directory chosen per network namespace: without
// FAITHIF_RUN_DIR, each namespace has its own control sockets, keepfaith
// value and logs (/run/faithif/netns/COOKIE outside PID 1's namespace).

// nsFaithif runs "faithif ARGS..." in ns with FAITHIF_RUN_DIR empty (as if
// unset, whatever the test's environment): the namespace's own run
// directory.
func nsFaithif(t *testing.T, ns *netlab.Namespace, args ...string) netlab.Result {
	t.Helper()
	return faithifIn(t, ns, "", args...)
}

// nsList runs "faithif list --json" in ns (its own run directory) and
// decodes it strictly.
func nsList(t *testing.T, ns *netlab.Namespace) []status.Status {
	t.Helper()
	r := nsFaithif(t, ns, "list", "--json")
	if r.ExitCode != 0 {
		t.Fatalf("faithif list --json in %s: %s", ns.Name, r)
	}
	l, err := status.DecodeList([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("faithif list --json in %s: %v in %q", ns.Name, err, r.Stdout)
	}
	return l
}

// nsShow runs "faithif show faith0 --json" in ns (its own run directory).
func nsShow(t *testing.T, ns *netlab.Namespace) *status.Status {
	t.Helper()
	r := nsFaithif(t, ns, "show", "faith0", "--json")
	if r.ExitCode != 0 {
		t.Fatalf("faithif show faith0 --json in %s: %s", ns.Name, r)
	}
	st, err := status.Decode([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("faithif show faith0 --json in %s: %v in %q", ns.Name, err, r.Stdout)
	}
	return st
}

// nsKeepfaith returns what "faithif sysctl net.inet6.ip6.keepfaith" prints
// in ns (its own run directory).
func nsKeepfaith(t *testing.T, ns *netlab.Namespace) string {
	t.Helper()
	r := nsFaithif(t, ns, "sysctl", keepfaithKey)
	if r.ExitCode != 0 {
		t.Fatalf("faithif sysctl %s in %s: %s", keepfaithKey, ns.Name, r)
	}
	return strings.TrimSpace(r.Stdout)
}

// isReady reports whether a faithif create log line says it is ready.
func isReady(line string) bool { return strings.Contains(line, "msg=ready") }

// TestPerNamespaceControl runs faith0 in two routers (two labs, one
// network namespace each) without FAITHIF_RUN_DIR, each with its own
// prefix: A in the foreground with --keepfaith, B created in the
// background while A runs, keepfaith set in B by "faithif sysctl". Each
// namespace has its own run directory (/run/faithif/netns/COOKIE), both
// relay, and every command acts on the caller's namespace only: list,
// show, sysctl (keepfaith=0 in A leaves B capturing), destroy (in A leaves
// B relaying). The lab removes both run directories with the namespaces.
func TestPerNamespaceControl(t *testing.T) {
	const prefixA, prefixB = netlab.FaithPrefix, "2001:db8:47::/96"
	var dirs []string
	var made []string // the directories above them this test makes
	for _, d := range []string{faithif.NetnsRunDirs, faithif.DefaultRunDir} {
		if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
			made = append(made, d)
		}
	}
	t.Cleanup(func() { // after the labs' teardown: nothing of ours is left
		for _, d := range dirs {
			if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("run directory %s left behind (%v)", d, err)
			}
		}
		for _, d := range made {
			os.Remove(d) // unless something else uses it by now
		}
	})
	labA, labB := netlab.New(t), netlab.New(t)
	ctx := testCtx(t, 2*time.Minute)
	portA, portB := echoServer(t, labA), echoServer(t, labB)
	addrA, addrB := faithTo(prefixA, netlab.ServerAddr, portA), faithTo(prefixB, netlab.ServerAddr, portB)

	dirA, err := labA.Router.FaithifRunDir()
	if err != nil {
		t.Fatal(err)
	}
	dirB, err := labB.Router.FaithifRunDir()
	if err != nil {
		t.Fatal(err)
	}
	dirs = []string{dirA, dirB}
	t.Logf("run directories: A %s, B %s", dirA, dirB)
	for _, d := range dirs {
		if !strings.HasPrefix(d, faithif.NetnsRunDirs+"/") {
			t.Fatalf("run directory %s of a lab router is not under %s", d, faithif.NetnsRunDirs)
		}
	}
	if dirA == dirB {
		t.Fatalf("two namespaces share the run directory %s", dirA)
	}

	bin := netlab.Binary(t)
	fA := labA.Start(t, netlab.StartSpec{
		Env:   []string{"FAITHIF_RUN_DIR="},
		Argv:  []string{bin, "create", "faith0", "--prefix", prefixA, "--route", "--keepfaith", "-f"},
		Ready: isReady,
	})
	if !strings.Contains(fA.Stderr(), "control="+filepath.Join(dirA, "faith0.sock")) {
		t.Errorf("A's ready line does not name its control socket in %s:\n%s", dirA, fA.Stderr())
	}

	// B: the same name, created in the background while A runs.
	r := nsFaithif(t, labB.Router, "create", "faith0", "--prefix", prefixB, "--route")
	if r.ExitCode != 0 {
		t.Fatalf("faithif create faith0 in B while A runs faith0: %s", r)
	}
	m := regexp.MustCompile(`^faith0 created \(pid ([0-9]+), log (\S+)\)\n$`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("faithif create faith0 in B: stdout %q", r.Stdout)
	}
	pidB, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { // before the lab's teardown, even if the test fails
		if netlab.ProcessAlive(pidB) {
			syscall.Kill(pidB, syscall.SIGKILL)
			netlab.WaitProcessGone(pidB, 5*time.Second)
		}
	})
	if want := filepath.Join(dirB, "faith0.log"); m[2] != want {
		t.Errorf("B's log is %s, want %s", m[2], want)
	}

	// keepfaith is per namespace: 1 in A (--keepfaith), 0 in B until set
	// there.
	if k := nsKeepfaith(t, labB.Router); k != keepfaithKey+": 0" {
		t.Errorf("keepfaith in B after A's --keepfaith: %q, want 0", k)
	}
	if k := nsKeepfaith(t, labA.Router); k != keepfaithKey+": 1" {
		t.Errorf("keepfaith in A: %q, want 1", k)
	}
	if r := nsFaithif(t, labB.Router, "sysctl", keepfaithKey+"=1"); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != keepfaithKey+": 0 -> 1" {
		t.Fatalf("faithif sysctl %s=1 in B: %s", keepfaithKey, r)
	}
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "keepfaith")); err != nil || string(b) != "1\n" {
			t.Errorf("%s/keepfaith: %q, %v; want 1", d, b, err)
		}
	}

	// Both relay.
	if err := echoRoundTrip(ctx, labA, addrA, "through A"); err != nil {
		t.Fatalf("through A: %v", err)
	}
	if err := echoRoundTrip(ctx, labB, addrB, "through B"); err != nil {
		t.Fatalf("through B: %v", err)
	}

	// list and show in each namespace see its own faith0 only.
	for _, c := range []struct {
		name   string
		ns     *netlab.Namespace
		pid    int
		prefix string
	}{{"A", labA.Router, fA.Pid(), prefixA}, {"B", labB.Router, pidB, prefixB}} {
		l := nsList(t, c.ns)
		if len(l) != 1 || l[0].Name != "faith0" || l[0].PID != c.pid || !slices.Equal(l[0].Prefixes, []string{c.prefix}) ||
			l[0].Owner != status.OwnerCreate || !l[0].KeepFaith || l[0].FlowsAccepted != 1 {
			t.Errorf("list in %s: %+v; want only faith0 of pid %d, prefix %s, created, keepfaith 1, 1 flow", c.name, l, c.pid, c.prefix)
		}
	}

	// keepfaith=0 in A: A discards, B still captures (discards nothing
	// more for keepfaith: what it did, before keepfaith was set there,
	// were the link's own first packets).
	discardedB := nsShow(t, labB.Router).PacketsDiscarded["keepfaith"]
	if r := nsFaithif(t, labA.Router, "sysctl", keepfaithKey+"=0"); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != keepfaithKey+": 1 -> 0" {
		t.Fatalf("faithif sysctl %s=0 in A: %s", keepfaithKey, r)
	}
	if st := nsShow(t, labA.Router); st.KeepFaith {
		t.Errorf("show in A after keepfaith=0 there: keepfaith 1")
	}
	if st := nsShow(t, labB.Router); !st.KeepFaith {
		t.Errorf("show in B after keepfaith=0 in A: keepfaith 0, want 1 (untouched)")
	}
	if k := nsKeepfaith(t, labB.Router); k != keepfaithKey+": 1" {
		t.Errorf("keepfaith in B after keepfaith=0 in A: %q, want 1", k)
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	c, err := dialTo(dctx, labA, addrA)
	cancel()
	if err == nil {
		c.Close()
		t.Errorf("connect through A with keepfaith=0 there succeeded; want its SYNs discarded")
	} else if !isTimeout(err) {
		t.Errorf("connect through A with keepfaith=0 there: %v; want a timeout (SYNs discarded)", err)
	}
	if st := nsShow(t, labA.Router); st.PacketsDiscarded["keepfaith"] == 0 {
		t.Errorf("A: packets_discarded.keepfaith = 0 after a connect with keepfaith=0")
	}
	if err := echoRoundTrip(ctx, labB, addrB, "through B, keepfaith=0 in A"); err != nil {
		t.Errorf("through B after keepfaith=0 in A: %v", err)
	}
	if st := nsShow(t, labB.Router); st.PacketsDiscarded["keepfaith"] != discardedB || st.FlowsAccepted != 2 {
		t.Errorf("B: packets_discarded.keepfaith %d, flows_accepted %d; want %d (as before keepfaith=0 in A) and 2",
			st.PacketsDiscarded["keepfaith"], st.FlowsAccepted, discardedB)
	}

	// destroy in A: A's faith0 goes, B's relays on.
	fA.ExpectExit()
	if r := nsFaithif(t, labA.Router, "destroy", "faith0", "--grace", "1s"); r.ExitCode != 0 {
		t.Fatalf("faithif destroy faith0 in A: %s", r)
	}
	if !fA.Wait(5 * time.Second) {
		t.Fatalf("A's faithif still running 5 s after destroy returned")
	}
	if err := fA.ExitErr(); err != nil {
		t.Errorf("A's faithif after destroy: %v, want status 0", err)
	}
	if hasLink(t, labA, "faith0") {
		t.Errorf("faith0 still in A after destroy")
	}
	if l := nsList(t, labA.Router); len(l) != 0 {
		t.Errorf("list in A after destroy: %+v, want none", l)
	}
	if !netlab.ProcessAlive(pidB) || !hasLink(t, labB, "faith0") {
		t.Fatalf("B's faith0 (pid %d) gone after destroy in A", pidB)
	}
	if err := echoRoundTrip(ctx, labB, addrB, "through B, A destroyed"); err != nil {
		t.Errorf("through B after destroy in A: %v", err)
	}
	if l := nsList(t, labB.Router); len(l) != 1 || l[0].PID != pidB {
		t.Errorf("list in B after destroy in A: %+v, want B's faith0", l)
	}

	// And B's own destroy.
	if r := nsFaithif(t, labB.Router, "destroy", "faith0", "--grace", "1s"); r.ExitCode != 0 {
		t.Fatalf("faithif destroy faith0 in B: %s", r)
	}
	if !netlab.WaitProcessGone(pidB, 5*time.Second) {
		t.Errorf("B's faithif (pid %d) still running 5 s after destroy returned", pidB)
	}
	if hasLink(t, labB, "faith0") {
		t.Errorf("faith0 still in B after destroy")
	}
}
