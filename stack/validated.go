package stack

import (
	"sync"
	"time"
)

// Bounds of the set of validated client addresses (challenge.go).
const (
	// validMax bounds the addresses kept. 16,384 cost about 2.5 MiB at
	// most, each in a /64 of its own (TestValidSetMemory measures it),
	// and a client forgotten early is only challenged again, one round
	// trip.
	validMax = 16384
	// validPerNet bounds the addresses kept per /64: a /64 holds 2^64
	// addresses and one holder can answer challenges for all of them, so
	// a new address beyond it forgets its own /64's oldest, never another
	// /64's. 64 is more hosts than a LAN connects through faithif within
	// the 5 minutes of a validation in a flood; one forgotten early is
	// only challenged again.
	validPerNet = 64
	// validTTL is how long a validation holds: a client connecting again
	// during a long flood is challenged once every 5 minutes, and an
	// attacker who learns a validated address and forges it gets only as
	// far as the per-address limits, for at most that long.
	validTTL = 5 * time.Minute
)

// noEntry is the null index of the set's lists.
const noEntry = -1

// validSet is the client addresses that answered a challenge (their RST
// carried the cookie), each for ttl; at most perNet of one /64 (beyond,
// the /64's oldest is forgotten) and at most max in all (beyond, the oldest
// address of the /64 with the most is forgotten: a holder of many /64s
// forgets its own before a client alone in its /64 is). Entries and /64s
// are in slices linked by index: every address in a list by age, every
// /64's in a list of its own, every /64 in a list of the /64s of its size.
// The slices and maps grow as they fill and are given back once the set
// has emptied (slices) or shrunk to a quarter of its peak (maps). Safe for
// concurrent use.
type validSet struct {
	max, perNet int           // 0: validMax, validPerNet
	ttl         time.Duration // 0: validTTL

	mu               sync.Mutex
	addrs            map[[16]byte]int32 // address -> entry
	nets             map[[8]byte]int32  // /64 -> its validNet
	ents             []validEntry       // grown up to max; free ones reused
	netv             []validNet
	freeEnt, freeNet int32
	byAge            indexList   // every entry, oldest first
	bySize           []indexList // [c]: the /64s with c entries, oldest-sized first
	top              int         // the largest c with a /64 in bySize[c]
	peak             int         // the largest len(addrs) since addrs was made
}

// validEntry is an address and when it was validated, as a duration since
// the cookie key's epoch, in the set's list by age and its /64's list.
type validEntry struct {
	addr  [16]byte
	at    time.Duration
	age   indexLink // in byAge; next links the free entries
	inNet indexLink // in its /64's entries
	net   int32
}

// validNet is a /64 with addresses in the set: its entries, oldest first,
// and its place in the list of the /64s of its size.
type validNet struct {
	prefix [8]byte
	ents   indexList
	n      int32
	size   indexLink // in bySize[n]; next links the free ones
}

// indexLink is a node's place in an indexList: its neighbours' indices.
type indexLink struct{ prev, next int32 }

// indexList is a doubly linked list of slice elements, by index (no
// pointers: the slices are not scanned by the GC); node returns an
// element's link in this list.
type indexList struct{ head, tail int32 }

var emptyList = indexList{noEntry, noEntry}

// pushBack appends i.
func (l *indexList) pushBack(i int32, node func(int32) *indexLink) {
	*node(i) = indexLink{l.tail, noEntry}
	if l.tail != noEntry {
		node(l.tail).next = i
	} else {
		l.head = i
	}
	l.tail = i
}

// remove takes i out.
func (l *indexList) remove(i int32, node func(int32) *indexLink) {
	n := node(i)
	if n.prev != noEntry {
		node(n.prev).next = n.next
	} else {
		l.head = n.next
	}
	if n.next != noEntry {
		node(n.next).prev = n.prev
	} else {
		l.tail = n.prev
	}
}

// The links of entry or /64 i in each list; v.mu is held.
func (v *validSet) ageLink(i int32) *indexLink   { return &v.ents[i].age }
func (v *validSet) inNetLink(i int32) *indexLink { return &v.ents[i].inNet }
func (v *validSet) sizeLink(g int32) *indexLink  { return &v.netv[g].size }

func (v *validSet) limits() (int, int, time.Duration) {
	limit, perNet, ttl := v.max, v.perNet, v.ttl
	if limit <= 0 {
		limit = validMax
	}
	if perNet <= 0 {
		perNet = validPerNet
	}
	if ttl <= 0 {
		ttl = validTTL
	}
	return limit, perNet, ttl
}

