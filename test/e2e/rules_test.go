package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Tests of the access rules (--config): denial by a rule, port ranges,
// BIND4, reload of the rules while flows are open, "faithif rules test".

// answerErrno is what a Linux client's connect returns for each way faithif
// answers a refused SYN, by the name its log gives in answer= (which every
// "flow refused" line has).
var answerErrno = map[string]syscall.Errno{
	"rst":                    syscall.ECONNREFUSED,
	"icmp6-prohibited":       syscall.EACCES,
	"icmp6-port-unreachable": syscall.ECONNREFUSED,
	"icmp6-no-route":         syscall.ENETUNREACH,
	"icmp6-addr-unreachable": syscall.EHOSTUNREACH,
}

var answerRE = regexp.MustCompile(`\banswer=(\S+)`)

// expectDenied checks that a new connection to the server is denied by rule
// conf:line: refused, logged as the nth reason=denied line with
// rule=conf:line and an answer=, and answered as the log says (ECONNREFUSED
// for a RST, EACCES for administratively prohibited). The log must give
// wantAnswer.
func expectDenied(t *testing.T, ctx context.Context, lab *netlab.Lab, f *netlab.Faithif, port int, conf string, line, nth int, wantAnswer string) {
	t.Helper()
	start := time.Now()
	c, err := dialServer(ctx, lab, port)
	d := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatalf("connect to %s succeeded; want it denied by %s:%d", serverAddr(port), conf, line)
	}
	subs := []string{`msg="flow refused"`, "reason=denied", fmt.Sprintf("rule=%s:%d", conf, line)}
	if _, ok := f.WaitLog(20*time.Second, func(string) bool { return countLines(f.Stderr(), subs...) >= nth }); !ok {
		t.Fatalf("denied connection %d not logged with %q (connect: %v):\n%s", nth, subs, err, f.Stderr())
	}
	var logged string
	for _, l := range strings.Split(f.Stderr(), "\n") {
		if hasAll(l, subs...) {
			logged = l // the last one
		}
	}
	m := answerRE.FindStringSubmatch(logged)
	if m == nil {
		t.Fatalf("the flow refused line has no answer=: %s", logged)
	}
	answer := m[1]
	if answer != wantAnswer {
		t.Errorf("logged answer=%q, want %q: %s", answer, wantAnswer, logged)
	}
	want, known := answerErrno[answer]
	if !known {
		t.Fatalf("unknown answer=%q in %s", answer, logged)
	}
	if !errors.Is(err, want) {
		t.Errorf("connect to %s after %v: %v; want %v (logged answer=%q)", serverAddr(port), d, err, want, answer)
	} else {
		t.Logf("denied after %v: %v; log: %s", d.Round(time.Microsecond), err, logged)
	}
}

// TestReloadOpenFlow changes the access rules of a running instance while
// a flow is open, by SIGHUP and by "faithif reload": new flows follow the
// new rules (denied: RST, logged with the rule), the open flow goes on
// untouched; a broken file is rejected and the old rules stay.
func TestReloadOpenFlow(t *testing.T) {
	for _, via := range []string{"SIGHUP", "Command"} {
		t.Run(via, func(t *testing.T) { testReloadOpenFlow(t, via == "SIGHUP") })
	}
}

