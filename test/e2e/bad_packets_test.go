package e2e

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

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

	type disc = map[string]uint64
	cases := []struct {
		name  string
		build func(i int) []byte
		check func(a, b disc) uint64 // the counter that must grow by n
	}{
		{"SYN from IPv4-mapped ::ffff:192.0.2.9", func(i int) []byte {
			return netlab.BuildIPv6(netip.MustParseAddr("::ffff:192.0.2.9"), dst, syscall.IPPROTO_TCP, syn(i))
		}, func(a, b disc) uint64 { return b["bad_source"] - a["bad_source"] }},
		{"SYN from IPv4-compatible ::192.0.2.9", func(i int) []byte {
			return netlab.BuildIPv6(netip.MustParseAddr("::192.0.2.9"), dst, syscall.IPPROTO_TCP, syn(i))
		}, func(a, b disc) uint64 { return b["bad_source"] - a["bad_source"] }},
		{"TCP with 8 bytes of payload", func(i int) []byte {
			return netlab.BuildIPv6(router, dst, syscall.IPPROTO_TCP, syn(i)[:8])
		}, func(a, b disc) uint64 { return b["malformed"] - a["malformed"] }},
		{"UDP datagram", func(i int) []byte {
			return netlab.BuildIPv6(router, dst, syscall.IPPROTO_UDP, udp)
		}, func(a, b disc) uint64 { return b["not_tcp"] - a["not_tcp"] }},
		{"ICMPv6 echo request", func(i int) []byte {
			return netlab.BuildIPv6(router, dst, syscall.IPPROTO_ICMPV6, echo)
		}, func(a, b disc) uint64 { return b["icmpv6_other"] - a["icmpv6_other"] }},
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
			if b["bad_source"]-a["bad_source"] != n || b["malformed"] != a["malformed"] {
				t.Errorf("%s: bad_source +%d, malformed +%d; want +%d, +0", tc.name, b["bad_source"]-a["bad_source"], b["malformed"]-a["malformed"], n)
			}
		case strings.HasPrefix(tc.name, "TCP"):
			if b["malformed"]-a["malformed"] != n || b["bad_source"] != a["bad_source"] {
				t.Errorf("%s: malformed +%d, bad_source +%d; want +%d, +0", tc.name, b["malformed"]-a["malformed"], b["bad_source"]-a["bad_source"], n)
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
