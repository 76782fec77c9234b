package stack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ipv6Packet builds an IPv6 packet with the given next header and payload.
func ipv6Packet(src, dst string, next uint8, payload []byte) []byte {
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = next
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], payload)
	return b
}

func tcpSegment(srcPort, dstPort uint16, flags header.TCPFlags) []byte {
	b := make([]byte, header.TCPMinimumSize)
	header.TCP(b).Encode(&header.TCPFields{SrcPort: srcPort, DstPort: dstPort, SeqNum: 1, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	return b
}

func icmpv6(typ header.ICMPv6Type) []byte {
	b := make([]byte, header.ICMPv6MinimumSize+header.IPv6MinimumSize)
	b[0] = byte(typ)
	return b
}

const (
	client = "2001:db8:1::2"
	faith  = "2001:db8:46::c000:202"
)

func TestDeliverFiltersAndCounts(t *testing.T) {
	tests := []struct {
		name   string
		pkt    []byte
		reason DiscardReason
		ok     bool
	}{
		{"tcp", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagAck)), 0, true},
		// A Packet Too Big must quote a tracked flow (window_test.go).
		{"icmpv6 packet too big for no flow", ipv6Packet(client, faith, 58, icmpv6(header.ICMPv6PacketTooBig)), DiscardICMPv6Invalid, false},
		{"icmpv6 unreachable", ipv6Packet(client, faith, 58, icmpv6(header.ICMPv6DstUnreachable)), 0, true},
		{"icmpv6 time exceeded", ipv6Packet(client, faith, 58, icmpv6(header.ICMPv6TimeExceeded)), 0, true},
		{"icmpv6 echo", ipv6Packet(client, faith, 58, icmpv6(header.ICMPv6EchoRequest)), DiscardICMPv6, false},
		{"icmpv6 neighbor solicitation", ipv6Packet(client, faith, 58, icmpv6(header.ICMPv6NeighborSolicit)), DiscardICMPv6, false},
		{"udp", ipv6Packet(client, faith, 17, make([]byte, 8)), DiscardNotTCP, false},
		{"hop-by-hop header", ipv6Packet(client, faith, 0, make([]byte, 8)), DiscardNotTCP, false},
		{"empty", nil, DiscardMalformed, false},
		{"ipv4", append([]byte{0x45}, make([]byte, 39)...), DiscardNotIPv6, false},
		{"version 0", make([]byte, 60), DiscardNotIPv6, false},
		{"short ipv6 header", ipv6Packet(client, faith, 6, nil)[:39], DiscardMalformed, false},
		{"payload length beyond packet", func() []byte {
			b := ipv6Packet(client, faith, 6, tcpSegment(1, 80, header.TCPFlagSyn))
			binary.BigEndian.PutUint16(b[4:], 1000)
			return b
		}(), DiscardMalformed, false},
		{"short tcp header", ipv6Packet(client, faith, 6, make([]byte, 10)), DiscardMalformed, false},
		{"short icmpv6", ipv6Packet(client, faith, 58, make([]byte, 3)), DiscardMalformed, false},
		{"v4-mapped source", ipv6Packet("::ffff:192.0.2.9", faith, 6, tcpSegment(1, 80, header.TCPFlagSyn)), DiscardBadSource, false},
		{"v4-compatible source", ipv6Packet("::192.0.2.9", faith, 6, tcpSegment(1, 80, header.TCPFlagSyn)), DiscardBadSource, false},
		{"unspecified source", ipv6Packet("::", faith, 6, tcpSegment(1, 80, header.TCPFlagSyn)), DiscardBadSource, false},
		{"loopback source", ipv6Packet("::1", faith, 6, tcpSegment(1, 80, header.TCPFlagSyn)), DiscardBadSource, false},
		{"multicast source", ipv6Packet("ff02::1", faith, 6, tcpSegment(1, 80, header.TCPFlagSyn)), DiscardBadSource, false},
		{"syn", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn)), 0, true},
		{"syn+ecn+urg+psh", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|header.TCPFlagEce|header.TCPFlagCwr|header.TCPFlagUrg|header.TCPFlagPsh)), 0, true},
		{"syn+fin", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|header.TCPFlagFin)), DiscardBadFlags, false},
		{"syn+rst", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|header.TCPFlagRst)), DiscardBadFlags, false},
		{"syn+fin+rst+psh+urg", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagRst|header.TCPFlagPsh|header.TCPFlagUrg)), DiscardBadFlags, false},
		{"syn+ack+fin", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagFin)), DiscardBadFlags, false},
		{"syn+ack+rst", ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagRst)), DiscardBadFlags, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLinkEndpoint(nil, 1500)
			e.SetCapture(true)
			e.deliver(tt.pkt) // no dispatcher attached: accepted packets stop here
			for r := DiscardReason(0); r < numDiscardReasons; r++ {
				want := uint64(0)
				if !tt.ok && r == tt.reason {
					want = 1
				}
				if got := e.stats.Discarded[r].Load(); got != want {
					t.Errorf("discarded[%s] = %d; want %d", r, got, want)
				}
			}
			if tt.pkt != nil && len(tt.pkt) > 40 && tt.pkt[6] == 58 && len(tt.pkt) >= 44 {
				if got := e.stats.ICMPv6In[tt.pkt[40]].Load(); got != 1 {
					t.Errorf("icmp6 in[%d] = %d; want 1", tt.pkt[40], got)
				}
			}
			if got := e.stats.PacketsIn.Load(); got != 1 {
				t.Errorf("packets in = %d; want 1", got)
			}
		})
	}
}