func testReloadOpenFlow(t *testing.T, bySignal bool) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithd.conf")
	writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24\n")
	args := []string{"--keepfaith", "--access", conf}
	// A denied flow is answered with a RST (ECONNREFUSED) in the SIGHUP
	// variant (--deny-with rst); the Command variant uses the default
	// answer, ICMPv6 administratively prohibited (EACCES).
	wantAnswer := "icmp6-prohibited"
	if bySignal {
		args = append(args, "--deny-with", "rst")
		wantAnswer = "rst"
	}
	f := lab.StartFaithif(t, args...)
	if st, err := lab.Show(); err != nil {
		t.Fatal(err)
	} else if st.RuleCount != 1 || st.Rules != conf {
		t.Errorf("show: rules %q, rule_count %d; want %s, 1", st.Rules, st.RuleCount, conf)
	}

	// reload rereads the file; it returns once the instance has done so.
	reload := func(wantOK bool) netlab.Result {
		t.Helper()
		if bySignal {
			msg := "rules reloaded"
			if !wantOK {
				msg = "reload failed"
			}
			before := countLines(f.Stderr(), msg)
			if err := f.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			if _, ok := f.WaitLog(5*time.Second, func(string) bool { return countLines(f.Stderr(), msg) > before }); !ok {
				t.Fatalf("no new %q log line within 5 s of SIGHUP:\n%s", msg, f.Stderr())
			}
			return netlab.Result{}
		}
		r := lab.Faithif("reload", "faith0")
		t.Logf("faithif reload faith0: exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		if wantOK && r.ExitCode != 0 {
			t.Fatalf("reload: %s", r)
		}
		if !wantOK && r.ExitCode != 1 {
			t.Errorf("reload of a broken file: exit %d, want 1: %s", r.ExitCode, r)
		}
		return r
	}

	// An open flow, with some traffic.
	c := mustDialServer(t, ctx, lab, port)
	echoExchange(t, c, 1, 64<<10)

	// Deny the server.
	var loadedAt int64 // when the rules in force were read, as show says
	writeFile(t, conf, "2001:db8:1::/64 deny 192.0.2.2\n"+
		"2001:db8:1::/64 permit 192.0.2.0/24\n")
	if r := reload(true); !bySignal {
		if want := fmt.Sprintf("faith0: 2 rules from %s\n", conf); r.Stdout != want {
			t.Errorf("reload stdout %q, want %q", r.Stdout, want)
		}
	}
	expectDenied(t, ctx, lab, f, port, conf, 1, 1, wantAnswer)
	if st, err := lab.Show(); err != nil {
		t.Fatal(err)
	} else if st.FlowsDenied != 1 || st.RuleCount != 2 || st.FlowsOpen != 1 {
		t.Errorf("show: flows_denied %d, rule_count %d, flows_open %d; want 1, 2, 1: %s", st.FlowsDenied, st.RuleCount, st.FlowsOpen, st.Raw)
	} else if !st.LastReloadSuccessful || st.ReloadsOK != 1 || st.ReloadsFailed != 0 {
		t.Errorf("show after a good reload: last_reload_successful %v, reloads ok %d, failed %d; want true, 1, 0", st.LastReloadSuccessful, st.ReloadsOK, st.ReloadsFailed)
	} else {
		loadedAt = st.RulesLoadedAt
	}

	// The open flow is not touched by the new rules.
	echoExchange(t, c, 2, 256<<10)

	// A broken file is rejected whole; the old rules stay.
	writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24\n"+
		"2001:db8:1::/64 permit 192.0.2.0/33\n")
	r := reload(false)
	if !bySignal && !strings.Contains(r.Stderr, conf+":2:") {
		t.Errorf("reload stderr %q does not name %s:2:", r.Stderr, conf)
	}
	if bySignal {
		if _, ok := f.WaitLog(time.Second, func(l string) bool { return hasAll(l, "reload failed", conf+":2:") }); !ok {
			t.Errorf("the reload failure log does not name %s:2:\n%s", conf, f.Stderr())
		}
	}
	if st, err := lab.Show(); err != nil {
		t.Fatal(err)
	} else if st.RuleCount != 2 {
		t.Errorf("rule_count %d after a failed reload, want the old 2", st.RuleCount)
	} else if st.LastReloadSuccessful || st.ReloadsOK != 1 || st.ReloadsFailed != 1 || st.RulesLoadedAt != loadedAt {
		t.Errorf("show after a failed reload: last_reload_successful %v, reloads ok %d, failed %d, rules loaded at %d; want false, 1, 1, %d (unchanged)",
			st.LastReloadSuccessful, st.ReloadsOK, st.ReloadsFailed, st.RulesLoadedAt, loadedAt)
	}
	expectDenied(t, ctx, lab, f, port, conf, 1, 2, wantAnswer) // still the old rule 1

	// The open flow still works, and closes cleanly.
	echoExchange(t, c, 3, 64<<10)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: read %d bytes, %v; want a clean EOF", len(rest), err)
	}
	c.Close()
	if st := waitStatus(t, lab, 3*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == 0 }); st.FlowsOpen != 0 {
		t.Errorf("flows_open %d after the flow was closed: %s", st.FlowsOpen, st.Raw)
	}
	if line, ok := f.WaitLog(2*time.Second, func(l string) bool { return hasAll(l, `msg="flow finished"`) }); !ok {
		t.Errorf("no flow finished log line:\n%s", f.Stderr())
	} else if strings.Contains(line, "error=") {
		t.Errorf("the open flow did not finish cleanly: %s", line)
	}

	// A good file again: the server is reachable.
	writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24\n")
	reload(true)
	if err := echoRoundTrip(ctx, lab, serverAddr(port), "permitted again"); err != nil {
		t.Fatal(err)
	}
	if st, err := lab.Show(); err != nil {
		t.Fatal(err)
	} else if !st.LastReloadSuccessful || st.ReloadsOK != 2 || st.ReloadsFailed != 1 || st.RulesLoadedAt < loadedAt {
		t.Errorf("show after a good reload again: last_reload_successful %v, reloads ok %d, failed %d, loaded at %d (before: %d); want true, 2, 1",
			st.LastReloadSuccessful, st.ReloadsOK, st.ReloadsFailed, st.RulesLoadedAt, loadedAt)
	}
}

