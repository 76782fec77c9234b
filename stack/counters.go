package stack

import "gvisor.dev/gvisor/pkg/tcpip/header"

// Counters is a snapshot of a Stack's counters: packets through the TUN
// device, what the capture filter discarded, ICMPv6 in and out, handshakes
// waiting for a decision and what a SYN flood did to them (pressure.go), the
// SYNs the flow table holds (flows.go), the SYN challenge (challenge.go).
//
// The struct tags describe each counter once for every reader (see package
// faithif/status): json is its key in `faithif show --json`, text its group
// and item in the text `show`, metric its Prometheus type, name (after
// faithif_) and label, help its help text.
type Counters struct {
	// HandshakesInFlight is how many captured SYNs wait for a decision.
	HandshakesInFlight int64 `json:"handshakes_in_flight" text:"flows,handshakes" metric:"gauge handshakes_in_flight" help:"Captured SYNs waiting for their IPv4 connection."`
	// HandshakesDropped counts the SYNs gVisor's forwarder dropped because
	// MaxInFlight flows were in flight.
	HandshakesDropped uint64 `json:"handshakes_dropped_total" text:"handshakes,dropped for lack of room" metric:"counter handshakes_dropped_total" help:"SYNs dropped because the handshake table (max_handshakes) was full."`
	// HandshakesEvicted counts the half-open handshakes aborted, oldest
	// first, to make room for a new SYN.
	HandshakesEvicted uint64 `json:"handshakes_evicted_total" text:"handshakes,evicted" metric:"counter handshakes_evicted_total" help:"Half-open handshakes aborted, oldest first, to make room for new SYNs."`
	// HandshakesExpired counts the half-open handshakes aborted after
	// their SYN-ACK budget (pressure.go).
	HandshakesExpired uint64 `json:"handshakes_expired_total" text:"handshakes,expired" metric:"counter handshakes_expired_total" help:"Half-open handshakes aborted after their SYN-ACK budget: 16 s, 3 s under pressure."`
	// SYNsHeld is how many flow-table entries have no connection yet: a
	// SYN held while its flow waits or is decided.
	SYNsHeld int64 `json:"syns_held" text:"syns,held" metric:"gauge syns_held" help:"SYNs held while their flow is decided (capped at twice max_handshakes)."`
	// SYNsNotHeld counts the SYNs delivered without being held because the
	// flow table's cap was reached: a refusal of such a flow is a RST.
	SYNsNotHeld uint64 `json:"syns_not_held_total" text:"syns,not held (cap reached)" metric:"counter syns_not_held_total" help:"SYNs delivered without being held, the flow table's cap reached (a refusal is then a RST)."`
	// UnderPressure says the Stack is under pressure (pressure.go): SYNs
	// from addresses not validated are challenged.
	UnderPressure bool `json:"under_pressure" text:"syn challenge,under pressure" metric:"gauge under_pressure" help:"1 while the stack is under pressure (a SYN flood): SYNs from client addresses not validated get a challenge."`
	// SYNsChallenged counts the SYNs answered with a challenge SYN-ACK
	// and dropped (challenge.go).
	SYNsChallenged uint64 `json:"syns_challenged_total" text:"syn challenge,challenged" metric:"counter syns_challenged_total" help:"SYNs from client addresses not validated, answered under pressure with a challenge SYN-ACK and dropped."`
	// SYNsValidated counts the RSTs that answered a challenge and
	// validated their client address anew (not one validated in the last
	// 2.5 minutes: a replayed RST counts once).
	SYNsValidated uint64 `json:"syns_validated_total" text:"syn challenge,validated" metric:"counter syns_validated_total" help:"Client addresses validated by a RST answering a challenge SYN-ACK (replays not counted)."`
	// ChallengesRateLimited counts the SYNs that would have been
	// challenged, dropped unanswered by the challenges' rate limit.
	ChallengesRateLimited uint64 `json:"syn_challenges_rate_limited_total" text:"syn challenge,suppressed by the rate limit" metric:"counter syn_challenges_rate_limited_total" help:"SYNs dropped under pressure without a challenge, the challenges' rate limit (50,000/s) reached."`
	// ChallengeRSTsRejected counts the RSTs without ACK for no flow whose
	// sequence number is not a cookie of their 4-tuple: guesses at a
	// cookie, or stray RSTs for flows already gone. They go on to gVisor.
	ChallengeRSTsRejected uint64 `json:"syn_challenge_rsts_rejected_total" text:"syn challenge,RSTs with a wrong cookie" metric:"counter syn_challenge_rsts_rejected_total" help:"RSTs without ACK for no flow whose sequence number is not a challenge's cookie (guesses, or strays)."`
	// ValidatedSources is how many client addresses are validated now.
	ValidatedSources int64 `json:"validated_sources" text:"syn challenge,validated addresses" metric:"gauge validated_sources" help:"Client addresses validated by a challenge in the last 5 minutes (at most 16,384, 64 per /64)."`

	// ClaimedFlowsRefused counts the flows reset because their FAITH
	// address and port were claimed by a Listener for another client (an
	// FTP passive data port: listen.go).
	ClaimedFlowsRefused uint64 `json:"claimed_flows_refused_total" text:"flows,refused: port claimed for another client" metric:"counter claimed_flows_refused_total" help:"Connections reset because their FAITH address and port were an FTP passive data port announced to another client."`

	PacketsIn  uint64 `json:"packets_in_total" text:"packets,in" metric:"counter packets_total direction=in" help:"Packets crossing the TUN device, by direction."`
	PacketsOut uint64 `json:"packets_out_total" text:"packets,out" metric:"counter packets_total direction=out" help:"Packets crossing the TUN device, by direction."`
	// PacketsDiscarded counts inbound packets the capture filter dropped,
	// by reason (DiscardReason names).
	PacketsDiscarded map[string]uint64 `json:"packets_discarded_total" text:"discarded" metric:"counter packets_discarded_total reason" help:"Inbound packets discarded before the stack, by reason."`

	// ICMPv6In counts inbound ICMPv6 messages by type name: errors are
	// delivered to their flow, everything else is discarded.
	ICMPv6In map[string]uint64 `json:"icmp6_received_total" text:"icmp6 in" metric:"counter icmp6_received_total type" help:"Inbound ICMPv6 messages by type (errors are delivered to their flow)."`
	// PTBMTURaised counts the Packets Too Big delivered with their MTU,
	// below 1280, raised to 1280 (RFC 8201).
	PTBMTURaised uint64 `json:"icmp6_ptb_mtu_raised_total" text:"pmtu,too big below 1280 raised to 1280" metric:"counter icmp6_ptb_mtu_raised_total" help:"ICMPv6 Packets Too Big whose MTU, below 1280, was raised to 1280."`
	// ICMPv6Out counts ICMPv6 error messages sent, by type name.
	ICMPv6Out map[string]uint64 `json:"icmp6_sent_total" text:"icmp6 sent" metric:"counter icmp6_sent_total type" help:"ICMPv6 error messages sent, by type (Destination Unreachable refuses flows)."`
	// ICMPErrorsSent counts the Destination Unreachable errors sent
	// refusing flows.
	ICMPErrorsSent uint64 `json:"icmp6_errors_sent" text:"icmp6 errors,refusing flows"`
	// ICMPRateLimited counts ICMPv6 errors suppressed by gVisor's token
	// bucket.
	ICMPRateLimited uint64 `json:"icmp6_errors_rate_limited_total" text:"icmp6 errors,suppressed by the rate limit" metric:"counter icmp6_errors_rate_limited_total" help:"ICMPv6 errors suppressed by the rate limit."`
}

