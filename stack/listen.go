package stack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/faithif/faithif/relay/flow"
)

// The stack as a flow.Network: listening on, and connecting from, FAITH
// addresses, for an application relay's data connections (relay/ftp).
//
// Listening needs no gVisor listening endpoint: the forwarder already takes
// every SYN to every address and port. A Listener is a claim on some of
// those flows, (client address, FAITH address and port): decide hands a
// claimed flow to the Listener instead of the Handler, as the same
// flow.Request, after the capture filter, the flow table, the pressure
// accounting and the SYN challenge, like any flow. The claim is narrow on
// purpose: every port of a FAITH address is a port of a real IPv4 server,
// so a flow of any other client to the same address and port is not the
// relay's to take. But while a claim is open, a flow of any other client
// to its FAITH address and port is refused with a RST, and counted
// (Counters.ClaimedFlowsRefused): the server's passive port would take the
// first connection from the relay's IPv4 address as the claiming client's,
// so another host could steal its download or inject its upload.
//
// Connecting is an ordinary gVisor endpoint bound to the FAITH address: the
// NIC spoofs, so any address is local to gVisor's checks, and the client's
// SYN-ACK passes the capture filter as any segment that is not a bare SYN.

// listenBacklog is how many claimed flows may wait for Accept; more are
// handed to the Handler, as if unclaimed.
const listenBacklog = 4

// ErrListenerClosed is Accept's error after Close.
var ErrListenerClosed = errors.New("listener closed")

// listenKey is what a Listener claims: flows from one client address to
// one FAITH address and port.
type listenKey struct {
	from  netip.Addr
	local netip.AddrPort
}

// listeners is a Stack's claims.
type listeners struct {
	n      atomic.Int32 // len(m): decide skips the lock while there are none
	mu     sync.Mutex
	m      map[listenKey]*Listener
	ports  map[netip.AddrPort]int // claims per FAITH address and port
	closed bool                   // the Stack is closing: no new claim

	refused atomic.Uint64 // flows of other clients to a claimed port, reset
}

// Listener is a claim on the flows from one client address to one FAITH
// address and port (Stack.Listen); it is a flow.Listener.
type Listener struct {
	s    *Stack
	key  listenKey
	ch   chan *request // claimed flows waiting for Accept
	done chan struct{} // closed by Close
	once sync.Once
}

var (
	_ flow.Listener = (*Listener)(nil)
	_ flow.Network  = (*Stack)(nil)
)

// Listen claims the flows from the client address from to local, a FAITH
// address and port, until the Listener is closed (flow.Network).
func (s *Stack) Listen(from netip.Addr, local netip.AddrPort) (flow.Listener, error) {
	switch {
	case !from.Is6() || from.Is4In6() || from.Zone() != "":
		return nil, fmt.Errorf("listen on %s: client %s is not an IPv6 address", local, from)
	case !local.Addr().Is6() || local.Addr().Is4In6() || local.Addr().Zone() != "" || local.Port() == 0:
		return nil, fmt.Errorf("listen on %s: want an IPv6 address and a port", local)
	}
	l := &Listener{s: s, key: listenKey{from, local}, ch: make(chan *request, listenBacklog), done: make(chan struct{})}
	ls := &s.listeners
	ls.mu.Lock()
	defer ls.mu.Unlock()
	switch {
	case ls.closed:
		return nil, fmt.Errorf("listen on %s: the stack is closing", local)
	case ls.m[l.key] != nil:
		return nil, fmt.Errorf("listen on %s for %s: already claimed", local, from)
	}
	if ls.m == nil {
		ls.m = make(map[listenKey]*Listener)
		ls.ports = make(map[netip.AddrPort]int)
	}
	ls.m[l.key] = l
	ls.ports[local]++
	ls.n.Store(int32(len(ls.m)))
	return l, nil
}

// claim hands r to the Listener claiming its flow, if there is one with
// room, or refuses it with a RST if its FAITH address and port are claimed
// for another client, and reports whether it did either; r is then the
// Listener's, or decided.
func (s *Stack) claim(r *request) bool {
	ls := &s.listeners
	if ls.n.Load() == 0 {
		return false
	}
	ls.mu.Lock()
	defer ls.mu.Unlock() // held while sending: Close cannot drain before
	l := ls.m[listenKey{r.client.Addr(), r.dest}]
	if l == nil {
		if ls.ports[r.dest] == 0 {
			return false
		}
		ls.refused.Add(1)
		r.Refuse(flow.RefuseReset)
		return true
	}
	select {
	case l.ch <- r:
		return true
	default:
		return false
	}
}

// Accept returns the next claimed flow (flow.Listener).
func (l *Listener) Accept(ctx context.Context) (flow.Request, error) {
	select {
	case r := <-l.ch:
		return r, nil
	case <-l.done:
		return nil, fmt.Errorf("accept on %s: %w", l.key.local, ErrListenerClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("accept on %s: %w", l.key.local, ctx.Err())
	}
}

// Close ends the claim; flows waiting for Accept are refused with a RST
// (flow.Listener).
func (l *Listener) Close() error {
	l.once.Do(func() {
		ls := &l.s.listeners
		ls.mu.Lock()
		if ls.m[l.key] == l {
			delete(ls.m, l.key)
			ls.n.Store(int32(len(ls.m)))
			if ls.ports[l.key.local]--; ls.ports[l.key.local] <= 0 {
				delete(ls.ports, l.key.local)
			}
		}
		ls.mu.Unlock()
		close(l.done)
		// No claim sends any more (claim holds ls.mu while sending).
		for {
			select {
			case r := <-l.ch:
				r.Refuse(flow.RefuseReset)
			default:
				return
			}
		}
	})
	return nil
}

// closeListeners closes every Listener and refuses new ones: the Stack is
// closing.
func (s *Stack) closeListeners() {
	ls := &s.listeners
	ls.mu.Lock()
	ls.closed = true
	all := make([]*Listener, 0, len(ls.m))
	for _, l := range ls.m {
		all = append(all, l)
	}
	ls.mu.Unlock()
	for _, l := range all {
		l.Close()
	}
}
