package stack

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// The stack's defence against a flood of SYNs from spoofed sources, which
// never answer the SYN-ACK. gVisor's forwarder holds a slot (of MaxInFlight)
// per handshake until the handshake ends, and a handshake nobody answers
// ends only after gVisor's SYN-ACK retransmissions: 1+2+...+64 s, about
// 127 s (transport/tcp/connect.go: a backoff from InitialRTO, 1 s, bounded
// by the package constant MaxRTO, 120 s). gVisor has no SYN cookies for
// forwarded flows, and its TCPSynRetriesOption is stored but read by no
// handshake at this version. So:
//
//   - Pressure, with hysteresis. The Stack comes under pressure at the first
//     sign of a flood: the flows in flight (being decided or in their
//     handshake) reach DialFirst, the relay's own bound on flows that dial
//     first (a quarter of MaxInFlight), so that the stack and the relay
//     change together; or staleCount half-open handshakes have waited
//     longer than staleAge for their client, which no round trip explains:
//     a slow flood of spoofed SYNs (10 a second) shows it within a second or
//     two, long before it fills anything. While under pressure, challenges
//     going unanswered is a sign too: at least staleCount in each of
//     challengeTicks seconds running, and more than were answered over
//     them. Signs are looked for on each SYN that reaches the flow table
//     and every second; pressure ends pressureHold after the last one.
//   - Under pressure, a SYN from a client address not yet validated is
//     answered by the link endpoint with a challenge and dropped
//     (challenge.go): spoofed sources reach neither the flow table nor
//     gVisor nor the relay, so the handshakes in flight fall back, and the
//     relay dials first again for the validated clients, which hear the
//     IPv4 server's own answer.
//   - Budgets: a half-open handshake (the SYN-ACK sent, no ACK yet) older
//     than halfOpenBudget, or pressureBudget under pressure, is aborted by
//     the sweep (every second), counted in HandshakesExpired.
//   - Eviction, the last resort, when the table is full anyway (validated
//     clients flooding): when a SYN wanting a forwarder slot arrives while
//     the flows in flight are within evictHeadroom of MaxInFlight, the
//     oldest half-open handshake is aborted, counted in HandshakesEvicted.
//   - Aborting: a handshake's endpoint is found with FindTransportEndpoint
//     and aborted; gVisor then ends the handshake at once (Abort on
//     SYN-RCVD: closeNoShutdownLocked -> handshakeFailed(ErrAborted), which
//     stops the SYN-ACK timer, unregisters the endpoint and notifies the
//     waiter queue), so CreateEndpoint returns ErrAborted, Accept fails and
//     calls Complete, and the slot is free. The client is not told (as
//     Linux); its ACK, if it ever comes, gets a RST. Flows still being
//     decided (no Accept yet) are never aborted: the relay bounds those.
//   - Counting: SYNs the forwarder drops for lack of room
//     (Stats().TCP.ForwardMaxInFlightDrop), evictions, expiries.
//
// A race: a handshake evicted or expired just as the client's ACK completes
// it is reset (the client sees ECONNRESET); the state is checked right
// before the abort, so the window is short.
const (
	maxEvictHeadroom = 64
	// halfOpenBudget: the SYN-ACK and four retransmissions (at 1, 3, 7
	// and 15 s), instead of gVisor's seven.
	halfOpenBudget = 16 * time.Second
	// pressureBudget: the SYN-ACK and two retransmissions (at 1 and 3 s).
	pressureBudget = 3 * time.Second
	// staleAge: a handshake unanswered for longer has had its SYN-ACK
	// retransmitted (gVisor's first retransmission is at 1 s); a real
	// client answers within a round trip, and a lost ACK is repaired by
	// the client's first data segment or by that retransmission.
	staleAge = time.Second
	// staleCount: so many stale handshakes at once are a flood, not lost
	// packets (a lost ACK leaves one stale for a round trip), yet a flood
	// of 10 SYNs a second shows them in under two seconds: its first 18
	// SYNs or so get through before the challenge starts (make attack).
	staleCount = 8
	// pressureHold: pressure ends this long after its last sign, so that
	// a flood in bursts does not let a burst through each time.
	pressureHold = 10 * time.Second
	// challengeTicks: unanswered challenges are a sign only when they
	// dominate for so many ticks (seconds) running, so that a second of
	// noise (a few clients behind firewalls that drop the challenge, a
	// burst of lost RSTs) does not hold pressure for pressureHold, and a
	// burst of answers in one tick does not end it.
	challengeTicks = 3
)

