package stack

import (
	"sync"
	"time"
)

// Bounds of the set of validated client addresses (challenge.go).
const (
	// validMax bounds the addresses kept; the oldest is forgotten for a
	// new one. 16,384 entries cost 1.1 MiB at most (68 bytes each: 24 in
	// the ring, the rest in the map; TestValidSetMemory measures it), and
	// a client forgotten early is only challenged again, one round trip.
	validMax = 16384
	// validTTL is how long a validation holds: a client connecting again
	// during a long flood is challenged once every 5 minutes, and an
	// attacker who learns a validated address and forges it gets only as
	// far as the per-address limits, for at most that long.
	validTTL = 5 * time.Minute
)

// validSet is the client addresses that answered a challenge (their RST
// carried the cookie), each for validTTL, at most max of them, oldest
// forgotten first. It is a ring of entries in the order they were made,
// and a map from address to its entry's index; an address validated again
// gets a new entry, and its old one is passed over. Both are made as they
// fill and given back once the set has emptied or shrunk to a quarter of
// its peak. Safe for concurrent use.
type validSet struct {
	max int           // 0: validMax
	ttl time.Duration // 0: validTTL

	mu      sync.Mutex
	m       map[[16]byte]int32
	ring    []validEntry // grown up to max; index i%max
	head, n int          // the oldest entry's index; entries in the ring
	peak    int          // the largest len(m) since m was made
}

// validEntry is an address and when it was validated, as a duration since
// the cookie key's epoch (no pointer: the ring is not scanned by the GC).
type validEntry struct {
	addr [16]byte
	at   time.Duration
}

func (v *validSet) limits() (int, time.Duration) {
	limit, ttl := v.max, v.ttl
	if limit <= 0 {
		limit = validMax
	}
	if ttl <= 0 {
		ttl = validTTL
	}
	return limit, ttl
}

// add validates addr at now.
func (v *validSet) add(addr [16]byte, now time.Duration) {
	limit, _ := v.limits()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.n == limit {
		v.popLocked()
	}
	i := (v.head + v.n) % limit
	e := validEntry{addr: addr, at: now}
	if i == len(v.ring) {
		v.ring = append(v.ring, e)
	} else {
		v.ring[i] = e
	}
	v.n++
	if v.m == nil {
		v.m = make(map[[16]byte]int32)
	}
	v.m[addr] = int32(i)
	v.peak = max(v.peak, len(v.m))
}

// popLocked forgets the oldest entry; v.mu is held and v.n > 0.
func (v *validSet) popLocked() {
	limit, _ := v.limits()
	e := &v.ring[v.head]
	if i, ok := v.m[e.addr]; ok && int(i) == v.head {
		delete(v.m, e.addr)
	}
	v.head = (v.head + 1) % limit
	v.n--
}

// contains reports whether addr is validated at now.
func (v *validSet) contains(addr [16]byte, now time.Duration) bool {
	_, ttl := v.limits()
	v.mu.Lock()
	defer v.mu.Unlock()
	i, ok := v.m[addr]
	return ok && now-v.ring[i].at < ttl
}

// len returns how many addresses the set holds (some may have expired
// since the last sweep).
func (v *validSet) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.m)
}

// sweep forgets the entries expired at now and gives memory back: the
// ring once empty, the map once under a quarter of its peak.
func (v *validSet) sweep(now time.Duration) {
	_, ttl := v.limits()
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.n > 0 && now-v.ring[v.head].at >= ttl {
		v.popLocked()
	}
	if v.n == 0 {
		v.ring, v.head = nil, 0
	}
	if v.peak >= shrinkMin && len(v.m) < v.peak/4 {
		v.m = remake(v.m)
		v.peak = len(v.m)
	}
}
