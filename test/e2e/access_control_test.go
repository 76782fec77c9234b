package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// nextClientPort hands out fixed client source ports, below the kernel's
// ephemeral range, so that a test can find the log lines of one flow by its
// client=[2001:db8:1::2]:PORT.
var nextClientPort atomic.Int32

func init() { nextClientPort.Store(20000) }

func clientPort() int { return int(nextClientPort.Add(1)) }

// connectFrom connects from the client's fixed port lport to addr
// (host:port), giving up after timeout, and returns the connection (nil on
// error), the error and how long connect took.
func connectFrom(ctx context.Context, lab *netlab.Lab, lport int, addr string, timeout time.Duration) (*net.TCPConn, error, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	c, err := lab.Client.DialFrom(ctx, "tcp6", fmt.Sprintf("[%s]:%d", netlab.ClientAddr, lport), addr)
	d := time.Since(start)
	if err != nil {
		return nil, err, d
	}
	return c.(*net.TCPConn), nil, d
}

// expectConnectErr connects from client port lport to addr and fails the
// test unless connect fails with want within max. It returns how long
// connect took.
func expectConnectErr(t *testing.T, ctx context.Context, lab *netlab.Lab, lport int, addr string, want syscall.Errno, max time.Duration) time.Duration {
	t.Helper()
	c, err, d := connectFrom(ctx, lab, lport, addr, max+5*time.Second)
	if err == nil {
		c.Close()
		t.Errorf("connect from port %d to %s succeeded after %v; want %v (%s)", lport, addr, d, want, errnoName(want))
		return d
	}
	if !errors.Is(err, want) {
		t.Errorf("connect from port %d to %s after %v: %v; want %v (%s)", lport, addr, d.Round(time.Millisecond), err, want, errnoName(want))
	} else if d > max {
		t.Errorf("connect from port %d to %s failed with %s after %v; want within %v", lport, addr, errnoName(want), d.Round(time.Millisecond), max)
	} else {
		t.Logf("connect to %s: %s after %v", addr, errnoName(want), d.Round(time.Microsecond))
	}
	return d
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EACCES:
		return "EACCES"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.EHOSTUNREACH:
		return "EHOSTUNREACH"
	case syscall.ENETUNREACH:
		return "ENETUNREACH"
	}
	return fmt.Sprintf("errno %d", int(e))
}

// countingListener listens on address in ns and counts the connections it
// accepts (each is closed at once).
func countingListener(t *testing.T, ns *netlab.Namespace, network, address string) (int, *atomic.Int32) {
	t.Helper()
	l := ns.ListenTCP(t, network, address)
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, &n
}

// expectNoAccept fails the test if the counting listener got a connection,
// after giving a relayed connection time to arrive.
func expectNoAccept(t *testing.T, n *atomic.Int32, what string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Errorf("%s got %d connection(s); want none: faithif relayed a refused flow", what, got)
	}
}

// clientTag is how faithif's log names the client's flow from lport.
func clientTag(lport int) string {
	return fmt.Sprintf("client=[%s]:%d ", netlab.ClientAddr, lport)
}

// refusedLines returns faithif's "flow refused" log lines for the client's
// flows from lport.
func refusedLines(f *netlab.Faithif, lport int) []string {
	var out []string
	for _, l := range strings.Split(f.Stderr(), "\n") {
		if hasAll(l, `msg="flow refused"`, clientTag(lport)) {
			out = append(out, l)
		}
	}
	return out
}

// expectRefusedLog waits up to 2 s for the "flow refused" log line of the
// flow from lport and checks that it holds every one of subs.
func expectRefusedLog(t *testing.T, f *netlab.Faithif, lport int, subs ...string) string {
	t.Helper()
	line, ok := f.WaitLog(2*time.Second, func(l string) bool { return hasAll(l, `msg="flow refused"`, clientTag(lport)) })
	if !ok {
		t.Errorf("no flow refused log line for %s; log:\n%s", clientTag(lport), f.Stderr())
		return ""
	}
	for _, s := range subs {
		if !strings.Contains(line, s) {
			t.Errorf("the flow refused log line lacks %q: %s", s, line)
		}
	}
	return line
}

