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
// forwarded flows. So:
//
//   - Eviction: when a SYN wanting a forwarder slot arrives while the flows in
//     flight are within evictHeadroom of MaxInFlight, the oldest half-open
//     handshake (a flow whose Accept waits in gVisor's handshake) is aborted,
//     as Linux drops the oldest request of a full SYN queue. Its endpoint is
//     found with FindTransportEndpoint and aborted; gVisor then ends the
//     handshake at once (Abort on SYN-RCVD: closeNoShutdownLocked ->
//     handshakeFailed(ErrAborted), which stops the SYN-ACK timer, unregisters
//     the endpoint and notifies the waiter queue), so CreateEndpoint returns
//     ErrAborted, Accept fails and calls Complete, and the slot is free. The
//     evicted client is not told (as Linux); its ACK, if it ever comes, gets
//     a RST. Flows still being decided (no Accept yet) are never evicted: the
//     relay bounds those.
//   - A shorter SYN-ACK budget under pressure: while the flows in flight are
//     at least half of MaxInFlight, a half-open handshake older than
//     pressureBudget (the SYN-ACK and two retransmissions, at 1 s and 3 s) is
//     aborted by the sweep (every second); below half, gVisor's own budget
//     holds again. gVisor's TCPSynRetriesOption cannot do this: it is stored
//     but no handshake reads it (at this gVisor version the SYN-ACK
//     retransmissions are bounded only by MaxRTO).
//   - Counting: SYNs the forwarder drops for lack of room
//     (Stats().TCP.ForwardMaxInFlightDrop), evictions, expiries.
//
// A race: a handshake evicted or expired just as the client's ACK completes
// it is reset (the client sees ECONNRESET); the state is checked right
// before the abort, so the window is short.
const (
	maxEvictHeadroom = 64
	pressureBudget   = 3 * time.Second
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

// underPressure reports whether the flows in flight (being decided or in
// their handshake) are at least half of MaxInFlight: while they are, a
// half-open handshake gets pressureBudget instead of gVisor's ~127 s. A
// relay can take it as its own sign of a SYN flood, since with a fast IPv4
// dial a flood fills the table with half-open handshakes, not dials.
func (s *Stack) underPressure() bool {
	return s.inFlight.Load() >= int64(s.maxInFlight/2)
}

// expire aborts the half-open handshakes older than pressureBudget while the
// Stack is under pressure.
func (s *Stack) expire(now time.Time) {
	if !s.underPressure() {
		return
	}
	h := &s.halfOpen
	for {
		h.mu.Lock()
		r := h.head
		if r == nil || now.Sub(r.hsAt) < pressureBudget {
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

// syn is the link endpoint's synHook: the flow table's, plus eviction when
// a SYN wants a forwarder slot and the table is nearly full.
func (s *Stack) syn(id stack.TransportEndpointID, pkt []byte) bool {
	taken, fresh := s.flows.syn(id, pkt)
	if fresh && s.inFlight.Load() >= s.evictAt {
		s.evictOldest()
	}
	return taken
}
