package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faithif/faithif/test/netlab"
)

// rowDialTimeout is the --dial-timeout of the ICMPv6 error tests: shorter
// than the kernel's own ARP failure (about 3 s).
const rowDialTimeout = 2 * time.Second

// icmpRow starts faithif with --dial-timeout 2s, runs setup in the lab,
// connects to ip4:port through faithif and checks the client's errno, the
// log line's reason= and answer=, and the counters:
// one flow, refused, with an ICMPv6 error unless the answer is a RST.
func icmpRow(t *testing.T, ip4 string, port int, want syscall.Errno, reason, answer string, setup func(*netlab.Lab)) {
	t.Helper()
	lab, f := startLab(t, "--keepfaith", "--dial-timeout", rowDialTimeout.String())
	ctx := testCtx(t, 30*time.Second)
	// The client retransmits its SYN at 1 s and 3 s: none races with the
	// answer given when the 2 s dial times out. (With linear timeouts one
	// would leave at 2 s, and if it reached faithif just after the answer it
	// would rightly be a new flow.)
	setSynBackoff(t, lab, 0)
	if setup != nil {
		setup(lab)
	}
	st0 := mustShow(t, lab)
	lport := clientPort()
	d := expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(ip4, port), want)
	line := expectRefusedLog(t, f, lport, "reason="+reason+" ", "answer="+answer+" ", "dst4="+ip4+":")
	t.Logf("after %v, log: %s", d.Round(time.Millisecond), line)
	time.Sleep(200 * time.Millisecond) // a late second decision would show now
	st := mustShow(t, lab)
	if d := st.FlowsTotal - st0.FlowsTotal; d != 1 {
		t.Errorf("flows_total +%d; want +1: %s", d, st.Raw)
	}
	if d := st.FlowsRefused - st0.FlowsRefused; d != 1 {
		t.Errorf("flows_refused +%d; want +1: %s", d, st.Raw)
	}
	wantICMP := uint64(1)
	if answer == "rst" {
		wantICMP = 0
	}
	if d := st.ICMPErrorsSent - st0.ICMPErrorsSent; d != wantICMP {
		t.Errorf("icmp6_errors_sent +%d; want +%d: %s", d, wantICMP, st.Raw)
	}
	if n := len(refusedLines(f, lport)); n != 1 {
		t.Errorf("%d flow refused log lines for %s; want 1:\n%s", n, clientTag(lport), f.Stderr())
	}
}

// synLinearTimeouts is the client's sysctl (Linux 6.5 and later, default 4)
// that makes the first SYN retransmissions 1 s apart (at 1, 2, 3, 4, 5 s,
// then 7, 11...) instead of doubling (at 1, 3, 7, 15... s).
const synLinearTimeouts = "net.ipv4.tcp_syn_linear_timeouts"