// TestBind4 checks the BIND4 column of the access file: the IPv4
// connection leaves from the given router address, and an address that is
// not the router's is rejected at create.
func TestBind4(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	confDir := netlab.TempDir(t, "conf")

	t.Run("NotLocal", func(t *testing.T) {
		conf := filepath.Join(confDir, "notlocal.conf")
		writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24 198.51.100.7\n")
		for _, fg := range [][]string{nil, {"-f"}} {
			args := append([]string{"create", "faith0", "--prefix", netlab.FaithPrefix, "--access", conf}, fg...)
			r := lab.Faithif(args...)
			t.Logf("%s: exit %d, stderr %q", strings.Join(args, " "), r.ExitCode, r.Stderr)
			if r.ExitCode != 1 {
				t.Errorf("exit %d, want 1: %s", r.ExitCode, r)
			}
			for _, s := range []string{"not an address of this router", conf + ":1:"} {
				if !strings.Contains(r.Stderr, s) {
					t.Errorf("stderr %q does not mention %q", r.Stderr, s)
				}
			}
			checkNothingLeft(t, lab, "after create with BIND4 198.51.100.7")
		}
	})

	const second = "192.0.2.11"
	if _, err := lab.Router.IP("addr", "add", second+"/24", "dev", netlab.RouterServerLink); err != nil {
		t.Fatal(err)
	}
	l, port := listenServer(t, lab)
	// The server tells the client where the connection comes from.
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	seenFrom := func(t *testing.T) string {
		t.Helper()
		c := mustDialServer(t, ctx, lab, port)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read from the server: %v", err)
		}
		return string(b)
	}

	conf := filepath.Join(confDir, "faithd.conf")
	writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24 "+second+"\n")
	f := lab.StartFaithif(t, "--keepfaith", "--access", conf)
	t.Run("Secondary", func(t *testing.T) {
		if from := seenFrom(t); from != second {
			t.Errorf("the server sees the connection from %s, want %s (BIND4)", from, second)
		}
		if _, ok := f.WaitLog(2*time.Second, func(l string) bool { return hasAll(l, `msg="flow accepted"`, "src4="+second+":") }); !ok {
			t.Errorf("no flow accepted log line with src4=%s:\n%s", second, f.Stderr())
		}
	})
	t.Run("Primary", func(t *testing.T) {
		writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24 "+netlab.RouterAddr4+"\n")
		if r := lab.Faithif("reload", "faith0"); r.ExitCode != 0 {
			t.Fatalf("reload: %s", r)
		}
		if from := seenFrom(t); from != netlab.RouterAddr4 {
			t.Errorf("the server sees the connection from %s, want %s (BIND4)", from, netlab.RouterAddr4)
		}
	})
	t.Run("ReloadNotLocal", func(t *testing.T) {
		writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24 198.51.100.7\n")
		r := lab.Faithif("reload", "faith0")
		if r.ExitCode != 1 || !strings.Contains(r.Stderr, "not an address of this router") || !strings.Contains(r.Stderr, conf+":1:") {
			t.Errorf("reload with BIND4 198.51.100.7: %s; want exit 1, %s:1: ... not an address of this router", r, conf)
		}
		if from := seenFrom(t); from != netlab.RouterAddr4 {
			t.Errorf("after the failed reload the server sees %s, want %s (the old rule)", from, netlab.RouterAddr4)
		}
	})
}

