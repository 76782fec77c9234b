package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

const keepfaithKey = "net.inet6.ip6.keepfaith"

// TestKeepfaith checks the keepfaith switch: off by default (packets are
// discarded and counted), switched on at run time by "faithif sysctl"
// without a restart, and persisted in the run directory for the next
// instance. It also checks that destroy and SIGTERM stop faithif cleanly.
func TestKeepfaith(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, 2*time.Minute)
	l, port := listenServer(t, lab)
	serve(t, l, echoHandler)

	f := lab.StartFaithif(t) // no --keepfaith

	if r := lab.Faithif("sysctl", keepfaithKey); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != keepfaithKey+": 0" {
		t.Errorf("faithif sysctl %s: %s; want stdout %q", keepfaithKey, r, keepfaithKey+": 0")
	}
	if st, err := lab.Show(); err != nil {
		t.Fatal(err)
	} else if st.KeepFaith {
		t.Errorf("show says keepfaith true before it was set: %s", st.Raw)
	} else if st.Name != netlab.FaithIf || st.MTU != 1500 || !slices.Contains(st.Prefixes, netlab.FaithPrefix) {
		t.Errorf("show: name %q mtu %d prefixes %v; want %s, 1500, [%s]", st.Name, st.MTU, st.Prefixes, netlab.FaithIf, netlab.FaithPrefix)
	}

	// keepfaith=0: the SYNs are discarded, the connect times out.
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	c, err := dialServer(dctx, lab, port)
	cancel()
	if err == nil {
		c.Close()
		t.Fatalf("connect with keepfaith=0 succeeded; want a timeout")
	}
	if !isTimeout(err) {
		t.Fatalf("connect with keepfaith=0 after %v: %v; want a timeout (packets silently discarded)", time.Since(start), err)
	}
	st := waitStatus(t, lab, 3*time.Second, func(s *netlab.Status) bool { return s.PacketsDiscarded["keepfaith"] > 0 })
	if st.PacketsDiscarded["keepfaith"] == 0 {
		t.Errorf("packets_discarded.keepfaith = 0 after a connect with keepfaith=0: %s", st.Raw)
	}
	if st.FlowsAccepted != 0 {
		t.Errorf("flows_accepted = %d with keepfaith=0, want 0: %s", st.FlowsAccepted, st.Raw)
	}
	t.Logf("keepfaith=0: connect timed out, %d packets discarded", st.PacketsDiscarded["keepfaith"])

	// Switch it on at run time.
	r := lab.Faithif("sysctl", keepfaithKey+"=1")
	if r.ExitCode != 0 {
		t.Fatalf("faithif sysctl %s=1: %s", keepfaithKey, r)
	}
	if got, want := strings.TrimSpace(r.Stdout), keepfaithKey+": 0 -> 1"; got != want {
		t.Errorf("faithif sysctl %s=1 printed %q, want %q", keepfaithKey, got, want)
	}
	if r := lab.Faithif("sysctl", keepfaithKey); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != keepfaithKey+": 1" {
		t.Errorf("faithif sysctl %s after setting: %s; want stdout %q", keepfaithKey, r, keepfaithKey+": 1")
	}
	start = time.Now()
	if err := echoRoundTrip(ctx, lab, serverAddr(port), "hello after keepfaith=1"); err != nil {
		t.Fatalf("after keepfaith=1: %v", err)
	}
	t.Logf("first connection after keepfaith=1 took %v", time.Since(start).Round(time.Microsecond))
	select {
	case <-f.Done():
		t.Fatalf("faithif exited: %v", f.ExitErr())
	default:
	}
	if st, err := lab.Show(); err != nil {
		t.Fatal(err)
	} else if !st.KeepFaith || st.FlowsAccepted < 1 {
		t.Errorf("show after keepfaith=1 and one flow: keepfaith %v flows_accepted %d: %s", st.KeepFaith, st.FlowsAccepted, st.Raw)
	}

	// destroy stops the instance and removes the link and its socket.
	f.ExpectExit()
	if r := lab.Faithif("destroy", netlab.FaithIf); r.ExitCode != 0 {
		t.Fatalf("faithif destroy %s: %s", netlab.FaithIf, r)
	}
	if !f.Wait(5 * time.Second) {
		t.Fatalf("faithif still running 5 s after destroy")
	}
	if err := f.ExitErr(); err != nil {
		t.Errorf("faithif exit after destroy: %v (want status 0)", err)
	}
	checkGone(t, lab)

	// The value persisted in the run dir: a new instance starts with it.
	f2 := lab.StartFaithif(t) // still no --keepfaith
	if st, err := lab.Show(); err != nil {
		t.Fatal(err)
	} else if !st.KeepFaith {
		t.Errorf("new instance in the same run dir: keepfaith false, want true (persisted): %s", st.Raw)
	}
	if err := echoRoundTrip(ctx, lab, serverAddr(port), "hello from the second instance"); err != nil {
		t.Errorf("second instance: %v", err)
	}

	// SIGTERM stops it cleanly too.
	if err := f2.Stop(); err != nil {
		t.Errorf("faithif after SIGTERM: %v (want exit status 0)", err)
	}
	checkGone(t, lab)
}

// checkGone checks that faith0 and its control socket are gone.
func checkGone(t *testing.T, lab *netlab.Lab) {
	t.Helper()
	links, err := lab.Router.LinkNames()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(links, netlab.FaithIf) {
		t.Errorf("%s still exists after faithif stopped", netlab.FaithIf)
	}
	if socks, _ := filepath.Glob(filepath.Join(lab.RunDir, "*.sock")); len(socks) > 0 {
		t.Errorf("socket files left in the run dir after faithif stopped: %v", socks)
	}
}
