package relay

import (
	"errors"
	"fmt"
	"net/netip"
)

// WellKnownPrefix is the RFC 6052 well-known prefix 64:ff9b::/96, used when
// an interface is created without a prefix.
var WellKnownPrefix = netip.MustParsePrefix("64:ff9b::/96")

// Errors returned by Mapper.Map. They are wrapped with the offending address.
var (
	// ErrNoPrefix means the destination is in none of the FAITH prefixes.
	ErrNoPrefix = errors.New("destination is not in a FAITH prefix")
	// ErrUOctet means bits 64-71 of the destination are not zero (RFC 6052 2.2).
	ErrUOctet = errors.New("u-octet (bits 64-71) is not zero")
	// ErrForbiddenDestination means the embedded IPv4 address is one faithif
	// never connects to (this network, loopback, link-local, multicast,
	// reserved, broadcast).
	ErrForbiddenDestination = errors.New("embedded IPv4 address is never relayed")
	// ErrNotGlobal means a non-global IPv4 address was embedded in the
	// well-known prefix, which RFC 6052 section 3.1 forbids.
	ErrNotGlobal = errors.New("the well-known prefix 64:ff9b::/96 must not carry a non-global IPv4 address (RFC 6052 3.1)")
)

// forbidden lists the IPv4 destinations refused whatever the rules say.
var forbidden = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network" (RFC 1122)
	netip.MustParsePrefix("127.0.0.0/8"),        // loopback: the router itself
	netip.MustParsePrefix("169.254.0.0/16"),     // link-local: the router's own links
	netip.MustParsePrefix("224.0.0.0/4"),        // multicast
	netip.MustParsePrefix("240.0.0.0/4"),        // reserved, includes 255.255.255.255
	netip.MustParsePrefix("255.255.255.255/32"), // limited broadcast (kept explicit)
}

// nonGlobal lists the IPv4 special-purpose blocks that are not globally
// reachable (RFC 6890 and its updates), refused behind the well-known prefix
// in addition to the forbidden ones.
var nonGlobal = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGN)
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // deprecated 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
}

// ValidPrefixLengths are the RFC 6052 prefix lengths a Mapper accepts.
var ValidPrefixLengths = []int{32, 40, 48, 56, 64, 96}

// ParsePrefix parses and checks a FAITH prefix: an IPv6 prefix of one of the
// RFC 6052 lengths with no host bits set.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix %q: not an IPv6 prefix (want e.g. 64:ff9b::/96)", s)
	}
	if !p.Addr().Is6() || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("prefix %q: not an IPv6 prefix", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("prefix %q: zones are not allowed", s)
	}
	if p.Bits() > 96 {
		return netip.Prefix{}, fmt.Errorf("prefix %q: longer than /96 leaves no room for an IPv4 address", s)
	}
	ok := false
	for _, l := range ValidPrefixLengths {
		ok = ok || p.Bits() == l
	}
	if !ok {
		return netip.Prefix{}, fmt.Errorf("prefix %q: length /%d is not one of RFC 6052's /32, /40, /48, /56, /64, /96", s, p.Bits())
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("prefix %q: host bits are set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// Mapper translates between IPv6 destinations in a set of FAITH prefixes and
// the IPv4 addresses embedded in them. A Mapper is immutable and safe for
// concurrent use.
type Mapper struct {
	prefixes []netip.Prefix // longest first
}

// NewMapper returns a Mapper for the given prefixes, each checked as by
// ParsePrefix. With no prefixes it uses WellKnownPrefix.
func NewMapper(prefixes ...netip.Prefix) (*Mapper, error) {
	if len(prefixes) == 0 {
		prefixes = []netip.Prefix{WellKnownPrefix}
	}
	m := &Mapper{}
	for _, p := range prefixes {
		if _, err := ParsePrefix(p.String()); err != nil {
			return nil, err
		}
		m.prefixes = append(m.prefixes, p)
	}
	// Longest prefix first, so the most specific one wins when they nest.
	for i := 1; i < len(m.prefixes); i++ {
		for j := i; j > 0 && m.prefixes[j].Bits() > m.prefixes[j-1].Bits(); j-- {
			m.prefixes[j], m.prefixes[j-1] = m.prefixes[j-1], m.prefixes[j]
		}
	}
	return m, nil
}

// Prefixes returns the Mapper's prefixes, longest first.
func (m *Mapper) Prefixes() []netip.Prefix {
	return append([]netip.Prefix(nil), m.prefixes...)
}

// Map returns the IPv4 address embedded in dst, following RFC 6052 section
// 2.2 for the length of the matching prefix. It refuses destinations outside
// every prefix, a non-zero u-octet and the always-forbidden IPv4 ranges.
func (m *Mapper) Map(dst netip.Addr) (netip.Addr, error) {
	dst = dst.Unmap()
	if !dst.Is6() {
		return netip.Addr{}, fmt.Errorf("map %s: %w", dst, ErrNoPrefix)
	}
	for _, p := range m.prefixes {
		if !p.Contains(dst.WithZone("")) {
			continue
		}
		a := dst.As16()
		if p.Bits() < 96 && a[8] != 0 {
			return netip.Addr{}, fmt.Errorf("map %s: %w", dst, ErrUOctet)
		}
		v4 := netip.AddrFrom4(extract(a, p.Bits()))
		if isForbidden(v4) {
			return v4, fmt.Errorf("map %s to %s: %w", dst, v4, ErrForbiddenDestination)
		}
		if p == WellKnownPrefix && inAny(nonGlobal, v4) {
			return v4, fmt.Errorf("map %s to %s: %w", dst, v4, ErrNotGlobal)
		}
		return v4, nil
	}
	return netip.Addr{}, fmt.Errorf("map %s: %w", dst, ErrNoPrefix)
}

// Unmap returns the address of v4 inside prefix p, the inverse of Map.
func Unmap(p netip.Prefix, v4 netip.Addr) netip.Addr {
	a := p.Masked().Addr().As16()
	b := v4.As4()
	for i, idx := range octetIndexes(p.Bits()) {
		a[idx] = b[i]
	}
	return netip.AddrFrom16(a)
}

// extract reads the four IPv4 octets embedded after a prefix of length bits.
func extract(a [16]byte, bits int) [4]byte {
	var v4 [4]byte
	for i, idx := range octetIndexes(bits) {
		v4[i] = a[idx]
	}
	return v4
}

// octetIndexes gives, for an RFC 6052 prefix length, the positions of the
// four IPv4 octets in the IPv6 address (skipping the u-octet at index 8).
func octetIndexes(bits int) [4]int {
	switch bits {
	case 32:
		return [4]int{4, 5, 6, 7}
	case 40:
		return [4]int{5, 6, 7, 9}
	case 48:
		return [4]int{6, 7, 9, 10}
	case 56:
		return [4]int{7, 9, 10, 11}
	case 64:
		return [4]int{9, 10, 11, 12}
	default: // 96
		return [4]int{12, 13, 14, 15}
	}
}

func isForbidden(v4 netip.Addr) bool { return inAny(forbidden, v4) }

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
