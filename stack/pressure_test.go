package stack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// segmentFrom returns a TCP segment from client:port to faith:80 with a
// correct checksum.
func segmentFrom(port uint16, seq, ack uint32, flags header.TCPFlags) []byte {
	seg := make([]byte, header.TCPMinimumSize)
	header.TCP(seg).Encode(&header.TCPFields{SrcPort: port, DstPort: 80, SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	return withTCPChecksum(ipv6Packet(client, faith, 6, seg), false)
}

// toPort matches a segment from faith:80 to client:port whose flags, of
// those in mask, are want.
func toPort(port uint16, mask, want header.TCPFlags) func([]byte) bool {
	return func(p []byte) bool {
		if len(p) < header.IPv6MinimumSize+header.TCPMinimumSize || p[6] != uint8(header.TCPProtocolNumber) {
			return false
		}
		tcp := header.TCP(p[header.IPv6MinimumSize:])
		return addrOf(header.IPv6(p).DestinationAddress()) == netip.MustParseAddr(client) &&
			tcp.SourcePort() == 80 && tcp.DestinationPort() == port && tcp.Flags()&mask == want
	}
}

const synAck = header.TCPFlagSyn | header.TCPFlagAck

// acceptResult is what a handler's Accept returned, by client port.
type acceptResult struct {
	port uint16
	err  error
}

// acceptingStack runs a Stack whose handler accepts every flow at once
// (the handshake then waits for the client's ACK, which the tests never
// send unless they say so) and reports each Accept's result. The test
// client's address is validated, as a client flooding the table with real
// handshakes is: the tests see what the table does, not the challenge.
func acceptingStack(t *testing.T, maxInFlight int) (*Stack, *memDevice, chan acceptResult) {
	t.Helper()
	results := make(chan acceptResult, 64)
	s, dev := newTestStackWith(t, func(r flow.Request) {
		c, err := r.Accept()
		if err == nil {
			c.Abort()
		}
		results <- acceptResult{r.Client().Port(), err}
	}, Options{MTU: 1500, MaxInFlight: maxInFlight})
	validate(s, client)
	return s, dev, results
}

// validate marks addr validated in s's challenge, as a RST answering a
// challenge would.
func validate(s *Stack, addr string) {
	a := netip.MustParseAddr(addr).As16()
	s.link.chal.valid.add(a, time.Since(s.link.chal.key.epoch))
}

// next returns the next Accept result, bounded by hangGuard.
func next(t *testing.T, results chan acceptResult) acceptResult {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(hangGuard):
		t.Fatal("no Accept returned")
		return acceptResult{}
	}
}

// halfOpenFrom sends a SYN from client:port and waits for its SYN-ACK,
// whose sequence number it returns: the flow is then half-open.
func halfOpenFrom(t *testing.T, dev *memDevice, port uint16) uint32 {
	t.Helper()
	dev.in <- segmentFrom(port, 1000, 0, header.TCPFlagSyn)
	p := dev.expect(t, "SYN-ACK", toPort(port, synAck, synAck))
	return header.TCP(p[header.IPv6MinimumSize:]).SequenceNumber()
}

// TestEvictOldestHalfOpen fills the in-flight table up to where eviction
// starts with half-open handshakes (the handler called Accept; the client
// never ACKs), then shows that a new SYN evicts the oldest: its Accept fails
// at once (gVisor's CreateEndpoint returns after the abort, and Complete
// frees its slot), the new SYN gets its SYN-ACK, the evicted client's late
// ACK gets a RST, and the counters count one eviction and no drop.
func TestEvictOldestHalfOpen(t *testing.T) {
	const max = 8 // eviction starts at 7 in flight (headroom 1)
	s, dev, results := acceptingStack(t, max)
	if s.evictAt != max-1 {
		t.Fatalf("eviction starts at %d; want %d", s.evictAt, max-1)
	}
	isn := map[uint16]uint32{}
	for port := uint16(41001); port <= 41007; port++ {
		isn[port] = halfOpenFrom(t, dev, port)
	}
	if !settles(func() bool { return s.Counters().HandshakesInFlight == 7 }) {
		t.Fatalf("handshakes in flight = %d; want 7", s.Counters().HandshakesInFlight)
	}
	halfOpenFrom(t, dev, 41008)
	if r := next(t, results); r.port != 41001 || r.err == nil {
		t.Fatalf("Accept of %d returned %v; want the oldest, 41001, to fail", r.port, r.err)
	}
	if !settles(func() bool { c := s.Counters(); return c.HandshakesEvicted == 1 && c.HandshakesInFlight == 7 }) {
		c := s.Counters()
		t.Errorf("evicted %d, in flight %d; want 1, 7", c.HandshakesEvicted, c.HandshakesInFlight)
	}
	if c := s.Counters(); c.HandshakesDropped != 0 || c.HandshakesExpired != 0 {
		t.Errorf("dropped %d, expired %d; want 0, 0", c.HandshakesDropped, c.HandshakesExpired)
	}
	// The evicted client's ACK finds no endpoint: a RST.
	dev.in <- segmentFrom(41001, 1001, isn[41001]+1, header.TCPFlagAck)
	dev.expect(t, "RST for the evicted handshake's ACK", toPort(41001, header.TCPFlagRst, header.TCPFlagRst))
	// A handshake that completes is not evicted: 41002 completes, 41009
	// evicts the next oldest half-open one, 41003.
	dev.in <- segmentFrom(41002, 1001, isn[41002]+1, header.TCPFlagAck)
	if r := next(t, results); r.port != 41002 || r.err != nil {
		t.Fatalf("Accept of %d returned %v; want 41002 accepted", r.port, r.err)
	}
	halfOpenFrom(t, dev, 41009) // 7 in flight again
	halfOpenFrom(t, dev, 41010)
	if r := next(t, results); r.port != 41003 || r.err == nil {
		t.Fatalf("Accept of %d returned %v; want 41003 evicted", r.port, r.err)
	}
}

// TestFullTableDropsAndCounts: flows still being decided (no Accept yet)
// are never evicted, and a SYN the full forwarder drops is counted.
func TestFullTableDropsAndCounts(t *testing.T) {
	release := make(chan struct{})
	decided := make(chan uint16, 8)
	s, dev := newTestStackWith(t, func(r flow.Request) {
		decided <- r.Client().Port()
		<-release
		r.Refuse(flow.RefuseReset)
	}, Options{MTU: 1500, MaxInFlight: 2})
	validate(s, client)
	t.Cleanup(func() { close(release) })
	dev.in <- segmentFrom(41001, 1000, 0, header.TCPFlagSyn)
	dev.in <- segmentFrom(41002, 1000, 0, header.TCPFlagSyn)
	for range 2 {
		select {
		case <-decided:
		case <-time.After(hangGuard):
			t.Fatal("the first two flows were not handed over")
		}
	}
	dev.in <- segmentFrom(41003, 1000, 0, header.TCPFlagSyn)
	if !settles(func() bool { return s.Counters().HandshakesDropped == 1 }) {
		t.Fatalf("handshakes dropped = %d; want 1", s.Counters().HandshakesDropped)
	}
	select {
	case p := <-decided:
		t.Errorf("flow from %d handed over beyond MaxInFlight", p)
	default:
	}
	if c := s.Counters(); c.HandshakesEvicted != 0 || c.HandshakesInFlight != 2 {
		t.Errorf("evicted %d, in flight %d; want 0, 2", c.HandshakesEvicted, c.HandshakesInFlight)
	}
}

// TestExpireBudgets: a half-open handshake is aborted once older than
// halfOpenBudget (16 s), or pressureBudget (3 s) under pressure, and not
// before.
func TestExpireBudgets(t *testing.T) {
	s, dev, results := acceptingStack(t, 64)
	for port := uint16(41001); port <= 41002; port++ {
		halfOpenFrom(t, dev, port)
	}
	if !settles(func() bool { return s.Counters().HandshakesInFlight == 2 }) {
		t.Fatalf("handshakes in flight = %d; want 2", s.Counters().HandshakesInFlight)
	}
	if s.underPressure() {
		t.Fatal("under pressure with 2 of 64 in flight")
	}
	start := time.Now()
	s.expire(start.Add(pressureBudget + time.Second))
	s.expire(start.Add(halfOpenBudget - time.Second))
	if n := s.Counters().HandshakesExpired; n != 0 {
		t.Fatalf("expired %d handshakes younger than %v without pressure; want 0", n, halfOpenBudget)
	}
	s.expire(start.Add(halfOpenBudget + time.Second))
	for range 2 {
		if r := next(t, results); r.err == nil {
			t.Errorf("Accept of %d succeeded; want it expired", r.port)
		}
	}
	// Under pressure, the shorter budget.
	halfOpenFrom(t, dev, 41003)
	s.press.sign(time.Now())
	start = time.Now()
	s.expire(start.Add(pressureBudget - time.Second))
	if n := s.Counters().HandshakesExpired; n != 2 {
		t.Fatalf("expired %d; want 2 (a young handshake expired under pressure)", n)
	}
	s.expire(start.Add(pressureBudget + time.Second))
	if r := next(t, results); r.port != 41003 || r.err == nil {
		t.Errorf("Accept of %d returned %v; want 41003 expired under pressure", r.port, r.err)
	}
	if !settles(func() bool { c := s.Counters(); return c.HandshakesExpired == 3 && c.HandshakesInFlight == 0 }) {
		c := s.Counters()
		t.Errorf("expired %d, in flight %d; want 3, 0", c.HandshakesExpired, c.HandshakesInFlight)
	}
}

// TestEvictFromFullTable: with no headroom, the in-flight table full of
// half-open handshakes, a new SYN evicts the oldest; the forwarder may
// still drop that SYN (the slot is freed a moment later, by the evicted
// Accept's Complete), but its retransmission gets a SYN-ACK. Without
// eviction it would be dropped for gVisor's whole SYN-ACK budget (~127 s).
func TestEvictFromFullTable(t *testing.T) {
	s, dev, results := acceptingStack(t, 4)
	s.evictAt = 4 // before any packet: the read loop reads it after dev.in
	for port := uint16(41001); port <= 41004; port++ {
		halfOpenFrom(t, dev, port)
	}
	if !settles(func() bool { return s.Counters().HandshakesInFlight == 4 }) {
		t.Fatalf("handshakes in flight = %d; want 4", s.Counters().HandshakesInFlight)
	}
	dev.in <- segmentFrom(41005, 1000, 0, header.TCPFlagSyn)
	if r := next(t, results); r.port != 41001 || r.err == nil {
		t.Fatalf("Accept of %d returned %v; want the oldest, 41001, evicted", r.port, r.err)
	}
	if !settles(func() bool { return s.Counters().HandshakesInFlight <= 4 && s.Counters().HandshakesEvicted == 1 }) {
		t.Fatalf("evicted %d; want 1", s.Counters().HandshakesEvicted)
	}
	dropped := s.Counters().HandshakesDropped
	t.Logf("the SYN that evicted was dropped: %v", dropped == 1)
	dev.in <- segmentFrom(41005, 1000, 0, header.TCPFlagSyn) // the client's retransmission
	dev.expect(t, "SYN-ACK for the new SYN", toPort(41005, synAck, synAck))
}
