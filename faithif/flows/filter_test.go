package flows

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseFilters(t *testing.T) {
	pfx := netip.MustParsePrefix
	good := []struct {
		in    string
		dest  bool
		want  Match
		canon string
	}{
		{"", false, Match{}, ""},
		{"2001:db8:1::2", false, Match{Prefix: pfx("2001:db8:1::2/128")}, "2001:db8:1::2"},
		{"2001:db8:1::/64", false, Match{Prefix: pfx("2001:db8:1::/64")}, "2001:db8:1::/64"},
		{"[2001:db8:1::2]:40000", false, Match{Prefix: pfx("2001:db8:1::2/128"), PortLo: 40000, PortHi: 40000}, "[2001:db8:1::2]:40000"},
		{"[2001:db8:1::/64]:1024-2047", false, Match{Prefix: pfx("2001:db8:1::/64"), PortLo: 1024, PortHi: 2047}, "[2001:db8:1::/64]:1024-2047"},
		{":40000", false, Match{PortLo: 40000, PortHi: 40000}, ":40000"},
		{"192.0.2.2", true, Match{Prefix: pfx("192.0.2.2/32")}, "192.0.2.2"},
		{"192.0.2.2:80", true, Match{Prefix: pfx("192.0.2.2/32"), PortLo: 80, PortHi: 80}, "192.0.2.2:80"},
		{"192.0.2.0/24:80-443", true, Match{Prefix: pfx("192.0.2.0/24"), PortLo: 80, PortHi: 443}, "192.0.2.0/24:80-443"},
		{"2001:db8:46::/96", true, Match{Prefix: pfx("2001:db8:46::/96")}, "2001:db8:46::/96"},
		{"[2001:db8:46::c000:202]:443", true, Match{Prefix: pfx("2001:db8:46::c000:202/128"), PortLo: 443, PortHi: 443}, "[2001:db8:46::c000:202]:443"},
		{":443", true, Match{PortLo: 443, PortHi: 443}, ":443"},
	}
	for _, g := range good {
		parse := ParseClient
		if g.dest {
			parse = ParseDest
		}
		m, err := parse(g.in)
		if err != nil || m != g.want {
			t.Errorf("parse %q = %+v, %v; want %+v", g.in, m, err, g.want)
			continue
		}
		if s := m.String(); s != g.canon {
			t.Errorf("%q prints as %q; want %q", g.in, s, g.canon)
		}
		if back, err := parse(m.String()); err != nil || back != m {
			t.Errorf("%q does not read back: %+v, %v", m.String(), back, err)
		}
	}
	bad := []struct {
		in, want string
		dest     bool
	}{
		{"192.0.2.1", "clients are IPv6", false},
		{"192.0.2.0/24:80", "clients are IPv6", false},
		{"nonsense", "nonsense: not an IP address or prefix", false},
		{"2001:db8:1::2/64", "2001:db8:1::2/64: host bits are set (did you mean 2001:db8:1::/64?)", false},
		{"[2001:db8:1::2/64]:80", "[2001:db8:1::2/64]:80: address 2001:db8:1::2/64: host bits are set", false},
		{"[2001:db8:1::2", "missing ]", false},
		{"[2001:db8:1::2]80", "want [IPv6]:PORT", false},
		{"[2001:db8:1::2]:0", "want a number from 1 to 65535", false},
		{"192.0.2.300", "192.0.2.300: not an IP address or prefix", true},
		{"192.0.2.300:80", "192.0.2.300:80: address 192.0.2.300: not an IP address or prefix", true},
		{"192.0.2.2:http", `port "http"`, true},
		{"192.0.2.2:70000", "want a number from 1 to 65535", true},
		{"192.0.2.2:443-80", "port range 443-80 is empty", true},
		{"192.0.2.0/33", "not an IP address or prefix", true},
		{"fe80::1%eth0", "zones are not allowed", true},
		{":", "want a number", true},
	}
	for _, b := range bad {
		parse := ParseClient
		if b.dest {
			parse = ParseDest
		}
		_, err := parse(b.in)
		if err == nil || !strings.Contains(err.Error(), b.want) || !strings.HasPrefix(err.Error(), b.in+": ") {
			t.Errorf("parse %q: %v; want an error starting %q and saying %q", b.in, err, b.in+": ", b.want)
		}
	}
}

func TestFilterMatches(t *testing.T) {
	tb := Build("faith0", snapshot, Filter{})
	count := func(client, dest string) int {
		t.Helper()
		var f Filter
		var err error
		if f.Client, err = ParseClient(client); err != nil {
			t.Fatal(err)
		}
		if f.Dest, err = ParseDest(dest); err != nil {
			t.Fatal(err)
		}
		n := 0
		for i := range tb.Flows {
			if f.Matches(&tb.Flows[i]) {
				n++
			}
		}
		if got := len(Build("faith0", snapshot, f).Flows); got != n {
			t.Errorf("Build with --client %q --dest %q: %d flows; Matches selects %d", client, dest, got, n)
		}
		return n
	}
	for _, c := range []struct {
		client, dest string
		want         int
	}{
		{"", "", 5},
		{"2001:db8:1::/64", "", 4},
		{"2001:db8:1::2", "", 3},
		{"[2001:db8:1::2]:40000", "", 2},
		{"[2001:db8:1::/64]:39999-40000", "", 3},
		{"2001:db8:3::/64", "", 0},
		{"", "192.0.2.2", 4},
		{"", "192.0.2.2:443", 1},
		{"", "203.0.113.0/24", 1},
		{"", "198.51.100.0/24", 0},
		{"", "2001:db8:46::/96", 5},
		{"", "[2001:db8:46::c000:202]:80", 3},
		{"", "2001:db8:46::cb00:7101", 1},
		{"", ":80", 4},
		{"2001:db8:1::2", "192.0.2.2:80", 1},
	} {
		if got := count(c.client, c.dest); got != c.want {
			t.Errorf("--client %q --dest %q: %d flows; want %d", c.client, c.dest, got, c.want)
		}
	}
}