// mustShow runs "faithif show faith0 --json".
func mustShow(t *testing.T, lab *netlab.Lab) *netlab.Status {
	t.Helper()
	st, err := lab.Show()
	if err != nil {
		t.Fatal(err)
	}
	return st
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
			writeConf(t, conf,
				"2001:db8:1::/64 deny 192.0.2.2",
				"::/0 permit 0.0.0.0/0")
			args := []string{"--keepfaith", "--config", conf}
			if tc.denyWith != "" {
				args = append(args, "--deny-with", tc.denyWith)
			}
			f := lab.StartFaithif(t, args...)
			port, accepted := countingListener(t, lab.Server, "tcp4", netlab.ServerAddr+":0")
			st0 := mustShow(t, lab)

			lport := clientPort()
			expectConnectErr(t, ctx, lab, lport, serverAddr(port), tc.errno, time.Second)
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
			if err := roundTripTo(ctx, lab, netlab.FaithHostPort(other, l.Addr().(*net.TCPAddr).Port), "permitted by line 2"); err != nil {
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
	writeConf(t, conf,
		"# port range extension",
		"2001:db8:1::/64 permit 192.0.2.0/24:1000-65535",
		"2001:db8:1::/64 deny 0.0.0.0/0")
	f := lab.StartFaithif(t, "--keepfaith", "--config", conf)

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
	expectConnectErr(t, ctx, lab, lport, serverAddr(low), syscall.EACCES, time.Second)
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
	writeConf(t, conf,
		"2001:db8:1::/64 permit 192.0.2.0/24:1000-65535",
		"2001:db8:1::/64 deny 192.0.2.0/24")
	f := lab.StartFaithif(t, "--keepfaith", "--config", conf)

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
		if r.ExitCode != 0 {
			t.Errorf("rules test %s %s: %s", tc.src, tc.dst, r)
			continue
		}
		if got, want := strings.TrimRight(r.Stdout, "\n"), strings.Join(tc.want, "\n"); got != want {
			t.Errorf("rules test %s %s printed\n%s\nwant\n%s", tc.src, tc.dst, got, want)
		}
	}

	// The running instance decides as the command said.
	l := lab.Server.ListenTCP(t, "tcp4", netlab.ServerAddr+":8080")
	serve(t, l, echoHandler)
	if err := echoRoundTrip(ctx, lab, 8080, "permitted by line 1"); err != nil {
		t.Errorf("port 8080 (line 1 permits): %v", err)
	}
	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, serverAddr(80), syscall.EACCES, time.Second)
	expectRefusedLog(t, f, lport, fmt.Sprintf("rule=%s:2", conf))
	lport = clientPort()
	expectConnectErr(t, ctx, lab, lport, "[2001:db8:46::a00:1]:80", syscall.EACCES, time.Second)
	expectRefusedLog(t, f, lport, `rule="no rule matched"`)
}

// TestRouterOwnAddress connects to the router's own IPv4 addresses embedded
// in the FAITH prefix: refused with EACCES at once, and the router's
// listeners get nothing. An address added to the router after faithif
// started is refused as well: the set of local addresses is tracked live.
func TestRouterOwnAddress(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	ctx := testCtx(t, 30*time.Second)
	port, accepted := countingListener(t, lab.Router, "tcp4", "0.0.0.0:0")

	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(netlab.RouterAddr4, port), syscall.EACCES, time.Second)
	expectNoAccept(t, accepted, "the router's listener on 0.0.0.0")
	expectRefusedLog(t, f, lport, "reason=denied", "answer=icmp6-prohibited", "address of this router")

	const added = "192.0.2.50"
	if _, err := lab.Router.IP("addr", "add", added+"/24", "dev", netlab.RouterServerLink); err != nil {
		t.Fatal(err)
	}
	port2, accepted2 := countingListener(t, lab.Router, "tcp4", added+":0")
	// faithif learns of the address by netlink: give the notification a
	// moment (it takes microseconds).
	time.Sleep(100 * time.Millisecond)
	lport = clientPort()
	expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(added, port2), syscall.EACCES, time.Second)
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
		expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(a, port), syscall.EACCES, time.Second)
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
	expectConnectErr(t, ctx, lab, lport, fmt.Sprintf("[64:ff9b::c000:202]:%d", port), syscall.EACCES, time.Second)
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

