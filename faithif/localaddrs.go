package faithif

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LocalAddrs is the set of this machine's IPv4 addresses (in the current
// network namespace), kept up to date through a netlink subscription, so
// that an address added after start is known at once.
type LocalAddrs struct {
	mu   sync.RWMutex
	set  map[netip.Addr]struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

// WatchLocalAddrs starts tracking the IPv4 addresses. Close stops it.
func WatchLocalAddrs() (*LocalAddrs, error) {
	l := &LocalAddrs{set: make(map[netip.Addr]struct{}), done: make(chan struct{})}
	updates := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(updates, l.done, netlink.AddrSubscribeOptions{}); err != nil {
		return nil, fmt.Errorf("watch local addresses: %w", err)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for u := range updates {
			l.update(u.LinkAddress.IP, u.NewAddr)
		}
	}()
	// Subscribed first, listed second: an address that changes in between
	// is seen by both, and updates are idempotent.
	addrs, err := netlink.AddrList(nil, unix.AF_INET)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	for _, a := range addrs {
		l.update(a.IP, true)
	}
	return l, nil
}

func (l *LocalAddrs) update(ip []byte, present bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	a = a.Unmap()
	if !a.Is4() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if present {
		l.set[a] = struct{}{}
	} else {
		delete(l.set, a)
	}
}

// Contains reports whether a is one of this machine's IPv4 addresses.
func (l *LocalAddrs) Contains(a netip.Addr) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.set[a.Unmap()]
	return ok
}

// Close stops tracking.
func (l *LocalAddrs) Close() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}
