package faithif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// LocalAddrs is the set of IPv4 destinations this machine's kernel delivers
// locally (in the current network namespace), which the relay must never
// connect to: its own addresses, and every destination of a `local` route
// (AnyIP: `ip route add local 198.51.100.128/25 dev lo`) in any routing
// table a connection of this process may consult. It is kept up to date
// through one netlink subscription (addresses, routes, rules), so that an
// address or a local route added after start is known at once, and Contains
// answers from memory, with no system call.
//
// Which tables count: those of the policy routing rules (ip rule) that can
// match an outgoing connection of this process: no firewall mark, no input
// interface but lo, no output interface, a UID range holding the process's,
// TCP. A local route in a table only marked packets reach (a TPROXY set-up)
// does not make its destinations local. The check is conservative: a local
// route in a table that can be consulted counts even if an earlier table
// would answer first.
type LocalAddrs struct {
	set  atomic.Pointer[localSet]
	sock *nl.NetlinkSocket // nil for a snapshot (ReadLocalAddrs)
	uid  uint32
	done chan struct{}
	wg   sync.WaitGroup
}

// localSet is one reading of the local destinations; immutable.
type localSet struct {
	hosts map[netip.Addr]struct{} // addresses and /32 local routes
	nets  []netip.Prefix          // shorter local routes
}

func (s *localSet) contains(a netip.Addr) bool {
	if _, ok := s.hosts[a]; ok {
		return true
	}
	for _, p := range s.nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// localRoute is a route of type local: its table and destination.
type localRoute struct {
	table int
	dst   netip.Prefix
}

// WatchLocalAddrs starts tracking the local destinations. Close stops it.
func WatchLocalAddrs() (*LocalAddrs, error) {
	sock, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV4_RULE)
	if err != nil {
		return nil, fmt.Errorf("watch local addresses: %w", err)
	}
	// A routing daemon's churn arrives here too (and is skipped at once):
	// room for bursts, and an overrun is answered by reading afresh.
	sock.SetReceiveBufferSize(1<<20, false)
	l := &LocalAddrs{sock: sock, uid: uint32(os.Geteuid()), done: make(chan struct{})}
	// Subscribed first, read second: a change in between is seen by both,
	// and a reading is the whole state.
	if err := l.reload(); err != nil {
		sock.Close()
		return nil, err
	}
	l.wg.Add(1)
	go l.watch()
	return l, nil
}

// ReadLocalAddrs reads the local destinations once, not kept up to date
// (for `faithif rules test`).
func ReadLocalAddrs() (*LocalAddrs, error) {
	l := &LocalAddrs{uid: uint32(os.Geteuid())}
	return l, l.reload()
}

// watch reads the subscription until Close: any change of an IPv4
// address, a local route or a rule means a new reading.
func (l *LocalAddrs) watch() {
	defer l.wg.Done()
	for {
		msgs, _, err := l.sock.Receive()
		select {
		case <-l.done:
			return
		default:
		}
		if err != nil {
			// ENOBUFS: changes were lost. Anything else: wait a little
			// rather than spin. Either way, read the whole state again.
			if !errors.Is(err, unix.ENOBUFS) {
				select {
				case <-l.done:
					return
				case <-time.After(time.Second):
				}
			}
			l.reload()
			continue
		}
		changed := false
		for _, m := range msgs {
			changed = changed || relevant(m.Header.Type, m.Data)
		}
		if changed {
			l.reload()
		}
	}
}

// relevant reports whether a netlink notification can change the local
// destinations: an IPv4 address, an IPv4 route of type local, an IPv4 rule.
func relevant(typ uint16, data []byte) bool {
	if len(data) < 1 || data[0] != unix.AF_INET {
		return false
	}
	switch typ {
	case unix.RTM_NEWADDR, unix.RTM_DELADDR, unix.RTM_NEWRULE, unix.RTM_DELRULE:
		return true
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		return len(data) >= unix.SizeofRtMsg && data[7] == unix.RTN_LOCAL
	}
	return false
}

// reload reads addresses, local routes and rules, and swaps in the new set.
// On error the old set stays.
func (l *LocalAddrs) reload() error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err = settled(err); err != nil {
		return fmt.Errorf("list local addresses: %w", err)
	}
	routes, err := listLocalRoutes()
	if err != nil {
		return fmt.Errorf("list local routes: %w", err)
	}
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err = settled(err); err != nil {
		return fmt.Errorf("list routing rules: %w", err)
	}
	var as []netip.Addr
	for _, a := range addrs {
		if x, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			as = append(as, x)
		}
	}
	l.set.Store(buildLocalSet(as, routes, tablesUsed(rules, l.uid)))
	return nil
}