// TestPerClientFlowLimit allows 3 flows per client /64: three connections
// stay open and work, the fourth is refused with a RST (ECONNREFUSED) and
// counted; once one of the three is closed a new connection succeeds.
func TestPerClientFlowLimit(t *testing.T) {
	lab, f := startLab(t, "--keepfaith", "--max-flows-per-client", "3")
	ctx := testCtx(t, 30*time.Second)
	port := echoServer(t, lab)
	var conns []*net.TCPConn
	for i := range 3 {
		c := mustDialServer(t, ctx, lab, port)
		echoExchange(t, c, uint64(100+i), 16<<10)
		conns = append(conns, c)
	}
	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, serverAddr(port), syscall.ECONNREFUSED, time.Second)
	expectRefusedLog(t, f, lport, "reason=limit", "limit=flows-per-client", "answer=rst")
	st := mustShow(t, lab)
	if st.FlowsLimited < 1 || st.Clients != 1 || st.FlowsOpen != 3 || st.MaxFlowsPerClient != 3 {
		t.Errorf("flows_limited %d, clients %d, flows_open %d, max_flows_per_client %d; want >= 1, 1, 3, 3: %s",
			st.FlowsLimited, st.Clients, st.FlowsOpen, st.MaxFlowsPerClient, st.Raw)
	}
	// The three open flows still work.
	for i, c := range conns {
		echoExchange(t, c, uint64(200+i), 16<<10)
	}

	// Close one and wait until the relay has finished it.
	finished := countLines(f.Stderr(), `msg="flow finished"`)
	conns[0].Close()
	if _, ok := f.WaitLog(5*time.Second, func(string) bool { return countLines(f.Stderr(), `msg="flow finished"`) > finished }); !ok {
		t.Fatalf("no flow finished log line within 5 s of closing a flow:\n%s", f.Stderr())
	}
	if st := waitStatus(t, lab, 2*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == 2 }); st.FlowsOpen != 2 {
		t.Fatalf("flows_open %d after closing one of 3: %s", st.FlowsOpen, st.Raw)
	}
	time.Sleep(50 * time.Millisecond) // the limiter is released just after the log line
	c, err, d := connectFrom(ctx, lab, clientPort(), serverAddr(port), 5*time.Second)
	if err != nil {
		t.Fatalf("connect after closing one of 3 flows: %v after %v", err, d)
	}
	defer c.Close()
	echoExchange(t, c, 300, 16<<10)
	for i, c := range conns[1:] {
		echoExchange(t, c, uint64(400+i), 16<<10)
	}
}

