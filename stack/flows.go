package stack

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// flowTable is what a Stack knows of each captured flow, by 4-tuple, beyond
// what gVisor keeps: the client's SYN while the flow is decided, and the
// accepted Conn afterwards. Its one SYN hook is the link endpoint's synHook,
// which sees every inbound SYN after the capture filter and before gVisor.
//
// The SYN is kept so that a refusal can answer with an ICMPv6 error quoting
// it: Linux accepts such an error for a connecting socket only if the quoted
// segment matches its 4-tuple and sequence number, and gVisor's
// ForwarderRequest does not expose the SYN.
//
// The Conn is kept so that a client can reuse its port at once after a flow
// the relay closed: a new SYN for the 4-tuple of a closing endpoint reopens
// the connection (RFC 1122 4.2.2.13), as Linux does for TIME_WAIT. gVisor
// only reopens a TIME_WAIT 4-tuple for a listening endpoint; the forwarder is
// not one, so without this the SYN is swallowed until TIME_WAIT ends and the
// client's connect() stalls for seconds. The SYN often arrives right behind
// the client's FIN or last ACK, before gVisor's processor has moved the
// endpoint to TIME_WAIT or CLOSED; so the SYN is held until the endpoint gets
// there (see reopen), then the endpoint is removed and the SYN delivered.
//
// Memory under a SYN flood: the entries without a connection (a SYN held,
// or a flow being decided) are capped at maxHeld, twice the forwarder's
// MaxInFlight (2048 by default, about 0.5 MB). Beyond the cap a new SYN is
// still delivered but not held (counted in notHeld): if the relay refuses
// its flow, the answer is a RST, since there is no SYN to quote in an
// ICMPv6 error. A held SYN no one decides (the forwarder dropped it, being
// full) is forgotten after synHoldAge; and the map is remade once it holds
// under a quarter of its peak, so that its memory returns after a flood.
type flowTable struct {
	mu sync.Mutex
	m  map[stack.TransportEndpointID]*flowEntry
	// closed is set by sweep(true), when the Stack closes: nothing is held
	// or delivered any more.
	closed bool
	// pending counts the entries of m without a conn; maxHeld caps it
	// for new SYNs (0: 2*DefaultMaxInFlight); peak is the largest len(m)
	// since m was made.
	pending, maxHeld, peak int
	// notHeld counts the SYNs delivered without being held (the cap).
	notHeld atomic.Uint64

	// inject delivers a held SYN to gVisor.
	inject func([]byte)
}

// flowEntry is one flow in a flowTable. Its fields are guarded by the
// table's mu.
type flowEntry struct {
	// syn is a copy of the client's SYN (IPv6 header and payload) until
	// the flow is decided, and at is when it was taken.
	syn []byte
	at  time.Time
	// deciding is set while the forwarder's handler decides the flow.
	deciding bool
	// conn is the accepted connection, nil until then.
	conn *Conn
	// reopening is set while a new SYN for the 4-tuple waits for conn's
	// endpoint to be out of the way; one is enough, the client's
	// retransmissions meanwhile are dropped.
	reopening bool
}

// Bounds on holding a SYN.
const (
	// synHoldAge bounds how long a SYN no one decides stays in the table:
	// one the forwarder dropped (over its in-flight limit). A SYN the
	// forwarder takes is being decided within microseconds (forward), and
	// retransmissions of a SYN being decided are swallowed by the
	// forwarder and find their entry deciding; so a SYN undecided after a
	// few seconds will never be, and each retransmission of it refreshes
	// its time. 3 s covers a client's first retransmission (1 s).
	synHoldAge = 3 * time.Second
	// reopenLimit bounds how long a SYN waits for a closing endpoint.
	reopenLimit = 200 * time.Millisecond
)

// heldEntry returns a new entry holding a copy of syn.
func heldEntry(syn []byte) *flowEntry {
	return &flowEntry{syn: append([]byte(nil), syn...), at: time.Now()}
}

// putLocked makes e the entry of id; t.mu is held.
func (t *flowTable) putLocked(id stack.TransportEndpointID, e *flowEntry) {
	if t.m == nil {
		t.m = make(map[stack.TransportEndpointID]*flowEntry)
	}
	if old := t.m[id]; old != nil && old.conn == nil {
		t.pending--
	}
	if e.conn == nil {
		t.pending++
	}
	t.m[id] = e
	t.peak = max(t.peak, len(t.m))
}

// deleteLocked removes the entry of id; t.mu is held.
func (t *flowTable) deleteLocked(id stack.TransportEndpointID) {
	if old := t.m[id]; old != nil {
		if old.conn == nil {
			t.pending--
		}
		delete(t.m, id)
	}
}

// holdLocked makes an entry holding a copy of syn the entry of id, unless
// the table holds maxHeld pending entries already; t.mu is held.
func (t *flowTable) holdLocked(id stack.TransportEndpointID, syn []byte) {
	max := t.maxHeld
	if max <= 0 {
		max = 2 * DefaultMaxInFlight
	}
	if t.pending >= max {
		t.deleteLocked(id) // a closed connection's entry, if any
		t.notHeld.Add(1)
		return
	}
	t.putLocked(id, heldEntry(syn))
}

// known reports whether the table has an entry for id: a SYN held or being
// decided, a connection, or one closing.
func (t *flowTable) known(id stack.TransportEndpointID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[id]
	return ok
}

