package relay

import (
	"net/netip"
	"sync"
)

// Defaults for Limits fields left zero. A client is a /64: one host, or one
// subnet behind a router, which can use any address in it.
const (
	DefaultMaxFlowsPerClient      = 4096 // a fifth of a 20,000 fd limit
	DefaultMaxHandshakesPerClient = 256  // of the stack's 1,024 in flight
)

// Limits bound what one client /64 may hold, so that one client cannot
// starve the others.
type Limits struct {
	MaxFlows      int // flows open or being set up
	MaxHandshakes int // flows waiting for their IPv4 connection
}

// The limits admit names.
const (
	limitHandshakes = "handshakes-per-client"
	limitFlows      = "flows-per-client"
)

// clientLimiter counts flows and handshakes per client /64.
type clientLimiter struct {
	limits Limits
	mu     sync.Mutex
	m      map[netip.Prefix]*clientCount
}

type clientCount struct{ flows, handshakes int }

// clientOf returns the /64 a client address belongs to.
func clientOf(a netip.Addr) netip.Prefix {
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// admit starts a handshake for client c, or says which limit refuses it.
func (l *clientLimiter) admit(c netip.Prefix) (ok bool, limit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.m[c]
	if n == nil {
		n = &clientCount{}
		if l.m == nil {
			l.m = make(map[netip.Prefix]*clientCount)
		}
		l.m[c] = n
	}
	switch {
	case n.handshakes >= l.limits.MaxHandshakes:
		return false, limitHandshakes
	case n.flows+n.handshakes >= l.limits.MaxFlows:
		return false, limitFlows
	}
	n.handshakes++
	return true, ""
}

// established turns a handshake of c into an open flow.
func (l *clientLimiter) established(c netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.m[c]
	n.handshakes--
	n.flows++
}

// done ends a handshake (open false) or a flow (open true) of c.
func (l *clientLimiter) done(c netip.Prefix, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.m[c]
	if open {
		n.flows--
	} else {
		n.handshakes--
	}
	if n.flows == 0 && n.handshakes == 0 {
		delete(l.m, c)
	}
}

// clients returns how many clients hold flows or handshakes.
func (l *clientLimiter) clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