// evictHeadroom returns the headroom below maxInFlight at which eviction
// starts: 64, or an eighth of a small table (at least 1). The headroom
// absorbs the SYNs that arrive while evicted handshakes free their slots
// (a few goroutine wake-ups).
func evictHeadroom(maxInFlight int) int {
	return max(1, min(maxEvictHeadroom, maxInFlight/8))
}

// halfOpen lists the half-open handshakes, oldest first: requests whose
// Accept waits in gVisor's handshake. A request is in it at most once.
type halfOpen struct {
	mu         sync.Mutex
	head, tail *request
	closed     bool // the Stack is closing: no handshake starts
	evicted    atomic.Uint64
	expired    atomic.Uint64
}

// add appends r, whose handshake starts now, and reports true; or, once the
// Stack is closing, false.
func (h *halfOpen) add(r *request) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	r.hsAt, r.hsListed = time.Now(), true
	r.hsPrev, r.hsNext = h.tail, nil
	if h.tail != nil {
		h.tail.hsNext = r
	} else {
		h.head = r
	}
	h.tail = r
	return true
}

// stale returns how many of the half-open handshakes have waited at least
// staleAge at now, counting at most n (the oldest are first).
func (h *halfOpen) stale(now time.Time, n int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := 0
	for r := h.head; r != nil && c < n && now.Sub(r.hsAt) >= staleAge; r = r.hsNext {
		c++
	}
	return c
}

// remove takes r out of the list if it is in it.
func (h *halfOpen) remove(r *request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unlinkLocked(r)
}

// unlinkLocked takes r out of the list if it is in it; h.mu is held.
func (h *halfOpen) unlinkLocked(r *request) {
	if !r.hsListed {
		return
	}
	if r.hsPrev != nil {
		r.hsPrev.hsNext = r.hsNext
	} else {
		h.head = r.hsNext
	}
	if r.hsNext != nil {
		r.hsNext.hsPrev = r.hsPrev
	} else {
		h.tail = r.hsPrev
	}
	r.hsPrev, r.hsNext, r.hsListed = nil, nil, false
}

// synRcvd returns the gVisor endpoint of id if it is in SYN-RCVD, else nil.
func (s *Stack) synRcvd(id stack.TransportEndpointID) stack.TransportEndpoint {
	ep := s.gs.FindTransportEndpoint(header.IPv6ProtocolNumber, tcp.ProtocolNumber, id, nicID)
	if t, ok := ep.(*tcp.Endpoint); ok && tcp.EndpointState(t.State()) == tcp.StateSynRecv {
		return ep
	}
	return nil
}

// evictScan bounds how many of the oldest half-open handshakes eviction
// looks at: one whose endpoint is not registered yet (its Accept has just
// started) is passed over.
const evictScan = 8

// evictOldest aborts the oldest half-open handshake, if there is one, and
// reports whether it did.
func (s *Stack) evictOldest() bool {
	h := &s.halfOpen
	h.mu.Lock()
	var ep stack.TransportEndpoint
	for r, n := h.head, 0; r != nil && n < evictScan; r, n = r.hsNext, n+1 {
		if ep = s.synRcvd(r.id); ep != nil {
			h.unlinkLocked(r)
			break
		}
	}
	h.mu.Unlock()
	if ep == nil {
		return false
	}
	ep.Abort()
	h.evicted.Add(1)
	return true
}

// pressure is whether a Stack is under pressure, with hysteresis: a sign
// puts it under pressure at once; it ends pressureHold after the last sign.
type pressure struct {
	on atomic.Bool // read on the SYN path

	mu   sync.Mutex
	last time.Time // the last sign
	// asked, validated and answered are the challenge counters at the last
	// tick: challenges sent or suppressed, new validations, and those of
	// them that count against a flood (validSet.add).
	asked, validated, answered uint64
	// ticks are the unanswered and answered challenges of the last
	// challengeTicks ticks (tick i at i%challengeTicks); run is how many
	// ticks running had at least staleCount unanswered.
	ticks [challengeTicks]struct{ unanswered, answered int64 }
	tick  int
	run   int
}

// sign records a sign of pressure at now.
func (p *pressure) sign(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.After(p.last) {
		p.last = now
	}
	p.on.Store(true)
}

// settle ends pressure if pressureHold has passed at now since the last
// sign, and reports whether the Stack is still under pressure.
func (p *pressure) settle(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on.Load() && now.Sub(p.last) >= pressureHold {
		p.on.Store(false)
	}
	return p.on.Load()
}