// setSynBackoff sets the client's synLinearTimeouts to n and reports
// whether the kernel has it (without it, retransmissions always double).
func setSynBackoff(t *testing.T, lab *netlab.Lab, n int) bool {
	t.Helper()
	if _, err := lab.Client.ReadSysctl(synLinearTimeouts); err != nil {
		t.Logf("the client's kernel has no %s: SYN retransmissions double from 1 s", synLinearTimeouts)
		return false
	}
	if err := lab.Client.Sysctl(synLinearTimeouts, strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	return true
}

// routerIP runs ip(8) in the router and fails the test on error.
func routerIP(t *testing.T, lab *netlab.Lab, args ...string) string {
	t.Helper()
	out, err := lab.Router.IP(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestICMPErrServerRefuses: the server's RST (closed port) reaches the
// client as ECONNREFUSED.
func TestICMPErrServerRefuses(t *testing.T) {
	icmpRow(t, netlab.ServerAddr, 9, syscall.ECONNREFUSED, "connection-refused", "rst", nil)
}

// TestICMPErrNoAnswer: an address of the server subnet with no host behind
// it: ARP fails in the router after about 3 s, the 2 s dial timeout fires
// first (reason=timeout); the client gets EHOSTUNREACH (ICMPv6 address
// unreachable), which its own SYN retries would never give.
func TestICMPErrNoAnswer(t *testing.T) {
	icmpRow(t, "192.0.2.99", 80, syscall.EHOSTUNREACH, "timeout", "icmp6-addr-unreachable", nil)
}

// TestICMPErrNoRoute: the router has no route to 10.0.0.0/8 (and no
// default route): ENETUNREACH (ICMPv6 no route) at once.
func TestICMPErrNoRoute(t *testing.T) {
	icmpRow(t, "10.0.0.1", 80, syscall.ENETUNREACH, "network-unreachable", "icmp6-no-route", func(lab *netlab.Lab) {
		if out := routerIP(t, lab, "-4", "route", "show", "default"); strings.TrimSpace(out) != "" {
			t.Fatalf("the router has a default route: %s", out)
		}
		if out, err := lab.Router.IP("-4", "route", "get", "10.0.0.1"); err == nil {
			t.Fatalf("the router has a route to 10.0.0.1: %s", out)
		}
	})
}

// TestICMPErrBlackhole: a blackhole route in the router. The kernel's
// connect says EINVAL; faithif answers ICMPv6 address unreachable, so the
// client gets EHOSTUNREACH at once.
func TestICMPErrBlackhole(t *testing.T) {
	icmpRow(t, "198.51.100.1", 80, syscall.EHOSTUNREACH, "blackhole", "icmp6-addr-unreachable", func(lab *netlab.Lab) {
		routerIP(t, lab, "route", "add", "blackhole", "198.51.100.0/24")
	})
}

// TestICMPErrProhibit: a prohibit route in the router: EACCES (ICMPv6
// administratively prohibited) at once.
func TestICMPErrProhibit(t *testing.T) {
	icmpRow(t, "203.0.113.1", 80, syscall.EACCES, "prohibited", "icmp6-prohibited", func(lab *netlab.Lab) {
		routerIP(t, lab, "route", "add", "prohibit", "203.0.113.0/24")
	})
}

// TestSYNRetransmitOneDial connects to an address that does not answer
// with --dial-timeout 5s. The client retransmits its SYN (after 1 s and
// 3 s) while faithif's IPv4 dial is pending; the retransmissions reach
// faithif but start no second dial: one flow, one "flow refused" line, and
// the client gets EHOSTUNREACH when the dial times out.
func TestSYNRetransmitOneDial(t *testing.T) {
	const dialTimeout = 5 * time.Second
	lab, f := startLab(t, "--keepfaith", "--dial-timeout", dialTimeout.String())
	ctx := testCtx(t, 30*time.Second)
	// Without this the router's ARP for 192.0.2.99 gives up after 3 s (3
	// probes, 1 s apart) and the dial fails with EHOSTUNREACH just as the
	// client's second retransmission leaves: keep ARP trying for 10 s so
	// that the dial times out at 5 s, between the retransmissions at 3 s
	// and 7 s.
	if err := lab.Router.Sysctl("net.ipv4.neigh."+netlab.RouterServerLink+".mcast_solicit", "10"); err != nil {
		t.Fatal(err)
	}
	// Retransmissions at 1 s and 3 s, then 7 s: the dial times out at 5 s,
	// far from any of them. (With linear timeouts the fifth leaves at 5 s and
	// could reach faithif just after the answer, as a new flow.)
	setSynBackoff(t, lab, 0)
	st0 := mustShow(t, lab)
	c0, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	lport := clientPort()
	d := expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort("192.0.2.99", 80), syscall.EHOSTUNREACH)
	t.Logf("connect failed after %v", d.Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // a late second decision would show now
	c1, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	st := mustShow(t, lab)
	retrans := c1["TcpExtTCPSynRetrans"] - c0["TcpExtTCPSynRetrans"]
	t.Logf("client SYN retransmissions: %d; faithif packets_in +%d", retrans, st.PacketsIn-st0.PacketsIn)
	if retrans < 1 {
		t.Errorf("the client retransmitted its SYN %d times during the %v dial; want at least 1 (the test proves nothing)", retrans, dialTimeout)
	}
	if got := st.PacketsIn - st0.PacketsIn; got < 1+retrans {
		t.Errorf("faithif read %d packets; want at least the SYN and its %d retransmissions", got, retrans)
	}
	lines := refusedLines(f, lport)
	if len(lines) != 1 {
		t.Errorf("%d flow refused log lines for %s; want exactly 1:\n%s", len(lines), clientTag(lport), f.Stderr())
	} else {
		t.Logf("log: %s", lines[0])
		for _, s := range []string{"reason=timeout ", "answer=icmp6-addr-unreachable "} {
			if !strings.Contains(lines[0], s) {
				t.Errorf("the log line lacks %q: %s", s, lines[0])
			}
		}
	}
	if n := st.FlowsTotal - st0.FlowsTotal; n != 1 {
		t.Errorf("flows_total +%d; want +1 (one dial for the SYN and its retransmissions): %s", n, st.Raw)
	}
}

// TestPMTUDownload makes the router's route toward the client 1280 bytes
// while faith0 and the client's link stay at 1500: the full-size segments
// faithif sends are answered by the router with ICMPv6 Packet Too Big,
// which must reach faithif's TCP, or the download stalls with nothing
// received. 50 MiB go from the IPv4 server to the client, byte-exact,
// within 30 s (about 2 s here).
func TestPMTUDownload(t *testing.T) {
	const (
		size  = 50 << 20
		seed  = 611
		limit = 30 * time.Second
	)
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, time.Minute)
	dst := "2001:db8:1::/64"
	routerIP(t, lab, "-6", "route", "replace", dst, "dev", netlab.RouterClientLink, "proto", "kernel", "metric", "256", "mtu", "1280")
	out := routerIP(t, lab, "-6", "route", "show", dst)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "mtu 1280") {
		t.Fatalf("routes to %s in the router: %q; want exactly one, with mtu 1280", dst, out)
	}
	for _, c := range []struct {
		ns  *netlab.Namespace
		dev string
	}{{lab.Router, netlab.FaithIf}, {lab.Client, netlab.ClientLink}} {
		if out, err := c.ns.IP("-o", "link", "show", "dev", c.dev); err != nil || !strings.Contains(out, " mtu 1500 ") {
			t.Fatalf("%s in %s: %q, %v; want mtu 1500", c.dev, c.ns.Name, out, err)
		}
	}

	l, port := listenServer(t, lab)
	sent := make(chan hashResult, 1)
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(limit))
		r := sendHashed(c, seed, size)
		c.CloseWrite()
		io.Copy(io.Discard, c)
		sent <- r
	})
	st0 := mustShow(t, lab)
	c := mustDialServer(t, ctx, lab, port)
	start := time.Now()
	c.SetDeadline(start.Add(limit))
	got := recvHashed(c)
	d := time.Since(start)
	c.Close()
	st := mustShow(t, lab)
	ptb := st.ICMPv6In["packet_too_big"] - st0.ICMPv6In["packet_too_big"]
	t.Logf("received %d bytes in %v (%.1f MiB/s); icmp6_in.packet_too_big +%d", got.n, d.Round(time.Millisecond), mibps(got.n, d), ptb)
	if got.err != nil || got.n != size {
		t.Fatalf("download: %d of %d bytes after %v: %v (icmp6_in.packet_too_big +%d)", got.n, size, d.Round(time.Millisecond), got.err, ptb)
	}
	var r hashResult
	select {
	case r = <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not finish 5 s after the client read EOF")
	}
	if r.err != nil || r.n != size {
		t.Fatalf("server: sent %d of %d bytes: %v", r.n, size, r.err)
	}
	want := sha256.New()
	io.Copy(want, randReader(seed, size))
	if [32]byte(want.Sum(nil)) != got.sum || r.sum != got.sum {
		t.Fatalf("SHA-256 of the %d bytes received differs from what was sent", size)
	}
	if ptb == 0 {
		t.Errorf("icmp6_in.packet_too_big did not grow: %s", st.Raw)
	}
}

