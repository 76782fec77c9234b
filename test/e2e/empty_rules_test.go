package e2e

import (
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Issue 12, row 5: an access file that exists but holds no rule denies
// everything ("no match denies"; faithd's permit-all on a rule-less file
// is one of its bugs). Only running with no access file permits all; a
// reload that widens access to everything logs a warning.

// TestEmptyAccessFileDenies reloads the access file of a running faithif
// with an empty file, then with a file of comments only: each reload
// succeeds and from then on every new flow is denied (EACCES, logged
// reason=denied, nothing reaches the server) and the reload logs the
// warning "access file has no rules: every flow is denied"; a permitting
// file in between lets flows through again, without that warning. A reload
// from that narrow file to "::/0 permit 0.0.0.0/0" logs the warning
// "reload widened access to every flow". A faithif started with an empty
// access file denies from the start.
func TestEmptyAccessFileDenies(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, 45*time.Second)
	port, served := countingEchoServer(t, lab)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithd.conf")
	const permit = "2001:db8:1::/64 permit 192.0.2.0/24\n"
	writeFile(t, conf, permit)
	f := lab.StartFaithif(t, "--keepfaith", "--access", conf)

	reload := func(text string) {
		t.Helper()
		writeFile(t, conf, text)
		if r := lab.Faithif("reload", netlab.FaithIf); r.ExitCode != 0 {
			t.Fatalf("faithif reload with %q: %s", text, r)
		}
	}
	permitted := func(what string) {
		t.Helper()
		before := served.Load()
		if err := echoRoundTrip(ctx, lab, serverAddr(port), what); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if served.Load() != before+1 {
			t.Errorf("%s: the server counted %d connections, want %d", what, served.Load(), before+1)
		}
	}
	denied := func(what string, rules int) {
		t.Helper()
		if st := mustShow(t, lab); st.RuleCount != rules {
			t.Errorf("%s: rule_count %d, want %d: %s", what, st.RuleCount, rules, st.Raw)
		}
		before, st0 := served.Load(), mustShow(t, lab)
		lport := clientPort()
		expectConnectErr(t, ctx, lab, lport, serverAddr(port), syscall.EACCES)
		expectRefusedLog(t, f, lport, "reason=denied", "answer=icmp6-prohibited")
		expectNoNewServerConn(t, served, before, what)
		if st := mustShow(t, lab); st.FlowsDenied != st0.FlowsDenied+1 || st.FlowsAccepted != st0.FlowsAccepted {
			t.Errorf("%s: flows_denied +%d, flows_accepted +%d; want +1, +0", what, st.FlowsDenied-st0.FlowsDenied, st.FlowsAccepted-st0.FlowsAccepted)
		}
	}

	// The warnings of a reload, as relay.Rules.Warning and the instance's
	// reload word them.
	const (
		noRules = `level=WARN msg="access file has no rules: every flow is denied"`
		widened = `level=WARN msg="reload widened access to every flow`
	)
	// reloadLogs reloads text and fails the test unless the reload logs
	// the line holding want (once), and no line holding notWant.
	reloadLogs := func(text, want, notWant string) {
		t.Helper()
		n0, bad0 := countLines(f.Stderr(), want), countLines(f.Stderr(), notWant)
		reload(text)
		if want != "" {
			if _, ok := f.WaitLog(2*time.Second, func(string) bool { return countLines(f.Stderr(), want) > n0 }); !ok {
				t.Errorf("reload of %q: no log line %s:\n%s", text, want, f.Stderr())
			}
		} else {
			time.Sleep(200 * time.Millisecond) // what the reload logs is logged by now
		}
		if n := countLines(f.Stderr(), notWant); notWant != "" && n > bad0 {
			t.Errorf("reload of %q logged %s:\n%s", text, notWant, f.Stderr())
		}
	}

	permitted("with a permitting rule")
	reloadLogs("", noRules, widened)
	denied("after reloading an empty access file", 0)
	reloadLogs(permit, "", noRules)
	permitted("after reloading the permitting rule")
	reloadLogs("# no rules here\n\n   # nor here\n", noRules, widened)
	denied("after reloading an access file of comments only", 0)

	// From a narrow rule to one that permits everything: the warning.
	reloadLogs(permit, "", widened)
	permitted("after reloading the permitting rule again")
	reloadLogs("::/0 permit 0.0.0.0/0\n", widened, noRules)
	permitted("after reloading ::/0 permit 0.0.0.0/0")

	// Started with an empty file: denied from the first flow.
	lab2 := netlab.New(t)
	port2, served2 := countingEchoServer(t, lab2)
	empty := filepath.Join(netlab.TempDir(t, "conf"), "empty.conf")
	writeFile(t, empty, "")
	f2 := lab2.StartFaithif(t, "--keepfaith", "--access", empty)
	lport := clientPort()
	expectConnectErr(t, ctx, lab2, lport, serverAddr(port2), syscall.EACCES)
	expectRefusedLog(t, f2, lport, "reason=denied")
	expectNoNewServerConn(t, served2, 0, "started with an empty access file")
}

// countingEchoServer starts an echo server in the server namespace that
// counts the connections it accepts, and returns its port and the count.
func countingEchoServer(t *testing.T, lab *netlab.Lab) (int, *atomic.Int32) {
	t.Helper()
	l, port := listenServer(t, lab)
	var n atomic.Int32
	serve(t, l, func(c *net.TCPConn) {
		n.Add(1)
		echoHandler(c)
	})
	return port, &n
}

// expectNoNewServerConn fails the test if the server's count grew beyond
// before, after giving a relayed connection time to arrive.
func expectNoNewServerConn(t *testing.T, n *atomic.Int32, before int32, what string) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != before {
		t.Errorf("%s: the server got %d new connection(s); want none", what, got-before)
	}
}