// TestBadFlagsNeverStartAFlow: a SYN carrying FIN or RST is dropped before
// the flow table and gVisor see it, so it can never start a flow; the SYN
// beside it does.
func TestBadFlagsNeverStartAFlow(t *testing.T) {
	e := newLinkEndpoint(nil, 1500)
	e.SetCapture(true)
	var syns int
	e.synHook = func(stack.TransportEndpointID, []byte) bool { syns++; return false }
	var d recordDispatcher
	e.Attach(&d)
	for _, f := range []header.TCPFlags{header.TCPFlagFin, header.TCPFlagRst, header.TCPFlagFin | header.TCPFlagRst} {
		e.deliver(ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|f)))
	}
	if syns != 0 || len(d.pkts) != 0 {
		t.Fatalf("SYN hook saw %d, gVisor got %d packets with bad flags; want none", syns, len(d.pkts))
	}
	if got := e.stats.Discarded[DiscardBadFlags].Load(); got != 3 {
		t.Errorf("discarded[bad_flags] = %d; want 3", got)
	}
	e.deliver(ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn)))
	if syns != 1 || len(d.pkts) != 1 {
		t.Errorf("a plain SYN: SYN hook saw %d, gVisor got %d; want 1, 1", syns, len(d.pkts))
	}
}

func TestDeliverWithoutKeepFaithDiscardsEverything(t *testing.T) {
	e := newLinkEndpoint(nil, 1500)
	var syns int
	e.synHook = func(stack.TransportEndpointID, []byte) bool { syns++; return false }
	for i := 0; i < 3; i++ {
		e.deliver(ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn)))
	}
	if got := e.stats.Discarded[DiscardKeepFaith].Load(); got != 3 {
		t.Fatalf("discarded[keepfaith] = %d; want 3", got)
	}
	if syns != 0 {
		t.Fatalf("SYN hook saw %d packets while keepfaith is 0", syns)
	}
}

func TestSynHookSeesOnlySyns(t *testing.T) {
	e := newLinkEndpoint(nil, 1500)
	e.SetCapture(true)
	var got []stack.TransportEndpointID
	e.synHook = func(id stack.TransportEndpointID, _ []byte) bool { got = append(got, id); return false }
	e.deliver(ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn)))
	e.deliver(ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn|header.TCPFlagAck)))
	e.deliver(ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagAck)))
	if len(got) != 1 {
		t.Fatalf("SYN hook called %d times; want 1 (SYN only)", len(got))
	}
	id := got[0]
	if id.LocalPort != 80 || id.RemotePort != 40000 ||
		addrOf(id.LocalAddress) != netip.MustParseAddr(faith) || addrOf(id.RemoteAddress) != netip.MustParseAddr(client) {
		t.Fatalf("SYN hook id = %+v; want client %s:40000 -> %s:80", id, client, faith)
	}
}

// TestICMPv6CountersStartAtZero: every named ICMPv6 type is in the counters
// from the start (a dashboard shows 0, not "no data"); an unnamed type
// appears once seen.
func TestICMPv6CountersStartAtZero(t *testing.T) {
	var ls linkStats
	m := ls.icmpv6ByType()
	if len(m) != len(icmpv6Names) {
		t.Errorf("%d types before any message, want the %d named: %v", len(m), len(icmpv6Names), m)
	}
	for _, name := range icmpv6Names {
		if n, ok := m[name]; !ok || n != 0 {
			t.Errorf("%s = %d (present %v), want 0", name, n, ok)
		}
	}
	ls.ICMPv6In[200].Add(2)
	ls.ICMPv6In[header.ICMPv6PacketTooBig].Add(1)
	m = ls.icmpv6ByType()
	if m["type_200"] != 2 || m["packet_too_big"] != 1 || len(m) != len(icmpv6Names)+1 {
		t.Errorf("after one PTB and two type 200: %v", m)
	}
}
