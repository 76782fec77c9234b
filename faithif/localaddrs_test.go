package faithif

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/faithif/faithif/relay"
)

// routeMsg builds an RTM_NEWROUTE payload: rtmsg, then RTA_TABLE and (for a
// non-default route) RTA_DST.
func routeMsg(family, typ byte, table uint32, dst netip.Prefix, flags uint32) []byte {
	m := make([]byte, unix.SizeofRtMsg)
	m[0], m[1], m[7] = family, byte(dst.Bits()), typ
	m[4] = byte(min(table, unix.RT_TABLE_COMPAT))
	binary.NativeEndian.PutUint32(m[8:], flags)
	attr := func(t uint16, v []byte) {
		a := make([]byte, 4+len(v))
		binary.NativeEndian.PutUint16(a, uint16(len(a)))
		binary.NativeEndian.PutUint16(a[2:], t)
		copy(a[4:], v)
		for len(a)%4 != 0 {
			a = append(a, 0)
		}
		m = append(m, a...)
	}
	tb := make([]byte, 4)
	binary.NativeEndian.PutUint32(tb, table)
	attr(unix.RTA_TABLE, tb)
	if dst.Bits() > 0 {
		attr(unix.RTA_DST, dst.Addr().AsSlice())
	}
	return m
}

func TestParseLocalRoute(t *testing.T) {
	anyip := netip.MustParsePrefix("198.51.100.128/25")
	tests := []struct {
		name string
		msg  []byte
		want localRoute
		ok   bool
	}{
		{"AnyIP in table local", routeMsg(unix.AF_INET, unix.RTN_LOCAL, 255, anyip, 0), localRoute{255, anyip}, true},
		{"a table above 255", routeMsg(unix.AF_INET, unix.RTN_LOCAL, 1000, anyip, 0), localRoute{1000, anyip}, true},
		{"local default (TPROXY)", routeMsg(unix.AF_INET, unix.RTN_LOCAL, 100, netip.MustParsePrefix("0.0.0.0/0"), 0), localRoute{100, netip.MustParsePrefix("0.0.0.0/0")}, true},
		{"host", routeMsg(unix.AF_INET, unix.RTN_LOCAL, 255, netip.MustParsePrefix("192.0.2.1/32"), 0), localRoute{255, netip.MustParsePrefix("192.0.2.1/32")}, true},
		{"unicast", routeMsg(unix.AF_INET, unix.RTN_UNICAST, 254, anyip, 0), localRoute{}, false},
		{"broadcast", routeMsg(unix.AF_INET, unix.RTN_BROADCAST, 255, anyip, 0), localRoute{}, false},
		{"IPv6", routeMsg(unix.AF_INET6, unix.RTN_LOCAL, 255, anyip, 0), localRoute{}, false},
		{"cloned", routeMsg(unix.AF_INET, unix.RTN_LOCAL, 255, anyip, unix.RTM_F_CLONED), localRoute{}, false},
		{"short", []byte{unix.AF_INET, 32, 0}, localRoute{}, false},
	}
	for _, tt := range tests {
		got, ok := parseLocalRoute(tt.msg)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: parseLocalRoute = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRelevant(t *testing.T) {
	local := routeMsg(unix.AF_INET, unix.RTN_LOCAL, 255, netip.MustParsePrefix("198.51.100.0/24"), 0)
	unicast := routeMsg(unix.AF_INET, unix.RTN_UNICAST, 254, netip.MustParsePrefix("198.51.100.0/24"), 0)
	v4, v6 := []byte{unix.AF_INET, 24, 0, 0, 1, 0, 0, 0}, []byte{unix.AF_INET6, 64, 0, 0, 1, 0, 0, 0}
	for _, tt := range []struct {
		typ  uint16
		data []byte
		want bool
	}{
		{unix.RTM_NEWROUTE, local, true},
		{unix.RTM_DELROUTE, local, true},
		{unix.RTM_NEWROUTE, unicast, false}, // a routing daemon's churn
		{unix.RTM_NEWADDR, v4, true},
		{unix.RTM_DELADDR, v4, true},
		{unix.RTM_NEWADDR, v6, false},
		{unix.RTM_NEWRULE, v4, true},
		{unix.RTM_DELRULE, v6, false},
		{unix.RTM_NEWLINK, v4, false},
		{unix.RTM_NEWROUTE, nil, false},
	} {
		if got := relevant(tt.typ, tt.data); got != tt.want {
			t.Errorf("relevant(%d, %v) = %v; want %v", tt.typ, tt.data, got, tt.want)
		}
	}
}

func TestTablesUsed(t *testing.T) {
	mask := uint32(1)
	rule := func(edit func(*netlink.Rule)) netlink.Rule {
		r := *netlink.NewRule()
		r.Table = 100
		edit(&r)
		return r
	}
	const uid = 1000
	for _, tt := range []struct {
		name string
		rule netlink.Rule
		want bool
	}{
		{"plain", rule(func(*netlink.Rule) {}), true},
		{"from a prefix: the source is chosen later", rule(func(r *netlink.Rule) { r.Src = netlink.NewIPNet([]byte{10, 0, 0, 0}) }), true},
		{"fwmark (TPROXY)", rule(func(r *netlink.Rule) { r.Mark = 1; r.Mask = &mask }), false},
		{"fwmark 0/1", rule(func(r *netlink.Rule) { r.Mark = 0; r.Mask = &mask }), true},
		{"iif eth0", rule(func(r *netlink.Rule) { r.IifName = "eth0" }), false},
		{"iif lo", rule(func(r *netlink.Rule) { r.IifName = "lo" }), true},
		{"oif", rule(func(r *netlink.Rule) { r.OifName = "vrf1" }), false},
		{"other uids", rule(func(r *netlink.Rule) { r.UIDRange = netlink.NewRuleUIDRange(2000, 3000) }), false},
		{"our uid", rule(func(r *netlink.Rule) { r.UIDRange = netlink.NewRuleUIDRange(0, 1000) }), true},
		{"udp", rule(func(r *netlink.Rule) { r.IPProto = unix.IPPROTO_UDP }), false},
		{"tcp", rule(func(r *netlink.Rule) { r.IPProto = unix.IPPROTO_TCP }), true},
		{"not fwmark 1", rule(func(r *netlink.Rule) { r.Mark = 1; r.Invert = true }), true},
		{"no table (blackhole, goto)", rule(func(r *netlink.Rule) { r.Table = 0 }), false},
	} {
		if got := ruleMayMatch(tt.rule, uid); got != tt.want {
			t.Errorf("%s: ruleMayMatch = %v; want %v", tt.name, got, tt.want)
		}
	}
	def := []netlink.Rule{{Table: 255}, {Table: 254}, {Table: 253}, rule(func(r *netlink.Rule) { r.Mark = 1 })}
	used := tablesUsed(def, uid)
	if !used[255] || !used[254] || !used[253] || used[100] || len(used) != 3 {
		t.Errorf("tablesUsed = %v; want local, main, default", used)
	}
	if tablesUsed(nil, uid) != nil {
		t.Error("no rules read: not every table")
	}
}

func TestLocalSet(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	routes := []localRoute{
		{255, netip.MustParsePrefix("192.0.2.1/32")},
		{255, netip.MustParsePrefix("198.51.100.128/25")}, // AnyIP
		{100, netip.MustParsePrefix("0.0.0.0/0")},         // TPROXY's, behind a fwmark rule
		{1000, netip.MustParsePrefix("203.0.113.7/32")},   // a table some rule uses
		{254, netip.MustParsePrefix("203.0.113.128/26")},  // main
		{300, netip.MustParsePrefix("203.0.113.192/26")},  // a table no rule uses
	}
	l := &LocalAddrs{}
	if l.Contains(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("an empty LocalAddrs contains an address")
	}
	l.set.Store(buildLocalSet(addrs, routes, map[int]bool{255: true, 254: true, 1000: true}))
	for a, want := range map[string]bool{
		"192.0.2.1": true, "198.51.100.128": true, "198.51.100.200": true, "198.51.100.255": true,
		"198.51.100.127": false, "203.0.113.7": true, "203.0.113.130": true, "203.0.113.200": false,
		"8.8.8.8": false, "192.0.2.2": false, "::ffff:198.51.100.129": true,
	} {
		if got := l.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v; want %v", a, got, want)
		}
	}
	l.set.Store(buildLocalSet(nil, routes, nil)) // every table
	if !l.Contains(netip.MustParseAddr("8.8.8.8")) {
		t.Error("with every table, the local default route makes everything local")
	}
}

// TestReadLocalAddrs reads this machine's: its loopback is local (as a
// local route of table local), whatever else it has.
func TestReadLocalAddrs(t *testing.T) {
	l, err := ReadLocalAddrs()
	if err != nil {
		if os.IsPermission(err) && os.Geteuid() != 0 {
			t.Skip(err) // as root (CI) it must work
		}
		t.Fatal(err)
	}
	if !l.Contains(netip.MustParseAddr("127.0.0.1")) || !l.Contains(netip.MustParseAddr("127.1.2.3")) {
		t.Error("127.0.0.1 and 127.1.2.3 (local 127.0.0.0/8) are not local")
	}
	if l.Contains(netip.MustParseAddr("192.0.2.254")) {
		t.Error("192.0.2.254 (TEST-NET-1) is local here?")
	}
	l.Close()
}

// TestWatchLocalAddrs starts and stops the watcher: it reads at start, and
// Close ends its goroutine (goleak checks at the end of the package).
func TestWatchLocalAddrs(t *testing.T) {
	l, err := WatchLocalAddrs(nil)
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip(err) // no netlink here; as root (CI) it must work
		}
		t.Fatal(err)
	}
	if !l.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("127.0.0.1 is not local")
	}
	l.Close()
	l.Close()
}