// TestBadPacketsFromRouter sends hand-made packets for real, from a raw
// socket in the router, to a FAITH address (routed to faith0): SYNs from an
// IPv4-mapped and from an IPv4-compatible source, a TCP packet too short
// for a TCP header, a UDP datagram and an ICMPv6 echo request. Each is
// discarded and counted under its reason, none becomes a flow, and faithif
// goes on relaying.
func TestBadPacketsFromRouter(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	ctx := testCtx(t, 30*time.Second)
	port, accepted := countingListener(t, lab.Server, "tcp4", netlab.ServerAddr+":0")
	dst := netip.MustParseAddr(netlab.ServerFaithAddr)
	router := netip.MustParseAddr(netlab.RouterAddr6)
	const n = 10 // packets of each kind: the kernel's own traffic on faith0 (MLD, RS) cannot fake that many

	syn := func(i int) []byte { return netlab.TCPSyn(uint16(30000+i), uint16(port), uint32(1000*i)) }
	udp := make([]byte, 8+4)
	udp[0], udp[1], udp[2], udp[3] = 0x30, 0x39, byte(port>>8), byte(port)
	udp[4], udp[5] = 0, 12
	copy(udp[8:], "ping")
	echo := []byte{128, 0, 0, 0, 0x12, 0x34, 0, 1, 'f', 'a', 'i', 't', 'h'}

	type disc = netlab.Discarded
	cases := []struct {
		name  string
		build func(i int) []byte
		check func(a, b disc) uint64 // the counter that must grow by n
	}{
		{"SYN from IPv4-mapped ::ffff:192.0.2.9", func(i int) []byte {
			return netlab.BuildIPv6(netip.MustParseAddr("::ffff:192.0.2.9"), dst, syscall.IPPROTO_TCP, syn(i))
		}, func(a, b disc) uint64 { return b.BadSource - a.BadSource }},
		{"SYN from IPv4-compatible ::192.0.2.9", func(i int) []byte {
			return netlab.BuildIPv6(netip.MustParseAddr("::192.0.2.9"), dst, syscall.IPPROTO_TCP, syn(i))
		}, func(a, b disc) uint64 { return b.BadSource - a.BadSource }},
		{"TCP with 8 bytes of payload", func(i int) []byte {
			return netlab.BuildIPv6(router, dst, syscall.IPPROTO_TCP, syn(i)[:8])
		}, func(a, b disc) uint64 { return b.Malformed - a.Malformed }},
		{"UDP datagram", func(i int) []byte {
			return netlab.BuildIPv6(router, dst, syscall.IPPROTO_UDP, udp)
		}, func(a, b disc) uint64 { return b.NotTCP - a.NotTCP }},
		{"ICMPv6 echo request", func(i int) []byte {
			return netlab.BuildIPv6(router, dst, syscall.IPPROTO_ICMPV6, echo)
		}, func(a, b disc) uint64 { return b.ICMPv6Other - a.ICMPv6Other }},
	}
	for _, tc := range cases {
		st0 := mustShow(t, lab)
		pkts := make([][]byte, n)
		for i := range pkts {
			pkts[i] = tc.build(i)
		}
		if err := lab.Router.SendIPv6(pkts...); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		st := waitStatus(t, lab, 2*time.Second, func(s *netlab.Status) bool {
			return tc.check(st0.PacketsDiscarded, s.PacketsDiscarded) >= n
		})
		got := tc.check(st0.PacketsDiscarded, st.PacketsDiscarded)
		t.Logf("%s x%d: counter +%d, packets_in +%d", tc.name, n, got, st.PacketsIn-st0.PacketsIn)
		if got < n {
			t.Errorf("%s x%d: its discard counter grew by %d; want %d\nbefore: %s\nafter:  %s", tc.name, n, got, n, st0.Raw, st.Raw)
		}
		if d := st.PacketsIn - st0.PacketsIn; d < n {
			t.Errorf("%s x%d: packets_in grew by %d; the packets did not reach faith0", tc.name, n, d)
		}
		if st.FlowsTotal != st0.FlowsTotal {
			t.Errorf("%s: flows_total went from %d to %d; a discarded packet became a flow", tc.name, st0.FlowsTotal, st.FlowsTotal)
		}
		// The exact counters, which the kernel's own traffic does not touch.
		a, b := st0.PacketsDiscarded, st.PacketsDiscarded
		switch {
		case strings.HasPrefix(tc.name, "SYN"):
			if b.BadSource-a.BadSource != n || b.Malformed != a.Malformed {
				t.Errorf("%s: bad_source +%d, malformed +%d; want +%d, +0", tc.name, b.BadSource-a.BadSource, b.Malformed-a.Malformed, n)
			}
		case strings.HasPrefix(tc.name, "TCP"):
			if b.Malformed-a.Malformed != n || b.BadSource != a.BadSource {
				t.Errorf("%s: malformed +%d, bad_source +%d; want +%d, +0", tc.name, b.Malformed-a.Malformed, b.BadSource-a.BadSource, n)
			}
		case strings.HasPrefix(tc.name, "ICMPv6"):
			if d := st.ICMPv6In["echo_request"] - st0.ICMPv6In["echo_request"]; d != n {
				t.Errorf("%s: icmp6_in.echo_request +%d; want +%d: %s", tc.name, d, n, st.Raw)
			}
		}
	}
	if line, ok := f.WaitLog(0, func(l string) bool { return strings.Contains(l, `msg="flow `) }); ok {
		t.Errorf("a discarded packet was logged as a flow: %s", line)
	}
	expectNoAccept(t, accepted, "the server's listener")

	// faithif still relays.
	port2 := echoServer(t, lab)
	c := mustDialServer(t, ctx, lab, port2)
	echoExchange(t, c, 500, 64<<10)
	c.Close()
}