// unanswered records the challenge counters at a tick (see the fields) and
// reports whether the challenges are a sign: in each of the last
// challengeTicks ticks at least staleCount were asked and not validated,
// and over those ticks more went unanswered than were answered. A
// challenge whose RST only replays one already seen, or validates an
// address that forgets another of its /64, is not answered: replays and
// one /64's addresses cannot outweigh a flood.
func (p *pressure) unanswered(asked, validated, answered uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	du := int64(asked-p.asked) - int64(validated-p.validated)
	p.ticks[p.tick%challengeTicks].unanswered = du
	p.ticks[p.tick%challengeTicks].answered = int64(answered - p.answered)
	p.tick++
	p.asked, p.validated, p.answered = asked, validated, answered
	if du < staleCount {
		p.run = 0
		return false
	}
	p.run++
	if p.run < challengeTicks {
		return false
	}
	var u, a int64
	for _, t := range p.ticks {
		u, a = u+t.unanswered, a+t.answered
	}
	return u > a
}

// underPressure reports whether the Stack is under pressure.
func (s *Stack) underPressure() bool { return s.press.on.Load() }

// pressureSign reports whether the handshakes at now show a flood: the
// flows in flight at DialFirst, or staleCount half-open handshakes stale.
func (s *Stack) pressureSign(now time.Time) bool {
	return s.inFlight.Load() >= s.dialFirst || s.halfOpen.stale(now, staleCount) >= staleCount
}

// pressureTick is the sweep's look at the pressure, every second: the
// handshakes, and the challenges asked and answered in the last seconds;
// then pressure ends if its hold has passed. Unanswered challenges count
// only when more than the answered ones: clients that never answer (a lost
// RST, a firewall that drops the challenge) cannot keep a busy relay under
// pressure on their own, a flood can.
func (s *Stack) pressureTick(now time.Time) {
	c := &s.link.chal
	flood := s.press.unanswered(c.sent.Load()+c.limited.Load(), c.validated.Load(), c.answered.Load())
	if s.pressureSign(now) || flood {
		s.press.sign(now)
	}
	s.press.settle(now)
}

// expire aborts the half-open handshakes older than their budget:
// halfOpenBudget, or pressureBudget under pressure.
func (s *Stack) expire(now time.Time) {
	budget := halfOpenBudget
	if s.underPressure() {
		budget = pressureBudget
	}
	h := &s.halfOpen
	for {
		h.mu.Lock()
		r := h.head
		if r == nil || now.Sub(r.hsAt) < budget {
			h.mu.Unlock()
			return
		}
		ep := s.synRcvd(r.id)
		h.unlinkLocked(r)
		h.mu.Unlock()
		if ep != nil {
			ep.Abort()
			h.expired.Add(1)
		}
	}
}

// closeHalfOpen ends every half-open handshake when the Stack closes, and
// stops new ones. gVisor's Stack.Close aborts the endpoints registered when
// it runs, but a handshake whose Accept registers its endpoint a moment
// later would wait out gVisor's whole SYN-ACK budget (~127 s), and
// Stack.Wait with it. So the list is aborted until it is empty: each Accept
// takes itself out once its CreateEndpoint returns. Bounded by closeBound.
func (s *Stack) closeHalfOpen() {
	h := &s.halfOpen
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	for deadline := time.Now().Add(closeBound); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var eps []stack.TransportEndpoint
		h.mu.Lock()
		empty := h.head == nil
		for r := h.head; r != nil; r = r.hsNext {
			if ep := s.synRcvd(r.id); ep != nil {
				eps = append(eps, ep)
			}
		}
		h.mu.Unlock()
		if empty {
			return
		}
		for _, ep := range eps {
			ep.Abort()
		}
	}
}

// closeBound bounds how long Close waits for the handshakes to end.
const closeBound = 5 * time.Second

// syn is the link endpoint's synHook. Under pressure, a SYN from an address
// not validated, for a 4-tuple the flow table does not know (not a
// retransmission of a SYN it holds, not a flow reopening), is challenged
// and taken. Any other goes to the flow table; if it wants a forwarder
// slot, it is looked at for a sign of pressure, and evicts the oldest
// half-open handshake if the table is nearly full.
func (s *Stack) syn(id stack.TransportEndpointID, pkt []byte) bool {
	if s.underPressure() {
		now := time.Now()
		if !s.link.chal.validatedSource(pkt[8:24], now) && !s.flows.known(id) {
			s.link.challenge(pkt, now)
			return true
		}
	}
	taken, fresh := s.flows.syn(id, pkt)
	if !fresh {
		return taken
	}
	if !s.underPressure() {
		if now := time.Now(); s.pressureSign(now) {
			s.press.sign(now)
		}
	}
	if s.inFlight.Load() >= s.evictAt {
		s.evictOldest()
	}
	return taken
}
