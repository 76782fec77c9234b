package relay

import (
	"net/netip"
	"testing"
)

// BenchmarkMap measures mapping one destination; it must not allocate.
func BenchmarkMap(b *testing.B) {
	m, err := NewMapper(netip.MustParsePrefix("2001:db8:46::/96"), WellKnownPrefix, netip.MustParsePrefix("2001:db8:64::/64"))
	if err != nil {
		b.Fatal(err)
	}
	dst := netip.MustParseAddr("2001:db8:46::c000:202")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Map(dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRulesCheck measures deciding a flow against a 100-line file.
func BenchmarkRulesCheck(b *testing.B) {
	rs := &Rules{}
	for i := 0; i < 99; i++ {
		rs.Rules = append(rs.Rules, Rule{Src: netip.MustParsePrefix("2001:db8:ffff::/48"), Dst: netip.MustParsePrefix("10.0.0.0/8")})
	}
	rs.Rules = append(rs.Rules, Rule{Src: netip.MustParsePrefix("::/0"), Permit: true, Dst: netip.MustParsePrefix("0.0.0.0/0")})
	src, dst := netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddrPort("192.0.2.2:80")
	b.ReportAllocs()
	for b.Loop() {
		if !rs.Check(src, dst).Permit {
			b.Fatal("denied")
		}
	}
}