// TestDumpRoutesFiltered: with strict checking the kernel sends only the
// local routes (none of table local's broadcast routes, none of main's);
// without, everything, which parseLocalRoute then filters.
func TestDumpRoutesFiltered(t *testing.T) {
	count := func(strict bool) (local, other int, err error) {
		err = dumpRoutes(strict, func(m []byte) {
			if _, ok := parseLocalRoute(m); ok {
				local++
			} else {
				other++
			}
		})
		return local, other, settled(err)
	}
	local, other, err := count(true)
	if errors.Is(err, errNoStrictCheck) || errors.Is(err, unix.EINVAL) {
		t.Skipf("the kernel does not filter route dumps: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if local == 0 || other != 0 {
		t.Errorf("strict dump: %d local routes, %d others; want some, and no other", local, other)
	}
	local2, other2, err := count(false)
	if err != nil {
		t.Fatal(err)
	}
	if local2 != local {
		t.Errorf("unfiltered dump: %d local routes; the filtered one %d", local2, local)
	}
	t.Logf("filtered by the kernel: %d local routes; unfiltered: %d local, %d others", local, local2, other2)
}

// fakeClock is a clock whose timers the test fires: After announces each
// timer on armed, and fire moves the time to the timer's end.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	armed chan fakeTimer
}

