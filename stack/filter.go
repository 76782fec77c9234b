package stack

import (
	"fmt"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DiscardReason says why an inbound packet was not handed to gVisor. Its
// names (String) are the keys of Counters.PacketsDiscarded.
type DiscardReason int

// The reasons a packet is discarded; linkStats.Discarded is indexed by them.
const (
	DiscardKeepFaith DiscardReason = iota // net.inet6.ip6.keepfaith is 0
	DiscardMalformed                      // too short, bad length, not parseable
	DiscardNotIPv6                        // IPv4 or another version
	DiscardNotTCP                         // UDP, extension headers, anything but TCP and ICMPv6
	DiscardICMPv6                         // an ICMPv6 message other than DU, PTB, TE
	DiscardBadSource                      // unspecified, loopback, multicast or IPv4-mapped source
	// DiscardBadFlags: a SYN with FIN or RST, which no TCP sends. Linux
	// discards both on a listener (tcp_rcv_state_process: a RST first,
	// then "if (th->fin) goto discard" for a SYN), netfilter's conntrack
	// calls them invalid, and gVisor's forwarder would take either as a
	// SYN and start a flow. On an established flow they are dropped too:
	// stray control bits from a scanner must not reset a flow.
	DiscardBadFlags
	// DiscardICMPv6Invalid: a Packet Too Big that quotes no segment within
	// a tracked flow's unacknowledged send window (see checkPTB).
	DiscardICMPv6Invalid
	numDiscardReasons
)

// taken is not a discard: a hook took the packet to deliver it later.
const taken DiscardReason = -1

// discardNames are the DiscardReasons' names, as status output shows them.
var discardNames = [numDiscardReasons]string{"keepfaith", "malformed", "not_ipv6", "not_tcp", "icmpv6_other", "bad_source", "bad_flags", "icmpv6_invalid"}

// String returns the reason's name as used in status output.
func (r DiscardReason) String() string { return discardNames[r] }

// linkStats counts packets crossing the link endpoint. All fields are safe
// for concurrent use.
type linkStats struct {
	PacketsIn  atomic.Uint64
	PacketsOut atomic.Uint64
	Discarded  [numDiscardReasons]atomic.Uint64
	// ICMPv6In counts inbound ICMPv6 messages by type, delivered (errors
	// for FAITH flows) or discarded (everything else).
	ICMPv6In [256]atomic.Uint64
	// PTBRaised counts the Packets Too Big delivered with their MTU
	// raised to 1280.
	PTBRaised atomic.Uint64
}

// icmpv6Names are the ICMPv6 types' names in the counters; a type not
// listed is named type_N.
var icmpv6Names = map[header.ICMPv6Type]string{
	header.ICMPv6DstUnreachable:  "dst_unreachable",
	header.ICMPv6PacketTooBig:    "packet_too_big",
	header.ICMPv6TimeExceeded:    "time_exceeded",
	header.ICMPv6ParamProblem:    "param_problem",
	header.ICMPv6EchoRequest:     "echo_request",
	header.ICMPv6EchoReply:       "echo_reply",
	header.ICMPv6RouterSolicit:   "router_solicit",
	header.ICMPv6NeighborSolicit: "neighbor_solicit",
	header.ICMPv6NeighborAdvert:  "neighbor_advert",
	header.ICMPv6RedirectMsg:     "redirect",
}

// icmpv6ByType returns the inbound ICMPv6 counters by type name: every
// named type, zero or not (so that a dashboard shows 0, not "no data"), and
// the other types once seen.
func (s *linkStats) icmpv6ByType() map[string]uint64 {
	m := make(map[string]uint64, len(icmpv6Names))
	for t := range s.ICMPv6In {
		n := s.ICMPv6In[t].Load()
		name, ok := icmpv6Names[header.ICMPv6Type(t)]
		switch {
		case ok:
			m[name] = n
		case n > 0:
			m[fmt.Sprintf("type_%d", t)] = n
		}
	}
	return m
}

// discardedByReason returns the discard counters by reason name.
func (s *linkStats) discardedByReason() map[string]uint64 {
	m := make(map[string]uint64, numDiscardReasons)
	for i := range s.Discarded {
		m[DiscardReason(i).String()] = s.Discarded[i].Load()
	}
	return m
}

// classify decides whether b is something faith(4) captures: an IPv6 TCP
// segment with a possible combination of flags, or an ICMPv6 Destination
// Unreachable, Time Exceeded, or Packet Too Big that passes checkPTB (which
// may rewrite it). It also shows SYNs to the synHook (the IPv6 header and as
// much payload as its length says), which may challenge them (pressure.go),
// the client's ACKs to the send windows, and takes a RST without ACK that
// answers a challenge (challenge.go).
// validated says the packet's checksum is known good; if it is not and gVisor
// is told to trust every checksum (see Capabilities), a TCP checksum is
// checked here.
func (e *LinkEndpoint) classify(b []byte, validated bool) (DiscardReason, bool) {
	if len(b) < 1 {
		return DiscardMalformed, false
	}
	if b[0]>>4 != 6 {
		return DiscardNotIPv6, false
	}
	if len(b) < header.IPv6MinimumSize {
		return DiscardMalformed, false
	}
	ip := header.IPv6(b)
	payload := int(ip.PayloadLength())
	if header.IPv6MinimumSize+payload > len(b) {
		return DiscardMalformed, false
	}
	src := ip.SourceAddress()
	if src == header.IPv6Any || src == header.IPv6Loopback || header.IsV6MulticastAddress(src) || isV4Mapped(src) || isV4Compatible(src) {
		return DiscardBadSource, false
	}
	l4 := b[header.IPv6MinimumSize : header.IPv6MinimumSize+payload]
	switch tcpip.TransportProtocolNumber(ip.NextHeader()) {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return DiscardMalformed, false
		}
		tcp := header.TCP(l4)
		if e.gso && !validated {
			xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, ip.DestinationAddress(), uint16(len(l4)))
			if checksum.Checksum(l4, xsum) != 0xffff {
				return DiscardMalformed, false
			}
		}
		flags := tcp.Flags()
		if flags&header.TCPFlagSyn != 0 && flags&(header.TCPFlagFin|header.TCPFlagRst) != 0 {
			return DiscardBadFlags, false
		}
		if flags&header.TCPFlagAck != 0 && e.wins.n.Load() != 0 {
			k := makeKey(b[8:24], b[24:40], tcp.SourcePort(), tcp.DestinationPort())
			e.wins.acked(&k, tcp.AckNumber())
		}
		if flags&(header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagFin|header.TCPFlagRst) == header.TCPFlagRst && e.answersChallenge(b, tcp) {
			return taken, false
		}
		if e.synHook != nil && flags&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn {
			id := stack.TransportEndpointID{
				LocalPort:     tcp.DestinationPort(),
				LocalAddress:  ip.DestinationAddress(),
				RemotePort:    tcp.SourcePort(),
				RemoteAddress: src,
			}
			if e.synHook(id, b[:header.IPv6MinimumSize+payload]) {
				return taken, false
			}
		}
		return 0, true
	case header.ICMPv6ProtocolNumber:
		if len(l4) < header.ICMPv6MinimumSize {
			return DiscardMalformed, false
		}
		typ := header.ICMPv6(l4).Type()
		e.stats.ICMPv6In[typ].Add(1)
		switch typ {
		case header.ICMPv6DstUnreachable, header.ICMPv6TimeExceeded:
			return 0, true
		case header.ICMPv6PacketTooBig:
			return e.checkPTB(header.ICMPv6(l4))
		}
		return DiscardICMPv6, false
	default:
		return DiscardNotTCP, false
	}
}

// isV4Compatible reports an IPv4-compatible address, ::a.b.c.d (RFC 4291
// 2.5.5.1, deprecated); :: and ::1 are checked separately.
func isV4Compatible(a tcpip.Address) bool {
	b := a.As16()
	return [12]byte(b[:12]) == [12]byte{}
}

// isV4Mapped reports an IPv4-mapped address, ::ffff:a.b.c.d.
func isV4Mapped(a tcpip.Address) bool {
	b := a.As16()
	return [12]byte(b[:12]) == [12]byte{10: 0xff, 11: 0xff}
}
