package faithif

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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
		if os.IsPermission(err) {
			t.Skip(err)
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
	l, err := WatchLocalAddrs()
	if err != nil {
		t.Skip(err) // no netlink here
	}
	if !l.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("127.0.0.1 is not local")
	}
	l.Close()
	l.Close()
}
