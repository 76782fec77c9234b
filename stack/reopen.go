package stack

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// reopenTable lets a client reuse its port at once after a flow the relay
// closed: a new SYN for the 4-tuple of a closing endpoint reopens the
// connection (RFC 1122 4.2.2.13), as Linux does for TIME_WAIT.
//
// gVisor only reopens a TIME_WAIT 4-tuple for a listening endpoint. The
// forwarder is not one, so without this the SYN is swallowed until TIME_WAIT
// ends and the client's connect() stalls for seconds. The SYN often arrives
// right behind the client's FIN or last ACK, before gVisor's processor has
// moved the endpoint to TIME_WAIT or CLOSED; so the SYN is held until the
// endpoint gets there, then the endpoint is removed and the SYN delivered.
type reopenTable struct {
	mu sync.Mutex
	m  map[stack.TransportEndpointID]*tcp.Endpoint
	n  atomic.Int64 // len(m), read without the lock on the packet path
	// holding marks the 4-tuples with a SYN held; one is enough, the
	// client's retransmissions of it are dropped.
	holding map[stack.TransportEndpointID]bool

	// inject delivers a held SYN to gVisor.
	inject func([]byte)
}

// Bounds on holding a SYN for a closing endpoint.
const (
	reopenPoll  = time.Millisecond
	reopenLimit = 200 * time.Millisecond
)

// add records an accepted flow's endpoint.
func (t *reopenTable) add(id stack.TransportEndpointID, ep *tcp.Endpoint) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[stack.TransportEndpointID]*tcp.Endpoint)
	}
	t.m[id] = ep
	t.n.Store(int64(len(t.m)))
	t.mu.Unlock()
}

func (t *reopenTable) lookup(id stack.TransportEndpointID) *tcp.Endpoint {
	if t.n.Load() == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

func (t *reopenTable) remove(id stack.TransportEndpointID, ep *tcp.Endpoint) {
	t.mu.Lock()
	if t.m[id] == ep {
		delete(t.m, id)
		t.n.Store(int64(len(t.m)))
	}
	t.mu.Unlock()
}

// syn sees every inbound SYN before gVisor. It returns true if it took the
// packet: the 4-tuple belongs to an endpoint that is closing, and the SYN
// will be delivered once that endpoint is out of the way.
func (t *reopenTable) syn(id stack.TransportEndpointID, pkt []byte) bool {
	ep := t.lookup(id)
	if ep == nil {
		return false
	}
	switch ep.EndpointState() {
	case tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateClosing, tcp.StateTimeWait, tcp.StateLastAck:
	case tcp.StateClose, tcp.StateError:
		t.remove(id, ep)
		return false
	default:
		return false // a SYN inside a live connection: gVisor answers it
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holding[id] {
		return true
	}
	if t.holding == nil {
		t.holding = make(map[stack.TransportEndpointID]bool)
	}
	t.holding[id] = true
	held := append([]byte(nil), pkt...)
	go t.reopen(id, ep, held)
	return true
}

// reopen waits for ep to reach TIME_WAIT or CLOSED, removes it, and
// delivers the held SYN. If ep takes too long, the SYN is dropped and the
// client's retransmission tries again.
func (t *reopenTable) reopen(id stack.TransportEndpointID, ep *tcp.Endpoint, syn []byte) {
	defer func() {
		t.mu.Lock()
		delete(t.holding, id)
		t.mu.Unlock()
	}()
	deadline := time.Now().Add(reopenLimit)
	for {
		switch ep.EndpointState() {
		case tcp.StateTimeWait:
			// The RST this sends carries the old connection's numbers,
			// which the client, now in SYN-SENT, ignores.
			ep.Abort()
			fallthrough
		case tcp.StateClose, tcp.StateError:
			t.remove(id, ep)
			t.inject(syn)
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(reopenPoll)
	}
}

// sweep forgets the endpoints that have finished closing.
func (t *reopenTable) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, ep := range t.m {
		switch ep.EndpointState() {
		case tcp.StateClose, tcp.StateError:
			delete(t.m, id)
		}
	}
	t.n.Store(int64(len(t.m)))
}
