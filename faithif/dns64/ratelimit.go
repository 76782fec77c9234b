package dns64

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// maxLimited bounds how many client addresses have a rate limiter: beyond
// it the one asked of least recently is forgotten (and starts afresh with a
// full bucket if it comes back).
const maxLimited = 65536

// limiter allows each client address rate queries a second, in bursts of
// up to twice that. Safe for concurrent use.
type limiter struct {
	rate rate.Limit
	mu   sync.Mutex // makes lookup-or-add atomic
	l    *lru.Cache[netip.Addr, *rate.Limiter]
}

func newLimiter(perSecond int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	l, _ := lru.New[netip.Addr, *rate.Limiter](maxLimited)
	return &limiter{rate: rate.Limit(perSecond), l: l}
}

// allow reports whether client may ask one more query at now.
func (l *limiter) allow(client netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	lim, ok := l.l.Get(client)
	if !ok {
		lim = rate.NewLimiter(l.rate, 2*int(l.rate))
		l.l.Add(client, lim)
	}
	l.mu.Unlock()
	return lim.AllowN(now, 1)
}
