package relay

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestMapRFC6052Examples uses the table of RFC 6052 section 2.4, which embeds
// 192.0.2.33 in 2001:db8::/32 ... /96.
func TestMapRFC6052Examples(t *testing.T) {
	tests := []struct {
		prefix, addr string
	}{
		{"2001:db8::/32", "2001:db8:c000:221::"},
		{"2001:db8:100::/40", "2001:db8:1c0:2:21::"},
		{"2001:db8:122::/48", "2001:db8:122:c000:2:2100::"},
		{"2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"},
		{"2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"},
		{"2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"},
	}
	want := netip.MustParseAddr("192.0.2.33")
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.prefix)
		m, err := NewMapper(p)
		if err != nil {
			t.Fatalf("NewMapper(%s): %v", p, err)
		}
		got, err := m.Map(netip.MustParseAddr(tt.addr))
		if err != nil || got != want {
			t.Errorf("Map(%s) in %s = %v, %v; want %v", tt.addr, p, got, err, want)
		}
		if back := Unmap(p, want); back != netip.MustParseAddr(tt.addr) {
			t.Errorf("Unmap(%s, %s) = %s; want %s", p, want, back, tt.addr)
		}
	}
}

func TestMapRefuses(t *testing.T) {
	m, err := NewMapper(netip.MustParsePrefix("2001:db8:46::/96"), netip.MustParsePrefix("2001:db8:64::/64"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want error
	}{
		{"2001:db8:46::7f00:1", ErrForbiddenDestination},    // 127.0.0.1
		{"2001:db8:46::7fff:ffff", ErrForbiddenDestination}, // 127.255.255.255
		{"2001:db8:46::0:0", ErrForbiddenDestination},       // 0.0.0.0
		{"2001:db8:46::ff:ffff", ErrForbiddenDestination},   // 0.255.255.255
		{"2001:db8:46::e000:0", ErrForbiddenDestination},    // 224.0.0.0
		{"2001:db8:46::efff:ffff", ErrForbiddenDestination}, // 239.255.255.255
		{"2001:db8:46::f000:1", ErrForbiddenDestination},    // 240.0.0.1
		{"2001:db8:46::ffff:ffff", ErrForbiddenDestination}, // 255.255.255.255
		{"2001:db8:46::a9fe:1", ErrForbiddenDestination},    // 169.254.0.1, link-local
		{"2001:db8:46::100:0", nil},                         // 1.0.0.0, first after 0/8
		{"2001:db8:46::7eff:ffff", nil},                     // 126.255.255.255, last before 127/8
		{"2001:db8:46::8000:0", nil},                        // 128.0.0.0, first after 127/8
		{"2001:db8:46::dfff:ffff", nil},                     // 223.255.255.255, last before 224/4
		{"2001:db8:46::c000:202", nil},                      // 192.0.2.2 in the /96
		{"2001:db8:46::c000:202%faith0", nil},               // a zone is ignored
		{"2001:db8:64:0:c0:2:200:0", nil},                   // 192.0.2.2 in the /64
		{"2001:db8:64:0:1c0:2:200:0", ErrUOctet},            // u-octet 0x01 in the /64
		{"2001:db8:47::c000:202", ErrNoPrefix},              // another prefix
		{"2001:db8:46:0:0:1:c000:202", ErrNoPrefix},         // just outside the /96
		{"192.0.2.1", ErrNoPrefix},                          // not IPv6
		{"::ffff:192.0.2.1", ErrNoPrefix},                   // IPv4-mapped
	}
	for _, tt := range tests {
		_, err := m.Map(netip.MustParseAddr(tt.addr))
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Map(%s) error = %v; want %v", tt.addr, err, tt.want)
		}
	}
}

func TestWellKnownPrefixRefusesNonGlobal(t *testing.T) {
	m, err := NewMapper(WellKnownPrefix, netip.MustParsePrefix("2001:db8:46::/96"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v4 := range []string{"10.1.2.3", "100.64.0.1", "172.16.0.1", "172.31.255.255", "192.0.0.1", "192.0.2.2", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.1", "203.0.113.1"} {
		a := netip.MustParseAddr(v4)
		if _, err := m.Map(Unmap(WellKnownPrefix, a)); !errors.Is(err, ErrNotGlobal) {
			t.Errorf("Map(64:ff9b::%s) = %v; want ErrNotGlobal", v4, err)
		}
		// A network-specific prefix may carry it (RFC 6052 3.1).
		if got, err := m.Map(Unmap(netip.MustParsePrefix("2001:db8:46::/96"), a)); err != nil || got != a {
			t.Errorf("Map(2001:db8:46::%s) = %v, %v; want %s", v4, got, err, v4)
		}
	}
	for _, v4 := range []string{"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "198.20.0.1", "192.0.1.1"} {
		a := netip.MustParseAddr(v4)
		if got, err := m.Map(Unmap(WellKnownPrefix, a)); err != nil || got != a {
			t.Errorf("Map(64:ff9b::%s) = %v, %v; want %s (global)", v4, got, err, v4)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	good := []string{"64:ff9b::/96", "2001:db8:46::/96", "2001:db8::/32", "2001:db8:100::/40", "2001:db8:122::/48", "2001:db8:122:300::/56", "2001:db8:122:344::/64"}
	for _, s := range good {
		if _, err := ParsePrefix(s); err != nil {
			t.Errorf("ParsePrefix(%q) = %v; want ok", s, err)
		}
	}
	bad := map[string]string{
		"nonsense":           "not an IPv6 prefix",
		"2001:db8:46::":      "not an IPv6 prefix",
		"192.0.2.0/24":       "not an IPv6 prefix",
		"::ffff:0:0/96":      "not an IPv6 prefix",
		"2001:db8::/97":      "longer than /96",
		"2001:db8::/128":     "longer than /96",
		"2001:db8::/33":      "not one of RFC 6052",
		"2001:db8:46::1/96":  "host bits are set",
		"2001:db8::/-1":      "not an IPv6 prefix",
		"fe80::%eth0/64":     "not an IPv6 prefix",
		"2001:db8:46::/96 x": "not an IPv6 prefix",
	}
	for s, want := range bad {
		_, err := ParsePrefix(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePrefix(%q) = %v; want an error containing %q", s, err, want)
		}
	}
}

func TestNewMapperDefaultsAndOrder(t *testing.T) {
	m, err := NewMapper()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Prefixes(); len(got) != 1 || got[0] != WellKnownPrefix {
		t.Fatalf("default prefixes = %v; want [%s]", got, WellKnownPrefix)
	}
	m, err = NewMapper(netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("2001:db8:46::/96"))
	if err != nil {
		t.Fatal(err)
	}
	// Inside both: the /96 must win (192.0.2.2, not the /32 reading).
	got, err := m.Map(netip.MustParseAddr("2001:db8:46::c000:202"))
	if err != nil || got != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("nested prefixes: Map = %v, %v; want 192.0.2.2", got, err)
	}
	if _, err := NewMapper(netip.MustParsePrefix("2001:db8::/97")); err == nil {
		t.Fatal("NewMapper accepted a /97")
	}
}
