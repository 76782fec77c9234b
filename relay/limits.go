package relay

import (
	"net/netip"
	"sync"
)

// Defaults for Limits fields left zero. A client is a /64: one host, or a
// LAN of many hosts behind one router, which share it. Each relayed flow
// holds one file descriptor; against a limit of 20,000 descriptors:
const (
	// DefaultMaxFlowsPerAddress lets one host hold a fifth of them: it
	// takes five busy hosts to run the relay out of descriptors.
	DefaultMaxFlowsPerAddress = 4096
	// DefaultMaxFlowsPerClient lets a LAN /64 of many hosts open 10,000
	// flows at once and still leaves other clients a share.
	DefaultMaxFlowsPerClient = 16384
	// DefaultMaxHandshakesPerAddress is an eighth of DefaultMaxHandshakes
	// (a browser opens a handful at once, a load generator 64).
	DefaultMaxHandshakesPerAddress = 128
	// DefaultMaxHandshakesPerClient is a quarter of DefaultMaxHandshakes,
	// so that one /64 cannot fill the handshake table.
	DefaultMaxHandshakesPerClient = 256
	// DefaultMaxHandshakes is the stack's table of flows being set up
	// (stack.Options.MaxInFlight).
	DefaultMaxHandshakes = 1024
)

// Limits bound what one client address, one client /64 and all clients
// together may hold, so that one client cannot starve the others. A flow
// is a handshake from its SYN until its IPv4 connection and its client's
// handshake are both made, then an open flow until it ends. Where a
// per-address limit is above its /64's, the /64's binds.
type Limits struct {
	MaxFlows                int // per client /64: flows open or being set up
	MaxHandshakes           int // per client /64: flows being set up
	MaxFlowsPerAddress      int // per client address: flows open or being set up
	MaxHandshakesPerAddress int // per client address: flows being set up
	// MaxHandshakesTotal is the global cap on flows being set up, the
	// stack's MaxInFlight, and on the IPv4 connections being set up
	// (Relay.startDial), in either order. The relay dials first (before
	// the client's handshake completes) only while fewer than a quarter of
	// it are half-open (DialFirst).
	MaxHandshakesTotal int
}

// DefaultLimits returns the default limits; they are the one place the
// defaults are set, for the relay, faithif.conf and create's flags.
func DefaultLimits() Limits {
	return Limits{
		MaxFlows: DefaultMaxFlowsPerClient, MaxHandshakes: DefaultMaxHandshakesPerClient,
		MaxFlowsPerAddress: DefaultMaxFlowsPerAddress, MaxHandshakesPerAddress: DefaultMaxHandshakesPerAddress,
		MaxHandshakesTotal: DefaultMaxHandshakes,
	}
}

// withDefaults returns l with its zero or negative fields set to the
// defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct{ v, d *int }{
		{&l.MaxFlows, &d.MaxFlows}, {&l.MaxHandshakes, &d.MaxHandshakes},
		{&l.MaxFlowsPerAddress, &d.MaxFlowsPerAddress}, {&l.MaxHandshakesPerAddress, &d.MaxHandshakesPerAddress},
		{&l.MaxHandshakesTotal, &d.MaxHandshakesTotal},
	} {
		if *f.v <= 0 {
			*f.v = *f.d
		}
	}
	return l
}

// DialFirst is how many handshakes may be half-open (dialling, or waiting
// for their client) with new flows still dialling first: a quarter of
// MaxHandshakesTotal. It bounds the flows that dial first.
func (l Limits) DialFirst() int { return max(1, l.MaxHandshakesTotal/4) }

// The limits admit names (limit= in logs). "client" is the /64.
const (
	limitHandshakesAddr = "handshakes-per-address"
	limitHandshakes     = "handshakes-per-client"
	limitFlowsAddr      = "flows-per-address"
	limitFlows          = "flows-per-client"
)

// clientLimiter counts flows and handshakes per client address and per
// client /64. Its maps hold only clients with flows, so their size is
// bounded by the flows the other limits let in; a map grown large is
// replaced once it empties, as Go maps never shrink.
type clientLimiter struct {
	limits Limits
	mu     sync.Mutex
	nets   countMap[netip.Prefix]
	addrs  countMap[netip.Addr]
}

type clientCount struct{ flows, handshakes int }

// countMap is a map of counts that releases its memory once empty.
type countMap[K comparable] struct {
	m    map[K]*clientCount
	peak int
}

// shrinkAbove is the size above which an emptied countMap is reallocated.
const shrinkAbove = 1024

func (c *countMap[K]) get(k K) *clientCount {
	n := c.m[k]
	if n == nil {
		n = &clientCount{}
		if c.m == nil {
			c.m = make(map[K]*clientCount)
		}
		c.m[k] = n
		c.peak = max(c.peak, len(c.m))
	}
	return n
}

// release deletes k once its counts are zero.
func (c *countMap[K]) release(k K, n *clientCount) {
	if n.flows != 0 || n.handshakes != 0 {
		return
	}
	delete(c.m, k)
	if len(c.m) == 0 && c.peak > shrinkAbove {
		c.m, c.peak = nil, 0
	}
}

// clientOf returns the /64 a client address belongs to.
func clientOf(a netip.Addr) netip.Prefix {
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// admit starts a handshake for the client at a, or says which limit
// refuses it.
func (l *clientLimiter) admit(a netip.Addr) (ok bool, limit string) {
	a = a.WithZone("")
	net := clientOf(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	na, nn := l.addrs.m[a], l.nets.m[net]
	var addr, client clientCount
	if na != nil {
		addr = *na
	}
	if nn != nil {
		client = *nn
	}
	switch {
	case addr.handshakes >= l.limits.MaxHandshakesPerAddress:
		return false, limitHandshakesAddr
	case client.handshakes >= l.limits.MaxHandshakes:
		return false, limitHandshakes
	case addr.flows+addr.handshakes >= l.limits.MaxFlowsPerAddress:
		return false, limitFlowsAddr
	case client.flows+client.handshakes >= l.limits.MaxFlows:
		return false, limitFlows
	}
	l.addrs.get(a).handshakes++
	l.nets.get(net).handshakes++
	return true, ""
}

// established turns a handshake of the client at a into an open flow.
func (l *clientLimiter) established(a netip.Addr) {
	a = a.WithZone("")
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range []*clientCount{l.addrs.m[a], l.nets.m[clientOf(a)]} {
		n.handshakes--
		n.flows++
	}
}

// done ends a handshake (open false) or a flow (open true) of the client
// at a.
func (l *clientLimiter) done(a netip.Addr, open bool) {
	a = a.WithZone("")
	net := clientOf(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	na, nn := l.addrs.m[a], l.nets.m[net]
	for _, n := range []*clientCount{na, nn} {
		if open {
			n.flows--
		} else {
			n.handshakes--
		}
	}
	l.addrs.release(a, na)
	l.nets.release(net, nn)
}

// clients returns how many client /64s hold flows or handshakes.
func (l *clientLimiter) clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.nets.m)
}
