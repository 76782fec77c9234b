package faithif

import (
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// LocalNets is the set of networks this machine has an address in (in the
// current network namespace), each address with its prefix length: what
// BIND calls "localnets", loopback included. The DNS64 responder answers
// these clients by default.
//
// It is read from the kernel when first asked, then again when asked about
// an address outside it (at most once a second, so that a flood of
// strangers costs one netlink dump a second) or when the reading is older
// than half a minute: a network added is known at its first client, one
// removed within half a minute.
type LocalNets struct {
	mu   sync.Mutex
	nets []netip.Prefix
	read time.Time // when nets was read; zero: never
	now  func() time.Time
	list func() ([]netip.Prefix, error)
}

// Bounds on how often LocalNets reads the kernel's addresses.
const (
	localNetsMinAge = time.Second
	localNetsMaxAge = 30 * time.Second
)

// NewLocalNets returns the set, not read yet.
func NewLocalNets() *LocalNets {
	return &LocalNets{now: time.Now, list: listLocalNets}
}

// Contains reports whether a is in one of the networks. If the addresses
// cannot be read, the last reading stands (none at first).
func (l *LocalNets) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	age := now.Sub(l.read)
	if l.read.IsZero() || age >= localNetsMaxAge {
		l.reload(now)
	}
	if inPrefixes(l.nets, a) {
		return true
	}
	if now.Sub(l.read) >= localNetsMinAge {
		l.reload(now)
		return inPrefixes(l.nets, a)
	}
	return false
}

// reload reads the networks again; l.mu is held.
func (l *LocalNets) reload(now time.Time) {
	l.read = now
	if nets, err := l.list(); err == nil {
		l.nets = nets
	}
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// listLocalNets reads every address of every interface as a network.
func listLocalNets() ([]netip.Prefix, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var nets []netip.Prefix
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IPNet.IP)
		if !ok {
			continue
		}
		ones, _ := a.IPNet.Mask.Size()
		p, err := ip.Unmap().Prefix(ones)
		if err == nil {
			nets = append(nets, p)
		}
	}
	return nets, nil
}