// TestDeniedByRule denies one destination by the first line of the access
// file while the second line permits everything else: the client gets
// EACCES (ICMPv6 administratively prohibited) at once, the server never sees
// the connection, the refusal is counted and logged with its rule; with
// --deny-with rst the client gets ECONNREFUSED instead. Another server
// address, permitted by line 2, is relayed, so the denial is line 1's doing.
func TestDeniedByRule(t *testing.T) {
	for _, tc := range []struct {
		name, denyWith, answer string
		errno                  syscall.Errno
	}{
		{"ICMPv6", "", "icmp6-prohibited", syscall.EACCES},
		{"RST", "rst", "rst", syscall.ECONNREFUSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := netlab.New(t)
			ctx := testCtx(t, 30*time.Second)
			const other = "192.0.2.3" // a second server address, permitted
			if _, err := lab.Server.IP("addr", "add", other+"/24", "dev", netlab.ServerLink); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(netlab.TempDir(t, "conf"), "faithd.conf")
			writeFile(t, conf, "2001:db8:1::/64 deny 192.0.2.2\n"+
				"::/0 permit 0.0.0.0/0\n")
			args := []string{"--keepfaith", "--access", conf}
			if tc.denyWith != "" {
				args = append(args, "--deny-with", tc.denyWith)
			}
			f := lab.StartFaithif(t, args...)
			port, accepted := countingListener(t, lab.Server, "tcp4", netlab.ServerAddr+":0")
			st0 := mustShow(t, lab)

			lport := clientPort()
			expectConnectErr(t, ctx, lab, lport, serverAddr(port), tc.errno)
			expectNoAccept(t, accepted, "the server's listener")
			line := expectRefusedLog(t, f, lport, "reason=denied", fmt.Sprintf("rule=%s:1", conf), "answer="+tc.answer, "dst4=192.0.2.2:")
			t.Logf("log: %s", line)

			st := mustShow(t, lab)
			if d := st.FlowsDenied - st0.FlowsDenied; d != 1 {
				t.Errorf("flows_denied went from %d to %d; want +1: %s", st0.FlowsDenied, st.FlowsDenied, st.Raw)
			}
			if st.FlowsAccepted != st0.FlowsAccepted {
				t.Errorf("flows_accepted went from %d to %d; want unchanged", st0.FlowsAccepted, st.FlowsAccepted)
			}
			icmp := st.ICMPErrorsSent - st0.ICMPErrorsSent
			if tc.errno == syscall.EACCES && icmp == 0 {
				t.Errorf("icmp6_errors_sent did not grow (%d) for a flow denied with ICMPv6: %s", st.ICMPErrorsSent, st.Raw)
			}
			if tc.errno == syscall.ECONNREFUSED && icmp != 0 {
				t.Errorf("icmp6_errors_sent grew by %d for a flow denied with a RST: %s", icmp, st.Raw)
			}

			// Line 2 permits the other server address.
			l := lab.Server.ListenTCP(t, "tcp4", other+":0")
			serve(t, l, echoHandler)
			if err := echoRoundTrip(ctx, lab, netlab.FaithHostPort(other, l.Addr().(*net.TCPAddr).Port), "permitted by line 2"); err != nil {
				t.Errorf("%s, permitted by line 2: %v", other, err)
			}
		})
	}
}

