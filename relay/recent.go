package relay

import (
	"net/netip"
	"sync"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// How long and how many failed dials the relay remembers (recentRefusals).
const (
	recentFor = 5 * time.Second
	recentMax = 4096
)

// fourTuple names a flow: its client and the FAITH address and port it
// asked for.
type fourTuple struct{ client, dest netip.AddrPort }

// recentRefusals remembers, for recentFor, the flows whose IPv4 dial failed
// and how they were answered, so that a SYN of the same 4-tuple arriving
// meanwhile (a retransmission that crossed the answer, or whose ICMPv6
// error was rate-limited) gets the same answer without a second dial: one
// decision per 4-tuple. At most recentMax are kept; when full, the oldest is
// forgotten first. All entries live equally long, so a ring in insertion
// order is also the order they expire in.
type recentRefusals struct {
	mu   sync.Mutex
	m    map[fourTuple]recentEntry
	ring []ringEntry // circular, oldest at head
	head int
	n    int
	seq  uint64
}

type recentEntry struct {
	until  time.Time
	answer flow.Refusal
	reason string
	seq    uint64
}

type ringEntry struct {
	key fourTuple
	seq uint64
}

// remembered reports whether outcome o comes from a dial worth
// remembering: the server or the network answered, which a second dial
// right away would most likely hear again.
func remembered(o Outcome) bool {
	return o == OutcomeRefused || o == OutcomeUnreachable || o == OutcomeTimedOut
}

// remember records that t was answered with how for reason, at now.
func (r *recentRefusals) remember(t fourTuple, how flow.Refusal, reason string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	if r.m == nil {
		r.m = make(map[fourTuple]recentEntry)
	}
	if r.n == len(r.ring) {
		if len(r.ring) < recentMax {
			r.growLocked()
		} else {
			r.popLocked()
		}
	}
	r.seq++
	r.ring[(r.head+r.n)%len(r.ring)] = ringEntry{key: t, seq: r.seq}
	r.n++
	r.m[t] = recentEntry{until: now.Add(recentFor), answer: how, reason: reason, seq: r.seq}
}

// lookup returns how t was answered, if it was refused after a dial less
// than recentFor before now.
func (r *recentRefusals) lookup(t fourTuple, now time.Time) (how flow.Refusal, reason string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[t]
	if !ok || !now.Before(e.until) {
		return 0, "", false
	}
	return e.answer, e.reason, true
}

// expireLocked forgets the entries that have expired; once none is left,
// the memory goes too (a flood's map does not stay).
func (r *recentRefusals) expireLocked(now time.Time) {
	for r.n > 0 {
		e := r.m[r.ring[r.head].key]
		if e.seq == r.ring[r.head].seq && now.Before(e.until) {
			break
		}
		r.popLocked()
	}
	if r.n == 0 {
		r.ring, r.m, r.head = nil, nil, 0
	}
}

// growLocked doubles the ring (from 64 entries up to recentMax), keeping
// its order.
func (r *recentRefusals) growLocked() {
	ring := make([]ringEntry, min(recentMax, max(64, 2*len(r.ring))))
	for i := range r.n {
		ring[i] = r.ring[(r.head+i)%len(r.ring)]
	}
	r.ring, r.head = ring, 0
}

// popLocked forgets the oldest entry.
func (r *recentRefusals) popLocked() {
	old := r.ring[r.head]
	if e, ok := r.m[old.key]; ok && e.seq == old.seq {
		delete(r.m, old.key)
	}
	r.ring[r.head] = ringEntry{}
	r.head = (r.head + 1) % len(r.ring)
	r.n--
}