// Counters returns a snapshot of the Stack's counters.
func (s *Stack) Counters() Counters {
	ls := &s.link.stats
	sent := s.gs.Stats().ICMP.V6.PacketsSent
	return Counters{
		HandshakesInFlight:    s.inFlight.Load(),
		HandshakesDropped:     s.gs.Stats().TCP.ForwardMaxInFlightDrop.Value(),
		HandshakesEvicted:     s.halfOpen.evicted.Load(),
		HandshakesExpired:     s.halfOpen.expired.Load(),
		SYNsHeld:              int64(s.flows.held()),
		SYNsNotHeld:           s.flows.notHeld.Load(),
		UnderPressure:         s.underPressure(),
		SYNsChallenged:        s.link.chal.sent.Load(),
		SYNsValidated:         s.link.chal.validated.Load(),
		ChallengesRateLimited: s.link.chal.limited.Load(),
		ChallengeRSTsRejected: s.link.chal.rejected.Load(),
		ValidatedSources:      int64(s.link.chal.valid.len()),
		PTBMTURaised:          ls.PTBRaised.Load(),
		ClaimedFlowsRefused:   s.listeners.refused.Load(),
		PacketsIn:             ls.PacketsIn.Load(),
		PacketsOut:            ls.PacketsOut.Load(),
		PacketsDiscarded:      ls.discardedByReason(),
		ICMPv6In:              ls.icmpv6ByType(),
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
