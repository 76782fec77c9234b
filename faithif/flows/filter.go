package flows

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/faithif/faithif/relay"
)

// Filter selects flows by client and destination; a zero Match selects
// every flow.
type Filter struct {
	// Client matches the IPv6 client (address and port).
	Client Match
	// Dest matches the IPv4 server (an IPv4 Match) or the FAITH address
	// (an IPv6 Match), address and port.
	Dest Match
}

// Match is an address or prefix, IPv4 or IPv6, with an optional port or
// port range; the zero Match matches everything.
type Match struct {
	Prefix netip.Prefix // invalid: any address
	// PortLo to PortHi is the port range; both 0: any port.
	PortLo, PortHi uint16
}

// IsZero reports whether m matches everything.
func (m Match) IsZero() bool { return m == Match{} }

// matches reports whether ap is inside m.
func (m Match) matches(ap netip.AddrPort) bool {
	if m.Prefix.IsValid() && !m.Prefix.Contains(ap.Addr()) {
		return false
	}
	return m.PortHi == 0 || (ap.Port() >= m.PortLo && ap.Port() <= m.PortHi)
}

// String returns m as ParseClient and ParseDest read it: ADDR[/PLEN],
// IPv4 ADDR[/PLEN]:PORT[-PORT], IPv6 [ADDR[/PLEN]]:PORT[-PORT],
// :PORT[-PORT]; empty for the zero Match.
func (m Match) String() string {
	if m.IsZero() {
		return ""
	}
	s := ""
	if m.Prefix.IsValid() {
		s = m.Prefix.Addr().String()
		if m.Prefix.Bits() != m.Prefix.Addr().BitLen() {
			s = m.Prefix.String()
		}
	}
	if m.PortHi == 0 {
		return s
	}
	if m.Prefix.Addr().Is6() {
		s = "[" + s + "]"
	}
	if m.PortLo == m.PortHi {
		return fmt.Sprintf("%s:%d", s, m.PortLo)
	}
	return fmt.Sprintf("%s:%d-%d", s, m.PortLo, m.PortHi)
}

// Matches reports whether f selects fl.
func (f Filter) Matches(fl *Flow) bool {
	if !f.Client.matches(fl.Client) {
		return false
	}
	dst := fl.Dst6
	if f.Dest.Prefix.Addr().Is4() {
		dst = fl.Dst4
	}
	return f.Dest.matches(dst)
}

// ParseClient parses a client filter: an IPv6 address or prefix, with an
// optional port or port range ([2001:db8:1::2]:40000,
// [2001:db8:1::/64]:1024-2047), or a port alone (:40000). The empty string
// matches every client.
func ParseClient(s string) (Match, error) {
	m, err := parseMatch(s)
	if err != nil {
		return Match{}, err
	}
	if m.Prefix.IsValid() && !m.Prefix.Addr().Is6() {
		return Match{}, fmt.Errorf("%s: clients are IPv6: want an IPv6 address or prefix, e.g. 2001:db8:1::/64", s)
	}
	return m, nil
}

// ParseDest parses a destination filter: an IPv4 address or prefix (the
// IPv4 server: 192.0.2.2, 192.0.2.0/24:80) or an IPv6 one (the FAITH
// address: 2001:db8:46::/96, [2001:db8:46::c000:202]:443), each with an
// optional port or port range, or a port alone (:443, the same on both
// sides). The empty string matches every destination.
func ParseDest(s string) (Match, error) { return parseMatch(s) }

// parseMatch parses ADDR[/PLEN], IPv4 ADDR[/PLEN]:PORTS, IPv6
// [ADDR[/PLEN]]:PORTS or :PORTS (any address), where PORTS is PORT or
// PORT-PORT.
func parseMatch(s string) (Match, error) {
	if s == "" {
		return Match{}, nil
	}
	addr, ports, hasPorts := s, "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return Match{}, fmt.Errorf("%s: missing ] after the IPv6 address", s)
		}
		addr = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return Match{}, fmt.Errorf("%s: want [IPv6]:PORT", s)
			}
			ports, hasPorts = rest[1:], true
		}
	case strings.Count(s, ":") == 1: // IPv4 with a port; more colons: IPv6
		addr, ports, hasPorts = strings.Cut(s, ":")
	}
	var m Match
	var err error
	if addr != "" || !hasPorts { // ":PORT" alone: any address
		if m.Prefix, err = parsePrefix(addr); err != nil && addr != s {
			return Match{}, fmt.Errorf("%s: address %s: %w", s, addr, err)
		} else if err != nil {
			return Match{}, fmt.Errorf("%s: %w", s, err)
		}
	}
	if hasPorts {
		if m.PortLo, m.PortHi, err = relay.ParsePortRange(ports); err != nil {
			return Match{}, fmt.Errorf("%s: %w", s, err)
		}
	}
	return m, nil
}

// parsePrefix parses an address or a prefix without host bits.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an IP address or prefix")
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("zones are not allowed")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address or prefix")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("host bits are set (did you mean %s?)", p.Masked())
	}
	return p, nil
}