// held returns how many entries have no connection: SYNs held, flows being
// decided.
func (t *flowTable) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// syn is the link endpoint's synHook: it sees every inbound SYN, pkt valid
// only during the call, before gVisor. It returns true (taken) if it took
// the packet: the 4-tuple belongs to an endpoint that is closing, and the
// SYN will be delivered once that endpoint is out of the way. fresh says
// the SYN goes to the forwarder and wants a slot there: its 4-tuple is not
// being decided.
func (t *flowTable) syn(id stack.TransportEndpointID, pkt []byte) (taken, fresh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false, false
	}
	e := t.m[id]
	switch {
	case e == nil:
		t.holdLocked(id, pkt)
		return false, true
	case e.conn == nil:
		// Being decided, or waiting for the forwarder: keep the first
		// SYN. gVisor's forwarder swallows a retransmission of a SYN it
		// is deciding.
		if e.syn == nil {
			e.syn, e.at = append([]byte(nil), pkt...), time.Now()
		} else if !e.deciding {
			e.at = time.Now()
		}
		return false, !e.deciding
	}
	switch e.conn.state() {
	case tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateClosing, tcp.StateTimeWait, tcp.StateLastAck:
		if !e.reopening {
			e.reopening = true
			go t.reopen(id, e, append([]byte(nil), pkt...))
		}
		return true, false
	case tcp.StateClose, tcp.StateError:
		t.holdLocked(id, pkt)
		return false, true
	default:
		return false, false // a SYN inside a live connection: gVisor answers it
	}
}

// reopen waits for the endpoint of e, a closing flow, to reach TIME_WAIT or
// CLOSED, gets it out of the way, and delivers syn, the client's new SYN for
// its 4-tuple. If the endpoint takes longer than reopenLimit, the SYN is
// dropped and the client's retransmission tries again.
//
// It waits on the Conn's waiter queue rather than polling: gVisor notifies
// the queue with EventHUp (and EventErr) right after the endpoint moves to
// TIME_WAIT (startTimeWait in transport/tcp/dispatcher.go, called by
// handleConnected once the processor has handled the client's FIN or last
// ACK), to CLOSED or ERROR from a connected state (handleConnected: the ACK
// of LAST_ACK, a RST), and to CLOSED on a timer (timeWaitTimerExpired,
// finWait2TimerExpired in transport/tcp/connect.go). The entry is registered
// before the state is first checked, so no transition is missed.
func (t *flowTable) reopen(id stack.TransportEndpointID, e *flowEntry, syn []byte) {
	c := e.conn // read under t.mu by syn, which started this goroutine; never changed after
	we, ch := waiter.NewChannelEntry(waiter.EventHUp | waiter.EventErr)
	c.wq.EventRegister(&we)
	defer c.wq.EventUnregister(&we)
	deadline := time.NewTimer(reopenLimit)
	defer deadline.Stop()
	for {
		switch c.state() {
		case tcp.StateTimeWait:
			// The RST this sends carries the old connection's numbers,
			// which the client, now in SYN-SENT, ignores.
			c.ep.Abort()
			fallthrough
		case tcp.StateClose, tcp.StateError:
			t.reopened(id, e, syn)
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.mu.Lock()
			e.reopening = false
			t.mu.Unlock()
			return
		}
	}
}

// reopened delivers syn, the new SYN for the 4-tuple of e, whose endpoint is
// gone, after putting a fresh entry holding it in the table, so that a
// refusal of the new flow can quote it.
func (t *flowTable) reopened(id stack.TransportEndpointID, e *flowEntry, syn []byte) {
	t.mu.Lock()
	e.reopening = false
	if t.closed {
		t.mu.Unlock()
		return
	}
	if t.m[id] == e {
		// Else a SYN has found the endpoint closed already and replaced e
		// with an entry of its own.
		t.putLocked(id, &flowEntry{syn: syn, at: time.Now()})
	}
	t.mu.Unlock()
	t.inject(syn)
}

// decide returns the entry of id, a flow the forwarder is handing to the
// handler, marked as being decided.
func (t *flowTable) decide(id stack.TransportEndpointID) *flowEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil || e.conn != nil {
		// No SYN held (the table was swept), or a connection whose
		// endpoint has gone since the SYN was seen.
		e = &flowEntry{at: time.Now()}
		if !t.closed {
			t.putLocked(id, e)
		}
	}
	e.deciding = true
	return e
}

// decided records the decision on e, the entry of id: c, the accepted
// connection, or nil for a refusal or a failed handshake, which forget the
// flow. It returns the SYN e held, or nil. It is called before the forwarder
// request completes, while gVisor's forwarder still swallows the SYNs of the
// 4-tuple: a SYN after that finds the table as the decision left it.
func (t *flowTable) decided(id stack.TransportEndpointID, e *flowEntry, c *Conn) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	syn := e.syn
	e.syn, e.deciding = nil, false
	switch {
	case t.m[id] != e:
		e.conn = c
	case c != nil:
		t.pending--
		e.conn = c
	default:
		t.deleteLocked(id)
	}
	return syn
}

// sweep forgets the flows whose endpoint has finished closing (unless a SYN
// is reopening the 4-tuple) and the SYNs older than synHoldAge that no one is
// deciding, and remakes the map once it holds under a quarter of its peak;
// with all, it forgets everything and closes the table.
func (t *flowTable) sweep(all bool) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if all {
		t.m, t.pending, t.peak = nil, 0, 0
		t.closed = true
		return
	}
	for id, e := range t.m {
		switch {
		case e.conn != nil:
			if s := e.conn.state(); !e.reopening && (s == tcp.StateClose || s == tcp.StateError) {
				t.deleteLocked(id)
			}
		case !e.deciding && now.Sub(e.at) > synHoldAge:
			t.deleteLocked(id)
		}
	}
	if t.peak >= shrinkMin && len(t.m) < t.peak/4 {
		t.m = remake(t.m)
		t.peak = len(t.m)
	}
}