// TestPermittedPortRange permits a port range of the server subnet and
// denies everything else: a flow inside the range (and at its lower edge)
// is relayed byte-exact, a port just below the range is denied with EACCES
// by line 2 and its listener never gets a connection.
func TestPermittedPortRange(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, 30*time.Second)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithd.conf")
	writeFile(t, conf, "# port range extension\n"+
		"2001:db8:1::/64 permit 192.0.2.0/24:1000-65535\n"+
		"2001:db8:1::/64 deny 0.0.0.0/0\n")
	f := lab.StartFaithif(t, "--keepfaith", "--access", conf)

	// Inside the range: an ephemeral port (>= 32768), and 1000 itself.
	port := echoServer(t, lab)
	c := mustDialServer(t, ctx, lab, port)
	echoExchange(t, c, 7, 256<<10)
	c.Close()
	edge := lab.Server.ListenTCP(t, "tcp4", netlab.ServerAddr+":1000")
	serve(t, edge, echoHandler)
	c = mustDialServer(t, ctx, lab, 1000)
	echoExchange(t, c, 8, 64<<10)
	c.Close()

	// Just below the range.
	low, accepted := countingListener(t, lab.Server, "tcp4", netlab.ServerAddr+":999")
	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, serverAddr(low), syscall.EACCES)
	expectNoAccept(t, accepted, "the listener on port 999")
	expectRefusedLog(t, f, lport, "reason=denied", fmt.Sprintf("rule=%s:3", conf), "answer=icmp6-prohibited")

	st := mustShow(t, lab)
	if st.FlowsAccepted != 2 || st.FlowsDenied != 1 {
		t.Errorf("flows_accepted %d, flows_denied %d; want 2, 1: %s", st.FlowsAccepted, st.FlowsDenied, st.Raw)
	}
}

// TestRulesTestCommand runs "faithif rules test faith0 SRC6 [DST6]:PORT"
// in the router against the running instance: it names the line that
// decides the flow, or says that none matches, and the real flows are
// decided the same way.
func TestRulesTestCommand(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, 30*time.Second)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithd.conf")
	writeFile(t, conf, "2001:db8:1::/64 permit 192.0.2.0/24:1000-65535\n"+
		"2001:db8:1::/64 deny 192.0.2.0/24\n")
	f := lab.StartFaithif(t, "--keepfaith", "--access", conf)

	for _, tc := range []struct {
		src, dst string
		want     []string // lines of stdout, in order
	}{
		{netlab.ClientAddr, "[2001:db8:46::c000:202]:8080", []string{
			"flow:     [2001:db8:1::2] -> [2001:db8:46::c000:202]:8080",
			"maps to:  192.0.2.2:8080",
			fmt.Sprintf("decision: permit (%s:1: 2001:db8:1::/64 permit 192.0.2.0/24:1000-65535)", conf),
		}},
		{netlab.ClientAddr, "[2001:db8:46::c000:202]:80", []string{
			"flow:     [2001:db8:1::2] -> [2001:db8:46::c000:202]:80",
			"maps to:  192.0.2.2:80",
			fmt.Sprintf("decision: deny (%s:2: 2001:db8:1::/64 deny 192.0.2.0/24)", conf),
		}},
		{netlab.ClientAddr, "[2001:db8:46::a00:1]:80", []string{
			"flow:     [2001:db8:1::2] -> [2001:db8:46::a00:1]:80",
			"maps to:  10.0.0.1:80",
			fmt.Sprintf("decision: deny (no line of %s matches)", conf),
		}},
		{"2001:db8:99::7", "[2001:db8:46::c000:202]:8080", []string{
			"flow:     [2001:db8:99::7] -> [2001:db8:46::c000:202]:8080",
			"maps to:  192.0.2.2:8080",
			fmt.Sprintf("decision: deny (no line of %s matches)", conf),
		}},
	} {
		r := lab.Faithif("rules", "test", netlab.FaithIf, tc.src, tc.dst)
		t.Logf("faithif rules test faith0 %s %s:\n%s", tc.src, tc.dst, r.Stdout)
		// Exit status as grep's: 0 permit, 1 deny.
		wantCode := 1
		if strings.HasPrefix(tc.want[len(tc.want)-1], "decision: permit") {
			wantCode = 0
		}
		if r.Err != nil || r.ExitCode != wantCode {
			t.Errorf("rules test %s %s: exit %d, want %d: %s", tc.src, tc.dst, r.ExitCode, wantCode, r)
			continue
		}
		if got, want := strings.TrimRight(r.Stdout, "\n"), strings.Join(tc.want, "\n"); got != want {
			t.Errorf("rules test %s %s printed\n%s\nwant\n%s", tc.src, tc.dst, got, want)
		}
	}

	// The running instance decides as the command said.
	l := lab.Server.ListenTCP(t, "tcp4", netlab.ServerAddr+":8080")
	serve(t, l, echoHandler)
	if err := echoRoundTrip(ctx, lab, serverAddr(8080), "permitted by line 1"); err != nil {
		t.Errorf("port 8080 (line 1 permits): %v", err)
	}
	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, serverAddr(80), syscall.EACCES)
	expectRefusedLog(t, f, lport, fmt.Sprintf("rule=%s:2", conf))
	lport = clientPort()
	expectConnectErr(t, ctx, lab, lport, "[2001:db8:46::a00:1]:80", syscall.EACCES)
	expectRefusedLog(t, f, lport, `rule="no rule matched"`)
}

