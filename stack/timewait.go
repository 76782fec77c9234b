package stack

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// timeWaitTable remembers the endpoints the relay closed, so that a new SYN
// from a client reusing the same 4-tuple while the endpoint sits in
// TIME_WAIT reopens the connection (RFC 1122 4.2.2.13), as Linux does.
//
// gVisor only reopens a TIME_WAIT 4-tuple for a listening endpoint; the
// forwarder is not one, so without this the SYN is swallowed until TIME_WAIT
// ends and the client's connect() stalls for seconds.
type timeWaitTable struct {
	mu sync.Mutex
	m  map[stack.TransportEndpointID]*tcp.Endpoint
	n  atomic.Int64 // len(m), read without the lock on the packet path
}

// add records a closed endpoint.
func (t *timeWaitTable) add(id stack.TransportEndpointID, ep *tcp.Endpoint) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[stack.TransportEndpointID]*tcp.Endpoint)
	}
	t.m[id] = ep
	t.n.Store(int64(len(t.m)))
	t.mu.Unlock()
}

// reopen is called for every inbound SYN: if the relay's endpoint for the
// same 4-tuple is in TIME_WAIT, it is reset and removed so that the SYN
// reaches the forwarder as a new flow. The RST it sends carries the old
// connection's numbers, which the client, now in SYN-SENT, ignores.
func (t *timeWaitTable) reopen(id stack.TransportEndpointID) {
	if t.n.Load() == 0 {
		return
	}
	t.mu.Lock()
	ep, ok := t.m[id]
	if ok {
		delete(t.m, id)
		t.n.Store(int64(len(t.m)))
	}
	t.mu.Unlock()
	if ok && ep.EndpointState() == tcp.StateTimeWait {
		ep.Abort()
	}
}

// sweep forgets the endpoints that have finished closing.
func (t *timeWaitTable) sweep() {
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

// sweepEvery sweeps every interval until ctx is done.
func (t *timeWaitTable) sweepEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.sweep()
		}
	}
}
