package stack

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// client2 is a second client address, for the flows that bring the Stack
// under pressure.
const client2 = "2001:db8:1::3"

// segmentFromAddr returns a TCP segment from src:port to faith:80 with a
// correct checksum.
func segmentFromAddr(src string, port uint16, seq, ack uint32, flags header.TCPFlags) []byte {
	seg := make([]byte, header.TCPMinimumSize)
	header.TCP(seg).Encode(&header.TCPFields{SrcPort: port, DstPort: 80, SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	return withTCPChecksum(ipv6Packet(src, faith, 6, seg), false)
}

// toAddrPort matches a segment from faith:80 to addr:port whose flags, of
// those in mask, are want.
func toAddrPort(addr string, port uint16, mask, want header.TCPFlags) func([]byte) bool {
	return func(p []byte) bool {
		if len(p) < header.IPv6MinimumSize+header.TCPMinimumSize || p[6] != uint8(header.TCPProtocolNumber) {
			return false
		}
		tcp := header.TCP(p[header.IPv6MinimumSize:])
		return addrOf(header.IPv6(p).DestinationAddress()) == netip.MustParseAddr(addr) &&
			tcp.SourcePort() == 80 && tcp.DestinationPort() == port && tcp.Flags()&mask == want
	}
}

// checkChallenge checks p, the challenge for syn (from client:40000 with
// ISN isn), and returns its ACK number, the cookie.
func checkChallenge(t *testing.T, e *LinkEndpoint, p, syn []byte, isn uint32) uint32 {
	t.Helper()
	ip, sip := header.IPv6(p), header.IPv6(syn)
	if len(p) != header.IPv6MinimumSize+header.TCPMinimumSize || ip.PayloadLength() != header.TCPMinimumSize {
		t.Fatalf("challenge of %d bytes, payload length %d; want 60, 20: % x", len(p), ip.PayloadLength(), p)
	}
	if ip.SourceAddress() != sip.DestinationAddress() || ip.DestinationAddress() != sip.SourceAddress() || ip.HopLimit() != 64 || ip.NextHeader() != 6 {
		t.Errorf("challenge %s -> %s, hop limit %d, next header %d; want %s -> %s, 64, 6",
			ip.SourceAddress(), ip.DestinationAddress(), ip.HopLimit(), ip.NextHeader(), sip.DestinationAddress(), sip.SourceAddress())
	}
	tcp, stcp := header.TCP(p[header.IPv6MinimumSize:]), header.TCP(syn[header.IPv6MinimumSize:])
	if tcp.SourcePort() != stcp.DestinationPort() || tcp.DestinationPort() != stcp.SourcePort() || tcp.Flags() != header.TCPFlagSyn|header.TCPFlagAck {
		t.Errorf("challenge %d -> %d flags %s; want %d -> %d SYN|ACK", tcp.SourcePort(), tcp.DestinationPort(), tcp.Flags(), stcp.DestinationPort(), stcp.SourcePort())
	}
	if !tcpChecksumOK(p) {
		t.Error("challenge checksum wrong")
	}
	ack := tcp.AckNumber()
	if ack == isn+1 {
		t.Errorf("challenge acknowledges the SYN (%d): the client would take it", ack)
	}
	k := makeKey(syn[8:24], syn[24:40], stcp.SourcePort(), stcp.DestinationPort())
	if !e.chal.key.matches(&k, ack, time.Now()) {
		t.Errorf("challenge ACK %d is not the 4-tuple's cookie", ack)
	}
	return ack
}

// TestChallengeSYNACK: the challenge written through the device's write
// path, plain and behind a zero virtio-net header.
func TestChallengeSYNACK(t *testing.T) {
	syn := clientSegment(1000, 0, header.TCPFlagSyn, mssOption...)
	t.Run("plain", func(t *testing.T) {
		dev := newMemDevice()
		e := newLinkEndpoint(dev, 1500)
		e.challenge(syn, time.Now())
		checkChallenge(t, e, <-dev.out, syn, 1000)
		if s, o := e.chal.sent.Load(), e.stats.PacketsOut.Load(); s != 1 || o != 1 {
			t.Errorf("sent %d, packets out %d; want 1, 1", s, o)
		}
	})
	t.Run("virtio", func(t *testing.T) {
		f, err := os.Create(filepath.Join(t.TempDir(), "tun"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		e := newLinkEndpoint(fileDevice{f: f, batch: 128}, 1500)
		e.challenge(syn, time.Now())
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < virtioNetHdrLen || !bytes.Equal(b[:virtioNetHdrLen], make([]byte, virtioNetHdrLen)) {
			t.Fatalf("wrote % x; want a zero virtio-net header first", b)
		}
		checkChallenge(t, e, b[virtioNetHdrLen:], syn, 1000)
	})
}

// TestChallengeRateLimit: beyond the bucket, a SYN is dropped unanswered
// and counted.
func TestChallengeRateLimit(t *testing.T) {
	dev := newMemDevice()
	e := newLinkEndpoint(dev, 1500)
	e.chal.bucket = tokenBucket{rate: 1e-9, burst: 2}
	now := time.Now()
	for range 5 {
		e.challenge(clientSegment(1000, 0, header.TCPFlagSyn), now)
	}
	if s, l, n := e.chal.sent.Load(), e.chal.limited.Load(), len(dev.out); s != 2 || l != 3 || n != 2 {
		t.Errorf("sent %d, limited %d, written %d; want 2, 3, 2", s, l, n)
	}
}

// TestChallengeRST: a RST without ACK whose sequence number is the cookie,
// for a 4-tuple without a flow, validates its source and is dropped; any
// other RST goes to gVisor.
func TestChallengeRST(t *testing.T) {
	dev := newMemDevice()
	e := newLinkEndpoint(dev, 1500)
	e.SetCapture(true)
	var d recordDispatcher
	e.Attach(&d)
	flowExists := false
	e.noFlow = func(id stack.TransportEndpointID) bool {
		if id.LocalPort != 80 || addrOf(id.LocalAddress) != netip.MustParseAddr(faith) {
			t.Errorf("noFlow asked for %+v", id)
		}
		return !flowExists
	}
	syn := clientSegment(1000, 0, header.TCPFlagSyn)
	e.challenge(syn, time.Now())
	cookie := checkChallenge(t, e, <-dev.out, syn, 1000)

	src := netip.MustParseAddr(client).As16()
	for _, tc := range []struct {
		name     string
		pkt      []byte
		flow     bool
		rejected bool // counted as a RST with a wrong cookie
	}{
		{"wrong sequence number", clientSegment(cookie+1, 0, header.TCPFlagRst), false, true},
		{"RST with ACK", clientSegment(cookie, 1001, header.TCPFlagRst|header.TCPFlagAck), false, false},
		{"another 4-tuple", segmentFrom(40001, cookie, 0, header.TCPFlagRst), false, true},
		{"another source", segmentFromAddr(client2, 40000, cookie, 0, header.TCPFlagRst), false, true},
		{"the 4-tuple has a flow", clientSegment(cookie, 0, header.TCPFlagRst), true, false},
	} {
		flowExists = tc.flow
		n := len(d.pkts)
		r0 := e.chal.rejected.Load()
		e.deliver(tc.pkt)
		if len(d.pkts) != n+1 {
			t.Errorf("%s: not delivered to gVisor", tc.name)
		}
		if got := e.chal.rejected.Load() - r0; got != map[bool]uint64{true: 1}[tc.rejected] {
			t.Errorf("%s: rejected +%d; want +%d", tc.name, got, map[bool]uint64{true: 1}[tc.rejected])
		}
		if e.chal.validated.Load() != 0 || e.chal.validatedSource(src[:], time.Now()) {
			t.Fatalf("%s: validated the source", tc.name)
		}
	}
	flowExists = false
	n := len(d.pkts)
	e.deliver(clientSegment(cookie, 0, header.TCPFlagRst))
	if len(d.pkts) != n {
		t.Error("the RST answering the challenge went to gVisor")
	}
	if v := e.chal.validated.Load(); v != 1 || !e.chal.validatedSource(src[:], time.Now()) || e.chal.valid.len() != 1 {
		t.Errorf("validated %d, source validated %v, set %d; want 1, true, 1", v, e.chal.validatedSource(src[:], time.Now()), e.chal.valid.len())
	}
	// The same RST again (a replay): dropped as an answer, but it
	// validates nothing anew.
	n = len(d.pkts)
	e.deliver(clientSegment(cookie, 0, header.TCPFlagRst))
	if len(d.pkts) != n || e.chal.validated.Load() != 1 || e.chal.answered.Load() != 1 {
		t.Errorf("a replayed RST: delivered %v, validated %d, answered %d; want false, 1, 1",
			len(d.pkts) != n, e.chal.validated.Load(), e.chal.answered.Load())
	}
	for r := range e.stats.Discarded {
		if n := e.stats.Discarded[r].Load(); n != 0 {
			t.Errorf("discarded %d as %s; want none", n, DiscardReason(r))
		}
	}
}

// TestPressureHysteresis: with an injected clock, pressure starts at the
// first sign and ends pressureHold after the last one; the signs are the
// flows in flight at DialFirst, staleCount stale half-open handshakes, and,
// under pressure, more challenges unanswered than answered.
func TestPressureHysteresis(t *testing.T) {
	var p pressure
	t0 := time.Now()
	if p.settle(t0) {
		t.Fatal("under pressure before any sign")
	}
	p.sign(t0)
	for _, tc := range []struct {
		sign bool
		at   time.Duration
		want bool
	}{
		{false, 9 * time.Second, true},
		{true, 5 * time.Second, true},
		{false, 14*time.Second + 999*time.Millisecond, true},
		{false, 15 * time.Second, false},
		{true, 16 * time.Second, true},
		{true, 3 * time.Second, true}, // an older sign does not shorten the hold
		{false, 25 * time.Second, true},
		{false, 26 * time.Second, false},
	} {
		if tc.sign {
			p.sign(t0.Add(tc.at))
		}
		if got := p.settle(t0.Add(tc.at)); got != tc.want {
			t.Errorf("at %v (sign %v): under pressure %v; want %v", tc.at, tc.sign, got, tc.want)
		}
	}

	// The signs, on a Stack that is not running: its handshakes are made
	// up.
	s, err := New(newMemDevice(), func(flow.Request) {}, Options{MTU: 1500, MaxInFlight: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.dialFirst != 16 {
		t.Fatalf("DialFirst %d; want a quarter of 64", s.dialFirst)
	}
	var rs []*request
	for i := range staleCount {
		r := &request{id: stack.TransportEndpointID{RemotePort: uint16(i)}}
		s.halfOpen.add(r)
		rs = append(rs, r)
	}
	defer func() {
		for _, r := range rs {
			s.halfOpen.remove(r)
		}
	}()
	t0 = time.Now()
	s.halfOpen.mu.Lock()
	for i, r := range rs {
		r.hsAt = t0.Add(time.Duration(i) * 100 * time.Millisecond)
	}
	s.halfOpen.mu.Unlock()
	last := t0.Add(time.Duration(staleCount-1) * 100 * time.Millisecond)
	steps := []struct {
		name  string
		at    time.Time
		setup func()
		want  bool
	}{
		{"one handshake short of staleCount stale", last.Add(staleAge - time.Millisecond), nil, false},
		{"staleCount stale", last.Add(staleAge), nil, true},
		{"gone", last.Add(staleAge + pressureHold), func() {
			for _, r := range rs {
				s.halfOpen.remove(r)
			}
		}, false},
		{"flows in flight at DialFirst", last.Add(20 * time.Second), func() { s.inFlight.Add(16) }, true},
		{"gone", last.Add(30 * time.Second), func() { s.inFlight.Add(-16) }, false},
	}
	for _, st := range steps {
		if st.setup != nil {
			st.setup()
		}
		s.pressureTick(st.at)
		if got := s.underPressure(); got != st.want {
			t.Errorf("%s: under pressure %v; want %v", st.name, got, st.want)
		}
	}

	// Under pressure, challenges unanswered: at least staleCount in each
	// of challengeTicks ticks running, and more than answered over them.
	// A tick a second, as the sweep's.
	c := &s.link.chal
	at := last.Add(40 * time.Second)
	s.press.sign(at)
	for i, st := range []struct {
		sent, limited, validated, answered uint64
		want                               bool
		signed                             bool // a sign at this tick
	}{
		{20, 0, 0, 0, true, false},       // 20 unanswered: one tick running
		{10, 10, 0, 0, true, false},      // suppressed ones count too: two
		{20, 0, 2, 2, true, true},        // 18: three running, 58 > 2: a sign
		{30, 0, 15, 15, true, true},      // 15: 53 unanswered > 17 answered
		{30, 0, 15, 0, true, true},       // new validations that forgot their own /64's are not answers: 48 > 17
		{7, 0, 0, 0, true, false},        // 7: the run is broken
		{20, 0, 0, 0, true, false},       // one tick running again
		{20, 0, 0, 0, true, false},       // two
		{100, 0, 90, 90, true, false},    // 10 unanswered, three running, but 50 < 107 answered
		{20, 0, 0, 0, true, false},       // 50 unanswered, 90 answered over the last three
		{0, 0, 0, 0, true, false},        //
		{0, 0, 0, 0, true, false},        //
		{0, 0, 0, 0, true, false},        //
		{0, 0, 0, 0, true, false},        // 9 s after the last sign (tick 4)
		{0, 0, 0, 0, false, false},       // 10 s: the hold is over
		{1000, 0, 1000, 0, false, false}, // replays and one /64: no unanswered, no sign
	} {
		c.sent.Add(st.sent)
		c.limited.Add(st.limited)
		c.validated.Add(st.validated)
		c.answered.Add(st.answered)
		at = at.Add(time.Second)
		s.pressureTick(at)
		if got := s.underPressure(); got != st.want {
			t.Errorf("tick %d (+%d sent, +%d limited, +%d validated, +%d answered): under pressure %v; want %v",
				i, st.sent, st.limited, st.validated, st.answered, got, st.want)
		}
	}
}

// TestStackChallenge: over the in-memory TUN, a Stack comes under pressure
// (DialFirst 1, one flow in flight); a new client's SYN then gets the
// challenge SYN-ACK and never reaches the handler; the client's RST
// validates its address; its retransmitted SYN reaches the handler and the
// handshake completes. A retransmission of a SYN the flow table knows is
// not challenged.
func TestStackChallenge(t *testing.T) {
	accepted := make(chan netip.AddrPort, 4)
	handled := make(chan netip.AddrPort, 8)
	s, dev := newTestStackWith(t, func(r flow.Request) {
		handled <- r.Client()
		c, err := r.Accept()
		if err != nil {
			return
		}
		accepted <- r.Client()
		c.Abort()
	}, Options{MTU: 1500, MaxInFlight: 16, DialFirst: 1})

	// client2 holds one handshake half-open; its next SYN finds one flow
	// in flight: pressure.
	dev.in <- segmentFromAddr(client2, 41001, 1000, 0, header.TCPFlagSyn)
	dev.expect(t, "SYN-ACK to client2:41001", toAddrPort(client2, 41001, synAck, synAck))
	if !settles(func() bool { return s.Counters().HandshakesInFlight == 1 }) {
		t.Fatalf("handshakes in flight %d; want 1", s.Counters().HandshakesInFlight)
	}
	dev.in <- segmentFromAddr(client2, 41002, 1000, 0, header.TCPFlagSyn)
	dev.expect(t, "SYN-ACK to client2:41002", toAddrPort(client2, 41002, synAck, synAck))
	if !s.Counters().UnderPressure {
		t.Fatal("not under pressure with DialFirst flows in flight")
	}

	const isn = 5000
	syn := clientSegment(isn, 0, header.TCPFlagSyn, mssOption...)
	dev.in <- syn
	p := dev.expect(t, "challenge to client:40000", toClient(synAck, synAck))
	cookie := checkChallenge(t, s.link, p, syn, isn)
	// Counted once the write has returned.
	if !settles(func() bool { return s.Counters().SYNsChallenged == 1 }) || s.Counters().SYNsValidated != 0 {
		c := s.Counters()
		t.Errorf("challenged %d, validated %d; want 1, 0", c.SYNsChallenged, c.SYNsValidated)
	}

	// The client's RST (RFC 9293 3.10.7.3: SEQ = the SYN-ACK's ACK).
	dev.in <- clientSegment(cookie, 0, header.TCPFlagRst)
	if !settles(func() bool { return s.Counters().SYNsValidated == 1 }) {
		t.Fatal("the RST did not validate the client")
	}
	if c := s.Counters(); c.ValidatedSources != 1 {
		t.Errorf("validated sources %d; want 1", c.ValidatedSources)
	}

	// Its SYN again, as Linux retransmits it: to the handler.
	dev.in <- syn
	p = dev.expect(t, "gVisor's SYN-ACK to client:40000", toClient(synAck, synAck))
	tcp := header.TCP(p[header.IPv6MinimumSize:])
	if tcp.AckNumber() != isn+1 {
		t.Fatalf("SYN-ACK acks %d; want %d", tcp.AckNumber(), isn+1)
	}
	dev.in <- clientSegment(isn+1, tcp.SequenceNumber()+1, header.TCPFlagAck)
	select {
	case c := <-accepted:
		if c.Port() != 40000 {
			t.Errorf("accepted %s; want client:40000", c)
		}
	case <-time.After(hangGuard):
		t.Fatal("the validated client's handshake did not complete")
	}

	// client2's SYN again: its 4-tuple is known, not challenged; a SYN of
	// a new 4-tuple behind it is.
	dev.in <- segmentFromAddr(client2, 41001, 1000, 0, header.TCPFlagSyn)
	dev.in <- segmentFromAddr(client2, 41003, 1000, 0, header.TCPFlagSyn)
	p = dev.expect(t, "challenge to client2:41003", toAddrPort(client2, 41003, synAck, synAck))
	if ack := header.TCP(p[header.IPv6MinimumSize:]).AckNumber(); ack == 1001 {
		t.Error("client2:41003 got gVisor's SYN-ACK; want a challenge")
	}
	if !settles(func() bool { return s.Counters().SYNsChallenged >= 2 }) || s.Counters().SYNsChallenged != 2 {
		t.Errorf("challenged %d; want 2 (a known 4-tuple's SYN is not challenged)", s.Counters().SYNsChallenged)
	}
	// The handler saw client:40000 once: its challenged SYN never reached
	// it.
	n := 0
	for len(handled) > 0 {
		if c := <-handled; c.Addr() == netip.MustParseAddr(client) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the handler saw client:40000 %d times; want once", n)
	}
}
