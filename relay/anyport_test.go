package relay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// anyPortBrute is CheckAnyPort by its definition: Check at every port.
func anyPortBrute(p Policy, src, dst netip.Addr) (permit bool, refused error) {
	for port := 1; port <= 65535; port++ {
		v := p.Check(src, netip.AddrPortFrom(dst, uint16(port)))
		if v.Refused != nil {
			return false, v.Refused
		}
		if v.Permit {
			return true, nil
		}
	}
	return false, nil
}

// TestCheckAnyPortMatchesEveryPort: for random access files of port rules,
// CheckAnyPort says what Check says at the 65,535 ports one by one.
func TestCheckAnyPortMatchesEveryPort(t *testing.T) {
	m, err := NewMapper(netip.MustParsePrefix("2001:db8:46::/96"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	srcs := []netip.Addr{netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:2::2")}
	dsts := []netip.Addr{netip.MustParseAddr("2001:db8:46::c000:202"), netip.MustParseAddr("2001:db8:46::c633:6401")}
	for n := range 20 {
		var b strings.Builder
		for range rng.IntN(6) {
			action := []string{"permit", "deny"}[rng.IntN(2)]
			src := []string{"::/0", "2001:db8:1::/64", "2001:db8:2::2"}[rng.IntN(3)]
			dst := []string{"0.0.0.0/0", "192.0.2.0/24", "198.51.100.1"}[rng.IntN(3)]
			switch rng.IntN(4) {
			case 0: // every port
			case 1:
				dst += fmt.Sprintf(":%d", 1+rng.IntN(65535))
			default:
				lo := 1 + rng.IntN(65535)
				hi := lo + rng.IntN(65536-lo)
				dst += fmt.Sprintf(":%d-%d", lo, hi)
			}
			fmt.Fprintf(&b, "%s %s %s\n", src, action, dst)
		}
		rs, err := ParseRules(fmt.Sprintf("case%d", n), strings.NewReader(b.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		p := Policy{Mapper: m, Rules: rs}
		for _, src := range srcs {
			for _, dst := range dsts {
				v := p.CheckAnyPort(src, dst)
				permit, refused := anyPortBrute(p, src, dst)
				if v.Permit != permit || (v.Refused != nil) != (refused != nil) {
					t.Fatalf("rules:\n%sfrom %s to %s: CheckAnyPort permit=%v refused=%v, every port: permit=%v refused=%v",
						b.String(), src, dst, v.Permit, v.Refused, permit, refused)
				}
				if v.Permit && !p.Check(src, netip.AddrPortFrom(dst, v.To.Port())).Permit {
					t.Fatalf("rules:\n%sCheckAnyPort's port %v is not permitted", b.String(), v.To)
				}
			}
		}
	}
}

func TestCheckAnyPortRefusedAndNoRules(t *testing.T) {
	m, _ := NewMapper(netip.MustParsePrefix("2001:db8:46::/96"))
	src := netip.MustParseAddr("2001:db8:1::2")
	router := netip.MustParseAddr("192.0.2.1")
	p := Policy{Mapper: m, IsLocal: func(a netip.Addr) bool { return a == router }}
	for _, c := range []struct {
		v4   string
		want error
	}{
		{"127.0.0.1", ErrForbiddenDestination},
		{"224.0.0.1", ErrForbiddenDestination},
		{"192.0.2.1", ErrRouterAddress},
	} {
		v := p.CheckAnyPort(src, Unmap(m.Prefixes()[0], netip.MustParseAddr(c.v4)))
		if !errors.Is(v.Refused, c.want) {
			t.Errorf("%s: refused %v, want %v", c.v4, v.Refused, c.want)
		}
	}
	// No access file: every mappable destination at once.
	if v := p.CheckAnyPort(src, netip.MustParseAddr("2001:db8:46::c000:202")); !v.Permit || v.To.Port() != 1 {
		t.Errorf("no rules: %+v, want a permit", v)
	}
	// A file with no rule denies every port.
	p.Rules = &Rules{File: "empty"}
	if v := p.CheckAnyPort(src, netip.MustParseAddr("2001:db8:46::c000:202")); v.Permit || v.Refused != nil {
		t.Errorf("empty rules: %+v, want a deny", v)
	}
	// Only port 443, after a deny of 1-442.
	rs, err := ParseRules("f", strings.NewReader("::/0 deny 0.0.0.0/0:1-442\n::/0 permit 192.0.2.2:443\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Rules = rs
	if v := p.CheckAnyPort(src, netip.MustParseAddr("2001:db8:46::c000:202")); !v.Permit || v.To.Port() != 443 || v.Rule.Line != 2 {
		t.Errorf("port 443 rule: %+v, want the permit of line 2 at 443", v)
	}
}
