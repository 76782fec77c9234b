package faithif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LocalAddrs is the set of IPv4 destinations this machine's kernel delivers
// locally (in the current network namespace), which the relay must never
// connect to: its own addresses, and every destination of a `local` route
// (AnyIP: `ip route add local 198.51.100.128/25 dev lo`) in any routing
// table a connection of this process may consult. It is kept up to date
// through one netlink subscription (addresses, routes, rules), so that an
// address or a local route added after start is known within
// reloadGap, and Contains answers from memory, with no system call.
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
	log  *slog.Logger
	kick chan struct{} // a change was notified (or lost): read again
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

// WatchLocalAddrs starts tracking the local destinations, logging to log
// (nil: slog.Default()) when a reading fails and when one succeeds again.
// Close stops it.
func WatchLocalAddrs(log *slog.Logger) (*LocalAddrs, error) {
	if log == nil {
		log = slog.Default()
	}
	sock, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV4_RULE)
	if err != nil {
		return nil, fmt.Errorf("watch local addresses: %w", err)
	}
	// A routing daemon's churn arrives here too (and is skipped at once):
	// room for bursts, and an overrun is answered by reading afresh.
	sock.SetReceiveBufferSize(1<<20, false)
	l := &LocalAddrs{sock: sock, uid: uint32(os.Geteuid()), log: log, kick: make(chan struct{}, 1), done: make(chan struct{})}
	// Subscribed first, read second: a change in between is seen by both,
	// and a reading is the whole state.
	if err := l.reload(); err != nil {
		sock.Close()
		return nil, err
	}
	rl := &reloader{load: l.reload, clock: realClock{}, log: log, kick: l.kick, done: l.done}
	l.wg.Add(2)
	go l.watch()
	go func() {
		defer l.wg.Done()
		// The reading above is not counted against the gap: the first
		// change after the start is read at once.
		rl.run(time.Time{})
	}()
	return l, nil
}

// ReadLocalAddrs reads the local destinations once, not kept up to date
// (for `faithif rules test`).
func ReadLocalAddrs() (*LocalAddrs, error) {
	l := &LocalAddrs{uid: uint32(os.Geteuid())}
	return l, l.reload()
}

// watch reads the subscription until Close: any change of an IPv4
// address, a local route or a rule means a new reading, which the reloader
// makes (coalesced: a burst of changes is one reading).
func (l *LocalAddrs) watch() {
	defer l.wg.Done()
	failing := false
	for {
		msgs, _, err := l.sock.Receive()
		select {
		case <-l.done:
			return
		default:
		}
		if err != nil {
			// ENOBUFS: changes were lost; read the whole state again.
			// Anything else: the same, and wait a little rather than
			// spin, saying so once.
			l.changed()
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			if !failing {
				l.log.Warn("local addresses: reading netlink notifications failed; retrying every second",
					"error", err.Error())
				failing = true
			}
			select {
			case <-l.done:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if failing {
			l.log.Info("local addresses: reading netlink notifications again")
			failing = false
		}
		for _, m := range msgs {
			if relevant(m.Header.Type, m.Data) {
				l.changed()
				break
			}
		}
	}
}

// changed asks the reloader for a new reading.
func (l *LocalAddrs) changed() {
	select {
	case l.kick <- struct{}{}:
	default: // one is asked for already
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
	hosts := localHosts(addrs)
	l.set.Store(buildLocalSet(hosts, routes, tablesUsed(rules, l.uid)))
	if l.log != nil {
		// At debug level: the tests wait for it after changing an address.
		l.log.Debug("local addresses read", "addresses", len(hosts), "local_routes", len(routes))
	}
	return nil
}

// localHosts returns the IPv4 addresses of addrs and the directed
// broadcast addresses of their subnets: the kernel adds a broadcast route
// for the last address of every subnet shorter than /31 (and for an
// address's brd), and refuses a TCP connection to it (ENETUNREACH), so the
// relay refuses it as a router address and DNS64 does not synthesize it.
func localHosts(addrs []netlink.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		x, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		out = append(out, x)
		if b, ok := netip.AddrFromSlice(a.Broadcast.To4()); ok && !b.IsUnspecified() {
			out = append(out, b)
		}
		if a.IPNet == nil {
			continue
		}
		if bits, _ := a.IPNet.Mask.Size(); bits < 31 {
			b := x.As4()
			v := binary.BigEndian.Uint32(b[:]) | (1<<(32-bits) - 1)
			binary.BigEndian.PutUint32(b[:], v)
			out = append(out, netip.AddrFrom4(b))
		}
	}
	return out
}

// listLocalRoutes lists the IPv4 routes of type local of every table. A
// dump the kernel says was interrupted by a change is read again, a few
// times.
func listLocalRoutes() ([]localRoute, error) {
	strict := true
	for try := 0; ; try++ {
		var out []localRoute
		err := dumpRoutes(strict, func(m []byte) {
			if r, ok := parseLocalRoute(m); ok {
				out = append(out, r)
			}
		})
		if strict && (errors.Is(err, errNoStrictCheck) || errors.Is(err, unix.EINVAL)) {
			// A kernel before 4.20, or one that refuses the filter:
			// filter here instead.
			strict = false
			try--
			continue
		}
		if !interrupted(err) || try == 3 {
			return out, settled(err)
		}
	}
}

// errNoStrictCheck: the kernel has no strict checking of dump requests.
var errNoStrictCheck = errors.New("netlink: no NETLINK_GET_STRICT_CHK")

// dumpRoutes dumps IPv4 routes, passing each RTM_NEWROUTE payload to each.
//
// With strict, the kernel filters (NETLINK_GET_STRICT_CHK, Linux 4.20 and
// later: inet_dump_fib honours the request's rtm_type, rtm_table,
// rtm_protocol and RTA_OIF): the request asks for type local, in every
// table (rtm_table 0), and no other route crosses to user space: a router
// holding a full BGP table still sends only its few local routes, in one
// dump. One dump of every table filtered by type is less than one per table
// the rules use (each of which the kernel would walk as well); the tables
// are chosen afterwards (buildLocalSet). vishvananda/netlink's
// RouteListFiltered does not help: it sets no strict check, so the kernel
// sends every route and it filters them after decoding each. Without
// strict (an older kernel), the kernel ignores the filter and sends every
// IPv4 route of every table (the request's family limits it to IPv4): the
// filtering is then in user space (parseLocalRoute), each other route
// skipped after reading its header, not decoded.
func dumpRoutes(strict bool, each func(m []byte)) error {
	sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer sock.Close()
	sock.SetSendTimeout(&nl.SocketTimeoutTv)
	sock.SetReceiveTimeout(&nl.SocketTimeoutTv)
	if strict {
		if err := unix.SetsockoptInt(sock.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
			return fmt.Errorf("%w: %w", errNoStrictCheck, err)
		}
	}
	req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET, Type: unix.RTN_LOCAL}})
	return req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE, func(m []byte) bool {
		each(m)
		return true
	})
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

