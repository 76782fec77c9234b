package dns64

import (
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
)

// maxCacheTTL caps how long an answer is kept, whatever its TTL says (as
// unbound's cache-max-ttl, one day).
const maxCacheTTL = 86400

// cacheKey is one upstream question, with the bits that change the answer.
type cacheKey struct {
	name   string // lower case, fully qualified
	qtype  uint16
	qclass uint16
	do, cd bool
}

// cacheBudget bounds the bytes of the answers the cache holds, each counted
// by its packed (uncompressed) size: 32 MiB is some 100,000 typical
// answers, or 500 of the largest (64 KiB, the most a DNS message can be).
const cacheBudget = 32 << 20

// cache holds upstream answers for their TTL, at most size of them and
// budget bytes of them, the least recently used forgotten first. An answer
// larger than the budget is not kept. It is safe for concurrent use; what
// it returns is the caller's own copy.
type cache struct {
	l      *lru.Cache[cacheKey, cacheEntry]
	budget int64
	mu     sync.Mutex   // serializes put, which evicts to the budget
	bytes  atomic.Int64 // of the entries held
}

// cacheEntry is an answer as the upstream gave it, never changed.
type cacheEntry struct {
	msg    *dns.Msg
	stored time.Time
	ttl    uint32 // seconds from stored
	size   int    // bytes, packed
}

func newCache(size int, budget int64) *cache {
	if size <= 0 || budget <= 0 {
		return nil
	}
	c := &cache{budget: budget}
	// size > 0: no error. The callback runs for every entry that leaves.
	c.l, _ = lru.NewWithEvict(size, func(_ cacheKey, e cacheEntry) { c.bytes.Add(-int64(e.size)) })
	return c
}

// get returns a copy of k's answer with its TTLs lowered by its age, if it
// is still fresh at now.
func (c *cache) get(k cacheKey, now time.Time) (*dns.Msg, bool) {
	if c == nil {
		return nil, false
	}
	e, ok := c.l.Get(k)
	if !ok {
		return nil, false
	}
	age := now.Sub(e.stored)
	if age < 0 {
		age = 0
	}
	secs := uint32(age / time.Second)
	if secs >= e.ttl {
		c.l.Remove(k)
		return nil, false
	}
	m := e.msg.Copy()
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			if h.Ttl > secs {
				h.Ttl -= secs
			} else {
				h.Ttl = 0
			}
		}
	}
	return m, true
}

// put keeps m for k, for as long as cacheTTL says (not at all for 0).
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	if c == nil {
		return
	}
	ttl := cacheTTL(m)
	if ttl == 0 {
		return
	}
	size := m.Len()
	if int64(size) > c.budget {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.l.Remove(k) // an update of k: its old bytes leave
	c.bytes.Add(int64(size))
	c.l.Add(k, cacheEntry{msg: m, stored: now, ttl: ttl, size: size})
	for c.bytes.Load() > c.budget {
		if _, _, ok := c.l.RemoveOldest(); !ok {
			break
		}
	}
}

// size returns the bytes the cache holds.
func (c *cache) size() int64 {
	if c == nil {
		return 0
	}
	return c.bytes.Load()
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	return c.l.Len()
}

// cacheTTL is how long an answer may be kept: the smallest TTL of its
// records for an answer, the negative-caching TTL of its SOA for NXDOMAIN
// or no data (RFC 2308), 0 (not kept) for anything else or a negative
// answer without SOA; at most maxCacheTTL.
func cacheTTL(m *dns.Msg) uint32 {
	var ttl uint32
	switch {
	case m.Truncated:
		return 0
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		ttl = maxCacheTTL
		for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
			for _, rr := range sec {
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
	case m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError:
		n, ok := negativeTTL(m)
		if !ok {
			return 0
		}
		ttl = n
	}
	return min(ttl, maxCacheTTL)
}

// negativeTTL is the negative-caching TTL of a negative answer: the
// smaller of its SOA record's TTL and MINIMUM field (RFC 2308 5); ok is
// false when the answer has no SOA.
func negativeTTL(m *dns.Msg) (uint32, bool) {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}