// listLocalRoutes dumps the IPv4 routes of every table and keeps those of
// type local; the others (a full routing table, perhaps) are skipped
// without being decoded. A dump the kernel says was interrupted by a change
// is read again, a few times.
func listLocalRoutes() ([]localRoute, error) {
	for try := 0; ; try++ {
		req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_DUMP)
		req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET}})
		var out []localRoute
		err := req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE, func(m []byte) bool {
			if r, ok := parseLocalRoute(m); ok {
				out = append(out, r)
			}
			return true
		})
		if !interrupted(err) || try == 3 {
			return out, settled(err)
		}
	}
}

// interrupted reports whether a netlink dump was interrupted by a change;
// its result is complete but may mix before and after.
func interrupted(err error) bool { return errors.Is(err, netlink.ErrDumpInterrupted) }

// settled returns err, or nil if it only says the dump was interrupted: the
// change that interrupted it is notified too, and read again then.
func settled(err error) error {
	if interrupted(err) {
		return nil
	}
	return err
}

// parseLocalRoute decodes an RTM_NEWROUTE message if it is an IPv4 route of
// type local (not a cached clone).
func parseLocalRoute(m []byte) (localRoute, bool) {
	if len(m) < unix.SizeofRtMsg || m[0] != unix.AF_INET || m[7] != unix.RTN_LOCAL ||
		binary.NativeEndian.Uint32(m[8:12])&unix.RTM_F_CLONED != 0 {
		return localRoute{}, false
	}
	r := localRoute{table: int(m[4])}
	bits := int(m[1])
	dst := netip.IPv4Unspecified()
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofRtMsg:])
	if err != nil {
		return localRoute{}, false
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_DST:
			x, ok := netip.AddrFromSlice(a.Value)
			if !ok || !x.Is4() {
				return localRoute{}, false
			}
			dst = x
		case unix.RTA_TABLE:
			if len(a.Value) >= 4 {
				r.table = int(binary.NativeEndian.Uint32(a.Value))
			}
		}
	}
	p, err := dst.Prefix(bits)
	if err != nil {
		return localRoute{}, false
	}
	r.dst = p
	return r, true
}

// tablesUsed returns the routing tables a TCP connection of the process
// with uid can be routed by: those of the rules that can match it. Nil
// means every table (no rule could be read).
func tablesUsed(rules []netlink.Rule, uid uint32) map[int]bool {
	if len(rules) == 0 {
		return nil
	}
	used := map[int]bool{}
	for _, r := range rules {
		if ruleMayMatch(r, uid) {
			used[r.Table] = true
		}
	}
	return used
}

// ruleMayMatch reports whether rule r can send an outgoing connection of
// the process with uid to a table: it has a table (not goto, blackhole,
// l3mdev) and no selector that rules the connection out. An inverted rule
// may match anything.
func ruleMayMatch(r netlink.Rule, uid uint32) bool {
	switch {
	case r.Table <= 0:
		return false
	case r.Invert:
		return true
	case r.Mark != 0: // the relay's sockets carry no mark
		return false
	case r.IifName != "" && r.IifName != "lo": // locally generated: iif lo
		return false
	case r.OifName != "": // not bound to a device
		return false
	case r.UIDRange != nil && (uid < r.UIDRange.Start || uid > r.UIDRange.End):
		return false
	case r.IPProto != 0 && r.IPProto != unix.IPPROTO_TCP:
		return false
	}
	return true
}

// buildLocalSet makes the set of local destinations: the addresses, and
// the local routes of the tables used (nil: all).
func buildLocalSet(addrs []netip.Addr, routes []localRoute, used map[int]bool) *localSet {
	s := &localSet{hosts: make(map[netip.Addr]struct{}, len(addrs))}
	for _, a := range addrs {
		s.hosts[a.Unmap()] = struct{}{}
	}
	for _, r := range routes {
		switch {
		case used != nil && !used[r.table]:
		case r.dst.IsSingleIP():
			s.hosts[r.dst.Addr()] = struct{}{}
		default:
			s.nets = append(s.nets, r.dst)
		}
	}
	return s
}

// Contains reports whether the kernel delivers a locally: one of this
// machine's IPv4 addresses, or inside a local route.
func (l *LocalAddrs) Contains(a netip.Addr) bool {
	s := l.set.Load()
	return s != nil && s.contains(a.Unmap())
}

// Close stops tracking.
func (l *LocalAddrs) Close() {
	if l.sock == nil {
		return
	}
	select {
	case <-l.done:
	default:
		close(l.done)
		l.sock.Close()
	}
	l.wg.Wait()
}