// TestReloadAccess: 'faithif reload faith0 --access FILE' switches the
// instance to another access file (a relative name is taken from the
// caller's directory); a later plain reload rereads that file; a bad file
// leaves rules and file as they were.
func TestReloadAccess(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	dir := netlab.TempDir(t, "conf")
	first, second := filepath.Join(dir, "first.conf"), filepath.Join(dir, "second.conf")
	writeFile(t, first, "2001:db8:1::/64 deny 192.0.2.0/24\n")
	writeFile(t, second, "2001:db8:1::/64 permit 192.0.2.0/24\n2001:db8:1::/64 deny 0.0.0.0/0\n")
	lab.StartFaithif(t, "--keepfaith", "--access", first)
	show := func() *netlab.Status {
		t.Helper()
		st, err := lab.Show()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := show(); st.Rules != first || st.RuleCount != 1 {
		t.Fatalf("show: access_file %q, rules %d; want %s, 1", st.Rules, st.RuleCount, first)
	}
	if err := echoRoundTrip(ctx, lab, serverAddr(port), "denied by first.conf"); err == nil {
		t.Fatal("a flow got through although first.conf denies it")
	}

	// A relative name, from the caller's directory.
	r := lab.FaithifIn(dir, "reload", "faith0", "--access", "second.conf")
	if want := "faith0: 2 rules from " + second + "\n"; r.ExitCode != 0 || r.Stdout != want {
		t.Fatalf("reload --access second.conf: %s; want exit 0, %q", r, want)
	}
	if st := show(); st.Rules != second || st.RuleCount != 2 {
		t.Errorf("show after the switch: access_file %q, rules %d; want %s, 2", st.Rules, st.RuleCount, second)
	}
	if err := echoRoundTrip(ctx, lab, serverAddr(port), "permitted by second.conf"); err != nil {
		t.Errorf("after the switch to second.conf: %v", err)
	}
	// A plain reload rereads second.conf, not first.conf.
	writeFile(t, second, "2001:db8:1::/64 permit 192.0.2.0/24\n")
	if r := lab.Faithif("reload", "faith0"); r.ExitCode != 0 || r.Stdout != "faith0: 1 rule from "+second+"\n" {
		t.Errorf("reload after the switch: %s; want 1 rule from %s", r, second)
	}
	// A bad file: refused, rules and file stay.
	bad := filepath.Join(dir, "bad.conf")
	writeFile(t, bad, "2001:db8:1::/64 allow 192.0.2.0/24\n")
	if r := lab.Faithif("reload", "faith0", "--access", bad); r.ExitCode != 1 || !strings.Contains(r.Stderr, bad+":1:") {
		t.Errorf("reload --access of a bad file: %s; want exit 1 naming %s:1:", r, bad)
	}
	if st := show(); st.Rules != second || st.RuleCount != 1 || st.LastReloadSuccessful {
		t.Errorf("show after the bad switch: access_file %q, rules %d, last reload ok %v; want %s, 1, false", st.Rules, st.RuleCount, st.LastReloadSuccessful, second)
	}
	if r := lab.Faithif("reload", "faith0", "--access", filepath.Join(dir, "missing.conf")); r.ExitCode != 1 || !strings.Contains(r.Stderr, "missing.conf") {
		t.Errorf("reload --access of a missing file: %s; want exit 1 naming it", r)
	}
}
