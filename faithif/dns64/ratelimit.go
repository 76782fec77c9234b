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

// netRateFactor is how many times an address's rate one IPv6 client /64
// may ask, all its addresses together: a LAN of hosts shares a /64, and
// one host can take any number of addresses in it (the relay's flow limits
// are per address and per /64 alike, the /64's four times the address's).
const netRateFactor = 4

// limiter allows each client address rate queries a second, in bursts of
// up to twice that, and each IPv6 client /64 netRateFactor times that.
// Safe for concurrent use.
type limiter struct {
	rate rate.Limit
	mu   sync.Mutex // makes lookup-or-add atomic
	l    *lru.Cache[netip.Prefix, *rate.Limiter]
}

func newLimiter(perSecond int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	l, _ := lru.New[netip.Prefix, *rate.Limiter](maxLimited)
	return &limiter{rate: rate.Limit(perSecond), l: l}
}

// allow reports whether client may ask one more query at now: both its
// address and (IPv6) its /64 have a token left; one is taken from each.
func (l *limiter) allow(client netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	addr := l.get(netip.PrefixFrom(client, client.BitLen()), 1)
	if !client.Is6() {
		return addr.AllowN(now, 1)
	}
	p, _ := client.Prefix(64)
	net := l.get(p, netRateFactor)
	if !addr.AllowN(now, 1) {
		return false
	}
	return net.AllowN(now, 1)
}

// get returns the limiter of key, made with factor times the rate if new.
func (l *limiter) get(key netip.Prefix, factor int) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.l.Get(key)
	if !ok {
		r := l.rate * rate.Limit(factor)
		lim = rate.NewLimiter(r, 2*int(r))
		l.l.Add(key, lim)
	}
	return lim
}
