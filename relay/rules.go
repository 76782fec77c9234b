package relay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Rule is one line of a faithd.conf access file:
//
//	SRC6[/PLEN] permit|deny DST4[/PLEN][:PORT[-PORT]] [BIND4]
//
// A missing /PLEN means a single address. The port or port range is a
// faithif extension; without it the rule applies to every port.
type Rule struct {
	Line   int          // line number in the file
	Src    netip.Prefix // the IPv6 clients it applies to
	Permit bool         // permit or deny
	Dst    netip.Prefix // the IPv4 destinations it applies to
	PortLo uint16       // first destination port; 0 with PortHi 0: all ports
	PortHi uint16       // last destination port
	Bind   netip.Addr   // IPv4 source address for the outgoing connection; zero: the kernel's choice
}

func (r *Rule) matchesPort(port uint16) bool {
	return r.PortHi == 0 || (port >= r.PortLo && port <= r.PortHi)
}

// String returns the rule as a faithd.conf line.
func (r Rule) String() string {
	action := "deny"
	if r.Permit {
		action = "permit"
	}
	s := fmt.Sprintf("%s %s %s", r.Src, action, r.Dst)
	switch {
	case r.PortHi == 0:
	case r.PortLo == r.PortHi:
		s += fmt.Sprintf(":%d", r.PortLo)
	default:
		s += fmt.Sprintf(":%d-%d", r.PortLo, r.PortHi)
	}
	if r.Bind.IsValid() {
		s += " " + r.Bind.String()
	}
	return s
}

// Rules is a parsed access file: first match wins, no match denies, so an
// access file with no rule at all (empty, or comments only) denies every
// flow (faithd permitted everything then, one of its bugs). Only a nil
// *Rules, running with no access file, permits everything the Mapper does
// not refuse. Rules is immutable and safe for concurrent use.
type Rules struct {
	File  string // where the rules came from; empty for none
	Rules []Rule
}

// Decision is the outcome of checking a flow against Rules.
type Decision struct {
	Permit bool
	Rule   *Rule // the matching rule; nil when there are no rules or none matched
}

// Check decides a flow from client src to IPv4 destination dst and port.
// A nil *Rules (no access file) permits it.
func (rs *Rules) Check(src netip.Addr, dst netip.AddrPort) Decision {
	if rs == nil {
		return Decision{Permit: true}
	}
	src, a := src.WithZone(""), dst.Addr().Unmap()
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if r.Src.Contains(src) && r.Dst.Contains(a) && r.matchesPort(dst.Port()) {
			return Decision{Permit: r.Permit, Rule: r}
		}
	}
	return Decision{}
}

// PermitsAll reports whether rs permits every flow: no access file (nil),
// or a rule that permits every source, destination and port
// (::/0 permit 0.0.0.0/0) with no deny rule before it. It returns that
// rule, nil for no access file. (Permit rules that cover everything only
// together are not recognised.)
func (rs *Rules) PermitsAll() (bool, *Rule) {
	if rs == nil {
		return true, nil
	}
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if !r.Permit {
			return false, nil
		}
		if r.Src.Bits() == 0 && r.Dst.Bits() == 0 && r.PortHi == 0 {
			return true, r
		}
	}
	return false, nil
}

// Warning says in one sentence what rs means when it is one of the
// extremes, which deserve a warning at start and at reload: every flow
// permitted (no access file, or a rule that permits all) or denied (a file
// with no rule). It is "" for any other rule set.
func (rs *Rules) Warning() string {
	switch all, rule := rs.PermitsAll(); {
	case rs == nil:
		return "no access rules: every destination is permitted except the always-refused ones"
	case len(rs.Rules) == 0:
		return "access file has no rules: every flow is denied"
	case all:
		return fmt.Sprintf("access rules permit every flow (%s:%d: %s)", rs.File, rule.Line, rule)
	}
	return ""
}

// LoadRules reads an access file. isLocal reports whether an IPv4 address
// belongs to this machine, for checking BIND4; nil accepts any address.
func LoadRules(path string, isLocal func(netip.Addr) bool) (*Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	return ParseRules(path, f, isLocal)
}

// ParseRules parses an access file read from r; name is used in errors.
// Every problem is reported as "NAME:LINE: what is wrong", and one bad line
// rejects the whole file: unlike faithd, nothing is skipped silently.
func ParseRules(name string, r io.Reader, isLocal func(netip.Addr) bool) (*Rules, error) {
	rs := &Rules{File: name}
	var errs []error
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		rule, err := parseRule(fields, isLocal)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, err))
			continue
		}
		rule.Line = line
		rs.Rules = append(rs.Rules, rule)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}

func parseRule(f []string, isLocal func(netip.Addr) bool) (Rule, error) {
	if len(f) < 3 || len(f) > 4 {
		return Rule{}, fmt.Errorf("want SRC6[/PLEN] permit|deny DST4[/PLEN][:PORT[-PORT]] [BIND4], got %d fields", len(f))
	}
	var r Rule
	var err error
	if r.Src, err = parseRulePrefix(f[0], true); err != nil {
		return Rule{}, fmt.Errorf("source %q: %w", f[0], err)
	}
	switch f[1] {
	case "permit":
		r.Permit = true
	case "deny":
	default:
		return Rule{}, fmt.Errorf("unknown action %q (want permit or deny)", f[1])
	}
	dst, ports, hasPorts := f[2], "", false
	if strings.Count(dst, ":") == 1 { // more would be IPv6: refused below
		dst, ports, hasPorts = strings.Cut(dst, ":")
	}
	if r.Dst, err = parseRulePrefix(dst, false); err != nil {
		return Rule{}, fmt.Errorf("destination %q: %w", f[2], err)
	}
	if hasPorts {
		if r.PortLo, r.PortHi, err = ParsePortRange(ports); err != nil {
			return Rule{}, fmt.Errorf("destination %q: %w", f[2], err)
		}
	}
	if len(f) == 4 {
		if !r.Permit {
			return Rule{}, fmt.Errorf("bind address %q on a deny rule", f[3])
		}
		a, err := netip.ParseAddr(f[3])
		if err != nil || !a.Is4() {
			return Rule{}, fmt.Errorf("bind address %q: not an IPv4 address", f[3])
		}
		if isLocal != nil && !isLocal(a) {
			return Rule{}, fmt.Errorf("bind address %s: not an address of this router", a)
		}
		r.Bind = a
	}
	return r, nil
}

// ParsePortRange parses PORT or PORT-PORT, each 1 to 65535, as the access
// rules write a port (and `faithif flows --dest` takes one).
func ParsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("port range %d-%d is empty", lo, hi)
		}
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// parseRulePrefix parses an address or prefix of the given family; host
// bits must be zero.
func parseRulePrefix(s string, v6 bool) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, errors.New("not an address or prefix")
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, errors.New("not an address or prefix")
		}
		if a.Zone() != "" {
			return p, errors.New("zones are not allowed")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if v6 && (!p.Addr().Is6() || p.Addr().Is4In6()) {
		return p, errors.New("not an IPv6 address or prefix")
	}
	if !v6 && !p.Addr().Is4() {
		return p, errors.New("not an IPv4 address or prefix")
	}
	if p.Masked() != p {
		return p, fmt.Errorf("host bits are set (did you mean %s?)", p.Masked())
	}
	return p, nil
}
