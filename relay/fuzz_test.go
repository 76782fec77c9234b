package relay

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseRules checks that no input crashes the parser, and that a file it
// accepts means the same when printed back and parsed again.
func FuzzParseRules(f *testing.F) {
	f.Add("3ffe:501:ffff::/48 deny 127.0.0.0/8\n3ffe:501:ffff::/48 permit 0.0.0.0/0\n")
	f.Add("# comment\n\n2001:db8::1 permit 192.0.2.2:80 192.0.2.1\n")
	f.Add("::/0 permit 198.51.100.0/24:8000-8080 # web\n::/0 deny 0.0.0.0/0\n")
	f.Add("2001:db8::/32 allow 0.0.0.0/0\n")
	f.Add("2001:db8::1/32 permit 10.0.0.1/8\n")
	f.Add("fe80::%eth0 permit 0.0.0.0/0 1.2.3.4 5\n")
	f.Fuzz(func(t *testing.T, conf string) {
		rs, err := ParseRules("fuzz.conf", strings.NewReader(conf), nil)
		if err != nil {
			if rs != nil {
				t.Fatalf("rules and an error at once: %v", err)
			}
			if !strings.Contains(err.Error(), "fuzz.conf") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		var back bytes.Buffer
		for _, r := range rs.Rules {
			back.WriteString(r.String() + "\n")
		}
		again, err := ParseRules("again.conf", &back, nil)
		if err != nil {
			t.Fatalf("printed rules do not parse: %v\n%s", err, back.String())
		}
		if len(again.Rules) != len(rs.Rules) {
			t.Fatalf("%d rules printed back as %d", len(rs.Rules), len(again.Rules))
		}
		for i := range rs.Rules {
			a, b := rs.Rules[i], again.Rules[i]
			a.Line, b.Line = 0, 0
			if a != b {
				t.Fatalf("rule %d: %+v printed and parsed back as %+v", i, a, b)
			}
		}
	})
}

// FuzzMap checks that no address crashes the Mapper, that Map's answer is
// the one RFC 6052 gives (rfc6052Extract, written independently of the
// Mapper): the embedded IPv4 address when it accepts, and an error only when
// one is justified (ErrNoPrefix for an IPv4-mapped address, ErrUOctet,
// ErrForbiddenDestination, ErrNotGlobal, each checked against the address),
// and that Unmap and Map agree (the suffix after the IPv4 address is
// ignored, so only that direction holds). A Map that always fails fails it.
func FuzzMap(f *testing.F) {
	f.Add([]byte(netip.MustParseAddr("2001:db8:46::c000:202").AsSlice()), uint8(96))
	f.Add([]byte(netip.MustParseAddr("2001:db8:122:344:c0:2:2100:0").AsSlice()), uint8(64))
	f.Add([]byte(netip.MustParseAddr("2001:db8:1c0:2:21::").AsSlice()), uint8(40))
	f.Add([]byte(netip.MustParseAddr("64:ff9b::7f00:1").AsSlice()), uint8(96))
	f.Add([]byte(netip.MustParseAddr("64:ff9b::c000:202").AsSlice()), uint8(96))
	f.Add([]byte(netip.MustParseAddr("64:ff9b::a00:1").AsSlice()), uint8(96))
	f.Add([]byte(netip.MustParseAddr("2001:db8:c000:202:ff00::").AsSlice()), uint8(32))
	f.Add([]byte(netip.MustParseAddr("::ffff:192.0.2.1").AsSlice()), uint8(32))
	f.Fuzz(func(t *testing.T, raw []byte, plen uint8) {
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		lengths := ValidPrefixLengths
		bits := lengths[int(plen)%len(lengths)]
		p, err := a.Prefix(bits)
		if err != nil {
			return
		}
		m, err := NewMapper(p)
		if err != nil {
			if a.Is6() && !a.Is4In6() {
				t.Fatalf("NewMapper(%s): %v", p, err)
			}
			return
		}
		v4, err := m.Map(a)
		// What RFC 6052 says, worked out here: a is in p by construction.
		b := a.As16()
		want := rfc6052Extract(b, bits)
		var why error
		switch {
		case a.Is4In6():
			why = ErrNoPrefix // Map takes it for the IPv4 address it is
		case bits < 96 && b[8] != 0:
			why = ErrUOctet
		case isForbidden(want):
			why = ErrForbiddenDestination
		case p == WellKnownPrefix && inAny(nonGlobal, want):
			why = ErrNotGlobal
		}
		if why == nil {
			if err != nil {
				t.Fatalf("Map(%s) with prefix %s: %v; want %s (no error is justified)", a, p, err, want)
			}
		} else if !errors.Is(err, why) {
			t.Fatalf("Map(%s) with prefix %s = %s, %v; want the error %q", a, p, v4, err, why)
		}
		if err != nil {
			return
		}
		if v4 != want {
			t.Fatalf("Map(%s) with prefix %s = %s; RFC 6052 embeds %s", a, p, v4, want)
		}
		if !v4.Is4() || isForbidden(v4) {
			t.Fatalf("Map(%s) = %s: not a relayable IPv4 address", a, v4)
		}
		back := Unmap(p, v4)
		if again, err := m.Map(back); err != nil || again != v4 {
			t.Fatalf("Map(Unmap(%s, %s) = %s) = %s, %v; want %s", p, v4, back, again, err, v4)
		}
	})
}

// rfc6052Extract reads the IPv4 address embedded in a after a prefix of
// bits (RFC 6052 section 2.2), bit by bit: the 32 bits that follow the
// prefix, skipping bits 64 to 71 (the u-octet).
func rfc6052Extract(a [16]byte, bits int) netip.Addr {
	var v uint32
	n := 0
	for i := bits; n < 32; i++ {
		if i >= 64 && i < 72 {
			continue
		}
		v = v<<1 | uint32(a[i/8]>>(7-i%8)&1)
		n++
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
