package e2e

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Tests of refused flows: a server that refuses, and the destinations
// faithif never relays to whatever the rules say (the router itself,
// loopback and other special addresses, non-global addresses behind the
// well-known prefix).

// TestConnectionRefused connects to a server port nobody listens on: the
// IPv4 RST must reach the client as ECONNREFUSED (its own SYN retries
// would end in ETIMEDOUT).
func TestConnectionRefused(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, 30*time.Second)
	const port = 9 // nothing listens in the server namespace
	start := time.Now()
	c, err := dialServer(ctx, lab, port)
	d := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatalf("connect to %s succeeded, want ECONNREFUSED", serverAddr(port))
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to %s after %v: %v, want ECONNREFUSED", serverAddr(port), d, err)
	}
	t.Logf("refused after %v", d.Round(time.Microsecond))
}

// TestLoopbackRefused connects to 127.0.0.1 embedded in the FAITH prefix,
// at the port of a listener on the router's own loopback: faithif must refuse
// the flow instead of relaying to the router itself.
func TestLoopbackRefused(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	ctx := testCtx(t, 30*time.Second)
	port, accepted := countingListener(t, lab.Router, "tcp4", "127.0.0.1:0")

	addr := netlab.FaithHostPort("127.0.0.1", port)
	start := time.Now()
	c, err := lab.Client.Dial(ctx, "tcp6", addr)
	d := time.Since(start)
	if err == nil {
		c.Close()
		t.Errorf("connect to %s (router loopback) succeeded, want it refused", addr)
	} else {
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EACCES) {
			t.Errorf("connect to %s after %v: %v, want ECONNREFUSED or EACCES", addr, d, err)
		} else {
			t.Logf("connect to %s: %v after %v", addr, err, d.Round(time.Microsecond))
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("the router's loopback listener got %d connection(s): faithif relayed to 127.0.0.1", n)
	}
	line, ok := f.WaitLog(3*time.Second, func(line string) bool {
		l := strings.ToLower(line)
		return strings.Contains(l, "refus") && (strings.Contains(l, "127.0.0.1") || strings.Contains(l, "7f00:1"))
	})
	if !ok {
		t.Errorf("no log line mentioning a refused flow to 127.0.0.1 (or ::7f00:1); log:\n%s", f.Stderr())
	} else {
		t.Logf("log: %s", line)
	}
}

// TestRouterOwnAddress connects to the router's own IPv4 addresses embedded
// in the FAITH prefix: refused with EACCES at once, and the router's
// listeners get nothing. An address added to the router after faithif
// started is refused as well: the set of local addresses is tracked live.
func TestRouterOwnAddress(t *testing.T) {
	lab, f := startLab(t, "--keepfaith", "--log-level", "debug")
	ctx := testCtx(t, 30*time.Second)
	port, accepted := countingListener(t, lab.Router, "tcp4", "0.0.0.0:0")

	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(netlab.RouterAddr4, port), syscall.EACCES)
	expectNoAccept(t, accepted, "the router's listener on 0.0.0.0")
	expectRefusedLog(t, f, lport, "reason=denied", "answer=icmp6-prohibited", "address of this router")

	const added = "192.0.2.50"
	readings := localAddrsReadings(f)
	if _, err := lab.Router.IP("addr", "add", added+"/24", "dev", netlab.RouterServerLink); err != nil {
		t.Fatal(err)
	}
	port2, accepted2 := countingListener(t, lab.Router, "tcp4", added+":0")
	// faithif learns of the address by netlink: wait until it has read it.
	waitLocalAddrsRead(t, f, readings)
	lport = clientPort()
	expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(added, port2), syscall.EACCES)
	expectNoAccept(t, accepted2, "the router's listener on "+added)
	expectRefusedLog(t, f, lport, "reason=denied", "dst4="+added+":", "address of this router")
	if n := accepted.Load(); n != 0 {
		t.Errorf("the router's listener on 0.0.0.0 got %d connection(s)", n)
	}
	if st := mustShow(t, lab); st.FlowsDenied != 2 || st.FlowsAccepted != 0 {
		t.Errorf("flows_denied %d, flows_accepted %d; want 2, 0: %s", st.FlowsDenied, st.FlowsAccepted, st.Raw)
	}
}

// TestAlwaysRefused connects to IPv4 addresses faithif never relays to,
// whatever the rules say: this network, loopback, link-local, multicast,
// reserved and broadcast. Each is refused with EACCES at once.
func TestAlwaysRefused(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	ctx := testCtx(t, 30*time.Second)
	// Something to reach on the router's loopback, if faithif relayed.
	port, accepted := countingListener(t, lab.Router, "tcp4", "127.0.0.1:0")
	addrs := []string{"127.0.0.1", "169.254.1.1", "224.0.0.1", "0.0.0.1", "240.0.0.1", "255.255.255.255"}
	for _, a := range addrs {
		lport := clientPort()
		expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(a, port), syscall.EACCES)
		expectRefusedLog(t, f, lport, "reason=denied", "answer=icmp6-prohibited", "embedded IPv4 address is never relayed", " to "+a+":")
	}
	expectNoAccept(t, accepted, "the router's loopback listener")
	st := mustShow(t, lab)
	if st.FlowsDenied != uint64(len(addrs)) || st.FlowsAccepted != 0 || st.ICMPErrorsSent != uint64(len(addrs)) {
		t.Errorf("flows_denied %d, flows_accepted %d, icmp6_errors_sent %d; want %d, 0, %d: %s",
			st.FlowsDenied, st.FlowsAccepted, st.ICMPErrorsSent, len(addrs), len(addrs), st.Raw)
	}
	if strings.Contains(f.Stderr(), `msg="flow accepted"`) {
		t.Errorf("a flow was accepted:\n%s", f.Stderr())
	}
}

// TestWellKnownPrefixNotGlobal routes the well-known prefix 64:ff9b::/96 to
// faith0 as well: 192.0.2.2 is not a global address, so RFC 6052 3.1 forbids
// it behind the well-known prefix (EACCES, logged as such), while the same
// server is reached through the network-specific prefix.
func TestWellKnownPrefixNotGlobal(t *testing.T) {
	const wkp = "64:ff9b::/96"
	lab, f := startLab(t, "--keepfaith", "--prefix", wkp)
	routeFaith(t, lab, wkp, netlab.FaithIf)
	ctx := testCtx(t, 30*time.Second)
	port, accepted := countingListener(t, lab.Server, "tcp4", netlab.ServerAddr+":0")

	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, fmt.Sprintf("[64:ff9b::c000:202]:%d", port), syscall.EACCES)
	line := expectRefusedLog(t, f, lport, "reason=denied", "dst6=[64:ff9b::c000:202]:", "RFC 6052 3.1")
	t.Logf("log: %s", line)
	expectNoAccept(t, accepted, "the server's listener")

	// The network-specific prefix reaches the same server.
	c, err, _ := connectFrom(ctx, lab, clientPort(), serverAddr(port), 10*time.Second)
	if err != nil {
		t.Fatalf("connect through %s: %v", netlab.FaithPrefix, err)
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for accepted.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the server's listener got %d connection(s) through %s; want 1", n, netlab.FaithPrefix)
	}
}