// TestICMPRateLimit starts 300 connections at once to a destination that
// is always refused (127.0.0.1 embedded). gVisor's ICMPv6 token bucket
// (burst 50, 1000 per second: pkg/tcpip/stack/icmp_rate_limit.go) lets only
// about 50 to 70 errors out per round of SYNs; the other clients
// retransmit their SYN and are answered in a later round. With the SYN
// retransmissions 1 s apart (Linux's default tcp_syn_linear_timeouts=4:
// rounds at 0, 1, 2, 3, 4 and 5 s) every connection ends with EACCES (not
// ETIMEDOUT: a suppressed error is made up for in a later round; how long
// it takes decides nothing, connectGuard is a hang guard), the suppressed
// errors are counted in icmp6_errors_rate_limited (which must grow: 300
// SYNs cannot all be answered from a bucket of 50), and every error counted
// as sent reached the client.
func TestICMPRateLimit(t *testing.T) {
	const (
		conns   = 300
		workers = 6
	)
	lab, _ := startLab(t, "--keepfaith")
	limit := 6 * time.Second // for the histogram only
	if !setSynBackoff(t, lab, 4) {
		limit = 16 * time.Second // rounds at 0, 1, 3, 7 and 15 s
	}
	st0 := mustShow(t, lab)
	c0, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	dst := netlab.FaithAddr("127.0.0.1")
	var sa unix.SockaddrInet6
	copy(sa.Addr[:], net.ParseIP(dst).To16())
	sa.Port = 80

	// The sockets are made in the client namespace first, so that the
	// connects themselves leave at once.
	fds := make([]int, conns)
	if err := lab.Client.Do(func() error {
		for i := range fds {
			fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds[i] = fd
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, fd := range fds {
			if fd > 0 {
				unix.Close(fd)
			}
		}
	})

	type result struct {
		errno    syscall.Errno
		d        time.Duration
		started  time.Time
		finished bool
	}
	results := make([]result, conns)
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	per := conns / workers
	for w := range workers {
		wg.Add(1)
		go func(mine []int, res []result) {
			defer wg.Done()
			<-startGate
			pfds := make([]unix.PollFd, len(mine))
			for i, fd := range mine {
				res[i].started = time.Now()
				if err := unix.Connect(fd, &sa); err != unix.EINPROGRESS {
					res[i].errno, res[i].finished = toErrno(err), true
				}
				pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
			}
			deadline := time.Now().Add(connectGuard)
			for time.Now().Before(deadline) {
				left := 0
				for i := range pfds {
					if res[i].finished {
						pfds[i].Fd = -1
					} else {
						left++
					}
				}
				if left == 0 {
					return
				}
				if _, err := unix.Poll(pfds, 50); err != nil && err != unix.EINTR {
					return
				}
				for i := range pfds {
					if pfds[i].Fd < 0 || pfds[i].Revents == 0 {
						continue
					}
					e, _ := unix.GetsockoptInt(mine[i], unix.SOL_SOCKET, unix.SO_ERROR)
					res[i].errno, res[i].d, res[i].finished = syscall.Errno(e), time.Since(res[i].started), true
				}
			}
		}(fds[w*per:(w+1)*per], results[w*per:(w+1)*per])
	}
	close(startGate)
	wg.Wait()

	first, last := results[0].started, results[0].started
	byErr := map[string]int{}
	var slowest time.Duration
	within1s := 0
	for _, r := range results {
		if r.started.Before(first) {
			first = r.started
		}
		if r.started.After(last) {
			last = r.started
		}
		switch {
		case !r.finished:
			byErr["still connecting"]++
		case r.errno == 0:
			byErr["connected"]++
		default:
			byErr[errnoName(r.errno)]++
		}
		if r.d > slowest {
			slowest = r.d
		}
		if r.finished && r.d < time.Second {
			within1s++
		}
	}
	spread := last.Sub(first)
	t.Logf("%d connects started within %v; outcomes %v; %d answered within 1 s, the slowest after %v", conns, spread.Round(time.Microsecond), byErr, within1s, slowest.Round(time.Millisecond))
	hist := make([]int, int(limit/time.Second)+4)
	for _, r := range results {
		if r.finished {
			hist[min(int(r.d/time.Second), len(hist)-1)]++
		}
	}
	t.Logf("answered per second after connect: %v", hist)
	if byErr["EACCES"] != conns {
		t.Errorf("outcomes %v; want all %d EACCES", byErr, conns)
	}

	time.Sleep(200 * time.Millisecond)
	st := mustShow(t, lab)
	c1, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(st.Raw), &raw); err != nil {
		t.Fatal(err)
	}
	rl, ok := raw["icmp6_errors_rate_limited_total"]
	if !ok {
		t.Fatalf("show --json has no icmp6_errors_rate_limited: %s", st.Raw)
	}
	if _, err := strconv.ParseUint(string(rl), 10, 64); err != nil {
		t.Fatalf("icmp6_errors_rate_limited is %s, not a count", rl)
	}
	limited := st.ICMPRateLimited - st0.ICMPRateLimited
	sentICMP := st.ICMPErrorsSent - st0.ICMPErrorsSent
	denied := st.FlowsDenied - st0.FlowsDenied
	received := c1["Icmp6InDestUnreachs"] - c0["Icmp6InDestUnreachs"]
	retrans := c1["TcpExtTCPSynRetrans"] - c0["TcpExtTCPSynRetrans"]
	t.Logf("faithif: flows_denied +%d, icmp6_errors_sent +%d, icmp6_errors_rate_limited +%d; client: ICMPv6 destination unreachable received %d, SYN retransmissions %d",
		denied, sentICMP, limited, received, retrans)
	// The bucket holds 50 and refills at 1000/s: only if the SYNs were
	// spread over more than 250 ms could all 300 errors go out.
	if limited == 0 {
		t.Errorf("icmp6_errors_rate_limited did not grow although %d connects started within %v (bucket: burst 50, 1000/s)", conns, spread)
	}
	if received != conns {
		t.Errorf("the client received %d ICMPv6 destination unreachable; want %d, one per connection", received, conns)
	}
	// Each suppressed error makes the client retransmit its SYN, which is
	// decided again: the decisions are the connections plus the suppressed
	// errors.
	if denied != conns+limited {
		t.Errorf("flows_denied +%d; want %d connections + %d suppressed errors = %d", denied, conns, limited, conns+limited)
	}
	if sentICMP != received {
		t.Errorf("icmp6_errors_sent +%d, but the client received %d ICMPv6 errors (%d were suppressed by the rate limit): errors suppressed by the rate limit are counted as sent", sentICMP, received, limited)
	}
}

// toErrno returns the errno of a system call's error (connect(2) returns
// nothing else).
func toErrno(err error) syscall.Errno {
	e, _ := err.(syscall.Errno)
	return e
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