// add validates addr at now. An address validated less than half ttl ago
// is left as it is: no new entry, not counted, its expiry not refreshed. A
// cookie is good for at most two slots, 128 s, less than half validTTL, so
// however often one RST is replayed it validates once, and it cannot keep
// its address validated past the ttl either. Later (a client challenged
// again, its validation about to expire) the entry is made anew, the
// newest. fresh reports a new validation. counts reports one that forgot
// no other address of its own /64: only those count as challenges answered
// against a flood (pressure.go), so that one /64 cannot answer for more
// than perNet addresses a ttl.
func (v *validSet) add(addr [16]byte, now time.Duration) (fresh, counts bool) {
	limit, perNet, ttl := v.limits()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.addrs == nil {
		v.addrs, v.nets = make(map[[16]byte]int32), make(map[[8]byte]int32)
		v.bySize = make([]indexList, perNet+1)
		for c := range v.bySize {
			v.bySize[c] = emptyList
		}
		v.resetLocked()
	}
	if i, ok := v.addrs[addr]; ok {
		if now-v.ents[i].at < ttl/2 {
			return false, false
		}
		v.removeLocked(i) // and added again as the newest
	}
	g, ok := v.nets[[8]byte(addr[:8])]
	victim := int32(noEntry)
	switch {
	case ok && int(v.netv[g].n) >= perNet:
		victim = v.netv[g].ents.head
	case len(v.addrs) >= limit:
		victim = v.netv[v.bySize[v.top].head].ents.head
	}
	counts = victim == noEntry || !ok || v.ents[victim].net != g
	if victim != noEntry {
		v.removeLocked(victim)
	}
	if g, ok = v.nets[[8]byte(addr[:8])]; !ok {
		g = v.newNetLocked([8]byte(addr[:8]))
	}
	i := v.freeEnt
	if i != noEntry {
		v.freeEnt = v.ents[i].age.next
	} else {
		i = int32(len(v.ents))
		v.ents = append(v.ents, validEntry{})
	}
	v.ents[i] = validEntry{addr: addr, at: now, net: g}
	v.byAge.pushBack(i, v.ageLink)
	v.netv[g].ents.pushBack(i, v.inNetLink)
	v.resizeLocked(g, +1)
	v.addrs[addr] = i
	v.peak = max(v.peak, len(v.addrs))
	return true, counts
}

// resetLocked empties the lists; v.mu is held and the set is empty.
func (v *validSet) resetLocked() {
	v.ents, v.netv = nil, nil
	v.freeEnt, v.freeNet, v.byAge, v.top = noEntry, noEntry, emptyList, 0
}

// newNetLocked adds the /64 prefix, without entries; v.mu is held.
func (v *validSet) newNetLocked(prefix [8]byte) int32 {
	g := v.freeNet
	if g != noEntry {
		v.freeNet = v.netv[g].size.next
	} else {
		g = int32(len(v.netv))
		v.netv = append(v.netv, validNet{})
	}
	v.netv[g] = validNet{prefix: prefix, ents: emptyList}
	v.nets[prefix] = g
	return g
}

// resizeLocked moves /64 g, whose entries change by d (±1), to the list
// of its new size, and frees it once it has none; v.mu is held.
func (v *validSet) resizeLocked(g int32, d int32) {
	n := &v.netv[g]
	if n.n > 0 {
		v.bySize[n.n].remove(g, v.sizeLink)
	}
	n.n += d
	if n.n == 0 {
		delete(v.nets, n.prefix)
		n.size.next, v.freeNet = v.freeNet, g
	} else {
		v.bySize[n.n].pushBack(g, v.sizeLink)
		v.top = max(v.top, int(n.n))
	}
	for v.top > 0 && v.bySize[v.top].head == noEntry {
		v.top--
	}
}

// removeLocked forgets entry i; v.mu is held.
func (v *validSet) removeLocked(i int32) {
	e := &v.ents[i]
	v.byAge.remove(i, v.ageLink)
	v.netv[e.net].ents.remove(i, v.inNetLink)
	v.resizeLocked(e.net, -1)
	delete(v.addrs, e.addr)
	e.age.next, v.freeEnt = v.freeEnt, i
}

// contains reports whether addr is validated at now.
func (v *validSet) contains(addr [16]byte, now time.Duration) bool {
	_, _, ttl := v.limits()
	v.mu.Lock()
	defer v.mu.Unlock()
	i, ok := v.addrs[addr]
	return ok && now-v.ents[i].at < ttl
}

// len returns how many addresses the set holds (some may have expired
// since the last sweep).
func (v *validSet) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.addrs)
}

// sweep forgets the entries expired at now and gives memory back: the
// slices once empty, the maps once under a quarter of their peak.
func (v *validSet) sweep(now time.Duration) {
	_, _, ttl := v.limits()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.addrs == nil {
		return
	}
	for v.byAge.head != noEntry && now-v.ents[v.byAge.head].at >= ttl {
		v.removeLocked(v.byAge.head)
	}
	if len(v.addrs) == 0 {
		v.resetLocked()
	}
	if v.peak >= shrinkMin && len(v.addrs) < v.peak/4 {
		v.addrs, v.nets = remake(v.addrs), remake(v.nets)
		v.peak = len(v.addrs)
	}
}