type fakeTimer struct {
	d  time.Duration
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.armed <- fakeTimer{d, ch}
	return ch
}

func (c *fakeClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func (c *fakeClock) fire(tm fakeTimer) { tm.ch <- c.advance(tm.d) }

// lockedBuffer is a log destination safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// lines returns the lines written since the last call.
func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSuffix(b.b.String(), "\n")
	b.b.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// reloaderTest runs a reloader with a fake clock and a loader that returns
// the errors of script in turn (then nil), telling loads each call's time.
type reloaderTest struct {
	t     *testing.T
	clock *fakeClock
	kick  chan struct{}
	loads chan time.Time
	log   lockedBuffer
}

func startReloader(t *testing.T, script ...error) *reloaderTest {
	rt := &reloaderTest{
		t:     t,
		clock: &fakeClock{now: time.Unix(1_700_000_000, 0), armed: make(chan fakeTimer, 16)},
		kick:  make(chan struct{}, 1),
		loads: make(chan time.Time, 16),
	}
	done := make(chan struct{})
	r := &reloader{
		load: func() error {
			rt.loads <- rt.clock.Now()
			if len(script) == 0 {
				return nil
			}
			err := script[0]
			script = script[1:]
			return err
		},
		clock: rt.clock,
		log:   slog.New(slog.NewTextHandler(&rt.log, nil)),
		kick:  rt.kick,
		done:  done,
	}
	exited := make(chan struct{})
	start := rt.clock.Now() // as if the first reading were now
	go func() {
		defer close(exited)
		r.run(start)
	}()
	t.Cleanup(func() {
		close(done)
		<-exited
	})
	return rt
}

// changed kicks as LocalAddrs.changed does.
func (rt *reloaderTest) changed() {
	select {
	case rt.kick <- struct{}{}:
	default:
	}
}

// timer waits for the reloader to arm a timer and checks its duration.
func (rt *reloaderTest) timer(want time.Duration) fakeTimer {
	rt.t.Helper()
	select {
	case tm := <-rt.clock.armed:
		if tm.d != want {
			rt.t.Fatalf("timer armed for %v; want %v", tm.d, want)
		}
		return tm
	case at := <-rt.loads:
		rt.t.Fatalf("read at +%v; want a timer of %v first", at.Sub(time.Unix(1_700_000_000, 0)), want)
	case <-time.After(5 * time.Second):
		rt.t.Fatalf("no timer armed; want one of %v", want)
	}
	return fakeTimer{}
}

// load waits for a reading and checks when it was, after the start. (A
// timer armed meanwhile is not an error: a failed reading arms one at
// once.)
func (rt *reloaderTest) load(want time.Duration) {
	rt.t.Helper()
	select {
	case at := <-rt.loads:
		if got := at.Sub(time.Unix(1_700_000_000, 0)); got != want {
			rt.t.Fatalf("read at +%v; want +%v", got, want)
		}
	case <-time.After(5 * time.Second): // a timer armed instead, perhaps
		rt.t.Fatalf("no reading; want one at +%v", want)
	}
}

// quiet checks that the reloader has done everything the test asked of it
// and is waiting with nothing under way: no reading, no timer armed. It
// waits until the reloader's goroutine is parked (every kick and fired
// timer it was sent is taken and dealt with: the helpers' sends return
// only once a parked reloader is made runnable), not for a span of real
// time, which a slow machine could outlast.
func (rt *reloaderTest) quiet() {
	rt.t.Helper()
	rt.parked()
	select {
	case at := <-rt.loads:
		rt.t.Fatalf("a reading at +%v; want none", at.Sub(time.Unix(1_700_000_000, 0)))
	case tm := <-rt.clock.armed:
		rt.t.Fatalf("a timer of %v armed; want none", tm.d)
	default:
	}
}

// parked waits until the reloader's goroutine is blocked in its select with
// its kick taken. A goroutine parked in a select has no ready case: a send
// to one of its channels makes it runnable before the send returns.
func (rt *reloaderTest) parked() {
	rt.t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		for g := range strings.SplitSeq(stacks, "\n\n") {
			if strings.Contains(g, "faithif.(*reloader).run(") && len(rt.kick) == 0 {
				header, _, _ := strings.Cut(g, "\n")
				if strings.Contains(header, " [select") {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			rt.t.Fatalf("the reloader is not waiting after 5 s")
		}
		runtime.Gosched()
	}
}

// TestReloaderCoalesces: a burst of changes is one reading, at most one per
// reloadGap, the gap counted from the last reading; after a quiet spell a
// change is read at once.
func TestReloaderCoalesces(t *testing.T) {
	rt := startReloader(t)
	rt.changed() // just after the first reading: wait for the gap
	tm := rt.timer(reloadGap)
	for range 50 { // a convergence storm, an overrun
		rt.changed()
	}
	rt.clock.fire(tm)
	rt.load(reloadGap)
	rt.quiet() // the 50 changes were one reading

	rt.clock.advance(30 * time.Millisecond)
	rt.changed()
	rt.clock.fire(rt.timer(reloadGap - 30*time.Millisecond))
	rt.load(2 * reloadGap)

	rt.clock.advance(time.Second)
	rt.changed()
	rt.load(2*reloadGap + time.Second) // at once
	rt.quiet()
	if lines := rt.log.lines(); lines != nil {
		t.Errorf("logged %q; want nothing while readings succeed", lines)
	}
}

// TestReloaderBackoff: a failed reading is retried, unasked, after 1 s,
// then 2, 4, ... up to 30 s; a change notified during that wait is read
// within reloadChanged (1 s) of it, or at the backoff's end if that is
// sooner, and the backoff goes on doubling if that reading fails too. The
// first failure is logged with its error, the success that ends the run
// with the count; then the gap is 100 ms again.
func TestReloaderBackoff(t *testing.T) {
	fail := errors.New("list local routes: no buffer space available")
	rt := startReloader(t, fail, fail, fail, fail, fail, fail, fail, fail)
	rt.clock.advance(time.Second)
	rt.changed()
	at := time.Second
	rt.load(at)
	// No change: each retry waits out the backoff.
	for i, d := range []time.Duration{1, 2, 4, 8, 16} {
		tm := rt.timer(d * time.Second)
		if i == 0 { // logged before the timer was armed
			lines := rt.log.lines()
			if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "reading them failed") ||
				!strings.Contains(lines[0], `error="list local routes: no buffer space available"`) || !strings.Contains(lines[0], "retry_in=1s") {
				t.Fatalf("log after a failure: %q; want one warning with the error", lines)
			}
		}
		rt.quiet() // nothing before the timer fires
		rt.clock.fire(tm)
		at += d * time.Second
		rt.load(at)
	}
	// A change 5 s into a 30 s backoff: read 1 s later, not 25 s later;
	// further changes meanwhile add nothing.
	rt.timer(30 * time.Second)
	rt.clock.advance(5 * time.Second)
	rt.changed()
	tm := rt.timer(reloadChanged)
	rt.changed()
	rt.changed()
	rt.quiet()
	rt.clock.fire(tm)
	at += 5*time.Second + reloadChanged
	rt.load(at)
	// That reading failed too: the backoff goes on (30 s, the cap), and a
	// change within 1 s of its end is read at its end.
	tm = rt.timer(30 * time.Second)
	rt.clock.advance(29500 * time.Millisecond)
	rt.changed()
	rt.quiet() // no sooner timer: the backoff's end is sooner than 1 s
	rt.clock.fire(fakeTimer{d: 500 * time.Millisecond, ch: tm.ch})
	at += 30 * time.Second
	rt.load(at)
	// Failed again; a change 10 s into the next 30 s: read 1 s later, and
	// that reading succeeds.
	rt.timer(30 * time.Second)
	rt.clock.advance(10 * time.Second)
	rt.changed()
	rt.clock.fire(rt.timer(reloadChanged))
	at += 10*time.Second + reloadChanged
	rt.load(at)
	rt.quiet() // the last one succeeded: no retry
	rt.clock.advance(10 * time.Millisecond)
	rt.changed()
	tm = rt.timer(reloadGap - 10*time.Millisecond) // the gap is back to 100 ms
	lines := rt.log.lines()
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "read again after failing") ||
		!strings.Contains(lines[0], "failures=8") || !strings.Contains(lines[0], "failing_for=1m18s") {
		t.Fatalf("log after the failures: %q; want one line: 8 failures over 1m18s", lines)
	}
	rt.clock.fire(tm)
	rt.load(at + reloadGap)
}