// How often the local destinations may be read again (reloader).
const (
	// reloadGap is the least time between two readings: a burst of
	// changes (a routing daemon converging, an overrun) is one reading.
	reloadGap = 100 * time.Millisecond
	// reloadBackoff is the wait after a failed reading, doubled after each
	// further failure up to reloadBackoffMax.
	reloadBackoff    = time.Second
	reloadBackoffMax = 30 * time.Second
	// reloadChanged is the longest a change notified during a backoff
	// waits to be read: the failure may have been passing (an overrun, a
	// dump interrupted too often), and a local route added meanwhile is
	// not refused until a reading sees it.
	reloadChanged = time.Second
)

// clock is time as the reloader sees it; tests inject their own.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// reloader reads the local destinations again (load) when kicked, at most
// once per reloadGap: kicks that arrive meanwhile are one reading at the
// end of the gap. A failed reading keeps the last good set (load swaps it
// only on success) and is retried after reloadBackoff, doubling after each
// further failure up to reloadBackoffMax; a kick during that wait brings the
// retry forward to at most reloadChanged after it (then the backoff goes on
// doubling if that reading fails too: a failing kernel is read at most
// once a second however much changes). The first failure of a run of them
// is logged with its error, and the success that ends the run with how
// many failed and for how long.
type reloader struct {
	load  func() error
	clock clock
	log   *slog.Logger
	kick  <-chan struct{}
	done  <-chan struct{}
}

// run serves kicks until done is closed; last is when the state was last
// read.
func (r *reloader) run(last time.Time) {
	var (
		pending  bool             // a reading is due
		timer    <-chan time.Time // armed until the next reading may start
		gap      = reloadGap      // the least time from last to the next
		failures int              // in the current run of failures
		since    time.Time        // when that run began
		next     = reloadBackoff  // the wait after the next failure
	)
	for {
		select {
		case <-r.done:
			return
		case <-r.kick:
			pending = true
			if failures > 0 && timer != nil {
				// A change during the backoff: read it within
				// reloadChanged rather than at the backoff's end.
				now := r.clock.Now()
				if due := last.Add(gap); due.Sub(now) > reloadChanged {
					gap = now.Add(reloadChanged).Sub(last)
					timer = r.clock.After(reloadChanged)
				}
			}
		case <-timer:
			timer = nil
		}
		if !pending || timer != nil {
			continue
		}
		now := r.clock.Now()
		if wait := last.Add(gap).Sub(now); wait > 0 {
			timer = r.clock.After(wait)
			continue
		}
		pending, last = false, now
		select {
		case <-r.kick: // notified before this reading starts: it sees it
		default:
		}
		err := r.load()
		switch {
		case err != nil:
			if failures == 0 {
				since = now
				r.log.Warn("local addresses: reading them failed; the last reading stays in force until one succeeds",
					"error", err.Error(), "retry_in", next.String())
			}
			failures++
			pending, gap = true, next
			next = min(2*next, reloadBackoffMax)
			timer = r.clock.After(gap)
		case failures > 0:
			r.log.Info("local addresses: read again after failing", "failures", failures,
				"failing_for", r.clock.Now().Sub(since).String())
			failures, gap, next = 0, reloadGap, reloadBackoff
		}
	}
}
