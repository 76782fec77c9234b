package stack

import "gvisor.dev/gvisor/pkg/tcpip/header"

// Counters is a snapshot of a Stack's counters: packets through the TUN
// device, what the capture filter discarded, ICMPv6 in and out, handshakes
// waiting for a decision.
//
// The struct tags describe each counter once for every reader (see package
// faithif/status): json is its key in `faithif show --json`, text its group
// and item in the text `show`, metric its Prometheus type, name (after
// faithif_) and label, help its help text.
type Counters struct {
	// HandshakesInFlight is how many captured SYNs wait for a decision.
	HandshakesInFlight int64 `json:"handshakes_in_flight" text:"flows,handshakes" metric:"gauge handshakes_in_flight" help:"Captured SYNs waiting for their IPv4 connection."`

	PacketsIn  uint64 `json:"packets_in" text:"packets,in" metric:"counter packets_total direction=in" help:"Packets crossing the TUN device, by direction."`
	PacketsOut uint64 `json:"packets_out" text:"packets,out" metric:"counter packets_total direction=out" help:"Packets crossing the TUN device, by direction."`
	// PacketsDiscarded counts inbound packets the capture filter dropped,
	// by reason (DiscardReason names).
	PacketsDiscarded map[string]uint64 `json:"packets_discarded" text:"discarded" metric:"counter packets_discarded_total reason" help:"Inbound packets discarded before the stack, by reason."`

	// ICMPv6In counts inbound ICMPv6 messages by type name: errors are
	// delivered to their flow, everything else is discarded.
	ICMPv6In map[string]uint64 `json:"icmp6_in" text:"icmp6 in" metric:"counter icmp6_received_total type" help:"Inbound ICMPv6 messages by type (errors are delivered to their flow)."`
	// ICMPv6Out counts ICMPv6 error messages sent, by type name.
	ICMPv6Out map[string]uint64 `json:"icmp6_out" text:"icmp6 sent" metric:"counter icmp6_sent_total type" help:"ICMPv6 error messages sent, by type (Destination Unreachable refuses flows)."`
	// ICMPErrorsSent counts the Destination Unreachable errors sent
	// refusing flows.
	ICMPErrorsSent uint64 `json:"icmp6_errors_sent" text:"icmp6 errors,refusing flows"`
	// ICMPRateLimited counts ICMPv6 errors suppressed by gVisor's token
	// bucket.
	ICMPRateLimited uint64 `json:"icmp6_errors_rate_limited" text:"icmp6 errors,suppressed by the rate limit" metric:"counter icmp6_errors_rate_limited_total" help:"ICMPv6 errors suppressed by the rate limit."`
}

// Counters returns a snapshot of the Stack's counters.
func (s *Stack) Counters() Counters {
	ls := &s.link.stats
	sent := s.gs.Stats().ICMP.V6.PacketsSent
	return Counters{
		HandshakesInFlight: s.inFlight.Load(),
		PacketsIn:          ls.PacketsIn.Load(),
		PacketsOut:         ls.PacketsOut.Load(),
		PacketsDiscarded:   ls.discardedByReason(),
		ICMPv6In:           ls.icmpv6ByType(),
		ICMPv6Out: map[string]uint64{
			icmpv6Names[header.ICMPv6DstUnreachable]: sent.DstUnreachable.Value(),
			icmpv6Names[header.ICMPv6PacketTooBig]:   sent.PacketTooBig.Value(),
			icmpv6Names[header.ICMPv6TimeExceeded]:   sent.TimeExceeded.Value(),
			icmpv6Names[header.ICMPv6ParamProblem]:   sent.ParamProblem.Value(),
		},
		ICMPErrorsSent:  sent.DstUnreachable.Value(),
		ICMPRateLimited: sent.RateLimited.Value(),
	}
}