// TestLocalHostsBroadcast: the directed broadcast address of each IPv4
// subnet the router has an address in is local (the kernel's broadcast
// route; a TCP connection to it fails), so that the relay refuses it and
// DNS64 does not synthesize it; /31 and /32 have none; an explicit brd
// counts too; IPv6 addresses are not IPv4 hosts.
func TestLocalHostsBroadcast(t *testing.T) {
	addr := func(cidr, brd string) netlink.Addr {
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		a := netlink.Addr{IPNet: n}
		if brd != "" {
			a.Broadcast = net.ParseIP(brd)
		}
		return a
	}
	got := localHosts([]netlink.Addr{
		addr("192.0.2.1/24", ""),
		addr("198.51.100.7/31", ""),
		addr("203.0.113.9/32", ""),
		addr("203.0.113.65/26", "203.0.113.100"),
		addr("2001:db8::1/64", ""),
	})
	want := []string{"192.0.2.1", "192.0.2.255", "198.51.100.7", "203.0.113.9", "203.0.113.65", "203.0.113.100", "203.0.113.127"}
	var gs []string
	for _, a := range got {
		gs = append(gs, a.String())
	}
	if !slices.Equal(gs, want) {
		t.Errorf("localHosts = %v, want %v", gs, want)
	}
	l := &LocalAddrs{}
	l.set.Store(buildLocalSet(got, nil, nil))
	p := relay.Policy{Mapper: mustMapper(t), IsLocal: l.Contains}
	v := p.CheckAnyPort(netip.MustParseAddr("2001:db8:1::2"), relay.Unmap(netip.MustParsePrefix("2001:db8:46::/96"), netip.MustParseAddr("192.0.2.255")))
	if v.Permit || !errors.Is(v.Refused, relay.ErrRouterAddress) {
		t.Errorf("the relay's verdict on 192.0.2.255: %+v, want refused as a router address", v)
	}
}

func mustMapper(t *testing.T) *relay.Mapper {
	m, err := relay.NewMapper(netip.MustParsePrefix("2001:db8:46::/96"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
