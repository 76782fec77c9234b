package stack

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The SYN challenge: while the Stack is under pressure (pressure.go), a SYN
// from a client address not yet validated, for a 4-tuple the Stack knows
// nothing of, never reaches gVisor. The link endpoint answers it itself
// with a SYN-ACK whose ACK number is a cookie (cookie.go) and drops it.
//
//   - A real client in SYN-SENT finds the ACK unacceptable and answers with
//     a RST whose sequence number is that ACK number, without the ACK flag
//     (RFC 9293 3.10.7.3). Linux then also re-arms its SYN retransmission
//     timer to TCP_TIMEOUT_MIN (2 jiffies) if this was its first SYN
//     (tcp_rcv_synsent_state_process: "Previous FIN/ACK or RST/ACK might
//     be ignored"), so its SYN comes again within milliseconds.
//   - The link endpoint recognises that RST without state: no ACK flag, a
//     4-tuple with no flow, the sequence number a cookie of the 4-tuple in
//     this time slot or the last. The client's address is then validated
//     for validTTL (validated.go) and the RST dropped. The client's next
//     SYN goes to gVisor as usual, and the relay decides its flow.
//   - A spoofed source never sees the SYN-ACK and never validates: its SYNs
//     cost no flow-table entry, gVisor endpoint, goroutine or IPv4
//     connection, only the challenge.
//
// A legitimate client so pays one round trip more under pressure (a Linux
// one; a client that does not retransmit at once waits for its SYN
// retransmission), and its connect() result is unchanged.
//
// The challenges are backscatter toward whatever addresses a flood forges,
// and they are written on the read loop, so they are rate-limited:
// challengeRate a second, bursts of challengeBurst. A challenge costs about
// 2 µs of that loop: 0.46 µs for the cookie, the packet and a write to
// /dev/null (BenchmarkChallenge), plus 1.6 µs for the kernel to take a
// 60-byte write on a TUN device and forward it (measured by hand: 600,000
// writes a second on one core of the machine that ran the benchmark). The
// limit gives them a tenth of that core, so that a flood cannot turn the
// read loop into a challenge writer and starve the flows' packets; it is
// 3 MB (24 Mbit/s) a second of 60-byte packets, each answering one SYN of
// at least 60 bytes (no amplification). Up to that rate every client's SYN
// is answered; beyond it a SYN is answered with probability challengeRate
// over the flood's rate, and one not answered (counted in
// Counters.ChallengesRateLimited) is another chance at each of its
// client's retransmissions (1, 3, 7 s... after the first).
const (
	challengeRate  = 50000
	challengeBurst = challengeRate / 10
)

// synChallenge is the link endpoint's challenge state: the cookie key, the
// rate limit, the validated addresses and the counters.
type synChallenge struct {
	key    cookieKey
	bucket tokenBucket
	valid  validSet

	sent      atomic.Uint64 // challenge SYN-ACKs written
	validated atomic.Uint64 // RSTs that carried a cookie and validated anew
	answered  atomic.Uint64 // of those, the ones that count against a flood (validSet.add)
	rejected  atomic.Uint64 // RSTs for no flow whose sequence number is no cookie
	limited   atomic.Uint64 // SYNs dropped unanswered, the rate limit reached
}

// initChallenge gives the endpoint its cookie key and rate limit.
func (e *LinkEndpoint) initChallenge() {
	e.chal.key = newCookieKey()
	e.chal.bucket.rate, e.chal.bucket.burst = challengeRate, challengeBurst
}

// validatedSource reports whether addr (16 bytes) is validated at now.
func (c *synChallenge) validatedSource(addr []byte, now time.Time) bool {
	return c.valid.contains([16]byte(addr), now.Sub(c.key.epoch))
}

// challenge answers syn (the IPv6 header and payload of a SYN without ACK
// that passed the capture filter) with a challenge SYN-ACK, unless the rate
// limit says no. The SYN is dropped either way.
func (e *LinkEndpoint) challenge(syn []byte, now time.Time) {
	c := &e.chal
	if !c.bucket.take(now) {
		c.limited.Add(1)
		return
	}
	ip, tcp := header.IPv6(syn), header.TCP(syn[header.IPv6MinimumSize:])
	k := makeKey(syn[8:24], syn[24:40], tcp.SourcePort(), tcp.DestinationPort())
	dataLen := max(0, len(tcp)-int(tcp.DataOffset()))
	ack, seq := c.key.cookieFor(&k, tcp.SequenceNumber(), dataLen, now)

	// The IPv6 header by hand: header.IPv6.Encode would put p on the heap.
	var p [header.IPv6MinimumSize + header.TCPMinimumSize]byte
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:], header.TCPMinimumSize)
	p[6], p[7] = uint8(header.TCPProtocolNumber), 64 // next header, hop limit
	copy(p[8:24], syn[24:40])
	copy(p[24:40], syn[8:24])
	src, dst := ip.DestinationAddress(), ip.SourceAddress()
	t := header.TCP(p[header.IPv6MinimumSize:])
	t.Encode(&header.TCPFields{
		SrcPort: tcp.DestinationPort(), DstPort: tcp.SourcePort(),
		SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagSyn | header.TCPFlagAck, WindowSize: 65535,
	})
	t.SetChecksum(^t.CalculateChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, header.TCPMinimumSize)))
	if e.writeRaw(p[:]) == nil {
		c.sent.Add(1)
	}
}

// answersChallenge reports whether b, an inbound RST without ACK (tcp its
// TCP header), answers a challenge: its sequence number is a cookie of its
// 4-tuple and the 4-tuple has no flow (noFlow). If so, the source address
// is validated, unless it was lately (validSet.add: a replayed RST
// validates nothing), and the RST is the link endpoint's to drop. A RST
// for no flow with another sequence number goes to gVisor, counted in
// rejected: a blind guess at a cookie, or a stray RST (for a flow already
// gone).
func (e *LinkEndpoint) answersChallenge(b []byte, tcp header.TCP) bool {
	if e.noFlow == nil {
		return false
	}
	now := time.Now()
	k := makeKey(b[8:24], b[24:40], tcp.SourcePort(), tcp.DestinationPort())
	cookie := e.chal.key.matches(&k, tcp.SequenceNumber(), now)
	id := stack.TransportEndpointID{
		LocalPort:     tcp.DestinationPort(),
		LocalAddress:  tcpip.AddrFrom16Slice(b[24:40]),
		RemotePort:    tcp.SourcePort(),
		RemoteAddress: tcpip.AddrFrom16Slice(b[8:24]),
	}
	if !e.noFlow(id) {
		return false
	}
	if !cookie {
		e.chal.rejected.Add(1)
		return false
	}
	fresh, counts := e.chal.valid.add([16]byte(b[8:24]), now.Sub(e.chal.key.epoch))
	if fresh {
		e.chal.validated.Add(1)
	}
	if counts {
		e.chal.answered.Add(1)
	}
	return true
}
