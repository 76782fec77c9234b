package relay

import (
	"errors"
	"net/netip"
)

// ErrRouterAddress means a flow's IPv4 destination is one the router's
// kernel delivers locally (one of its addresses, or inside a local route
// such as AnyIP's), which is never relayed to.
var ErrRouterAddress = errors.New("destination is an address of this router (assigned, or in a local route)")

// Policy decides, before any dial, whether a flow may be relayed: the
// mapping with its always-refused destinations, the router's own
// addresses, and the access rules. The relay asks it for every flow, and
// `faithif rules test` asks it to explain one.
type Policy struct {
	Mapper *Mapper
	// Rules are the access rules; nil (no access file): everything
	// mappable is permitted. A Rules with no rule denies everything.
	Rules *Rules
	// IsLocal reports whether the router delivers an IPv4 address
	// locally; nil: none is.
	IsLocal func(netip.Addr) bool
}

// Verdict is a Policy's answer for one flow.
type Verdict struct {
	// To is the IPv4 destination, when the IPv6 destination holds one.
	To netip.AddrPort
	// Refused says why the flow is refused whatever the rules say: the
	// destination does not map, is always refused, or is the router's
	// (ErrRouterAddress). Nil when the rules decide.
	Refused error
	// Permit and Rule are the access rules' decision; Rule is nil when
	// there is no access file or no rule matched.
	Permit bool
	Rule   *Rule
}

// Check decides a flow from client src to the FAITH address dst.
func (p Policy) Check(src netip.Addr, dst netip.AddrPort) Verdict {
	var v Verdict
	v4, err := p.Mapper.Map(dst.Addr())
	if v4.IsValid() {
		v.To = netip.AddrPortFrom(v4, dst.Port())
	}
	switch {
	case err != nil:
		v.Refused = err
	case p.IsLocal != nil && p.IsLocal(v4):
		v.Refused = ErrRouterAddress
	default:
		d := p.Rules.Check(src, v.To)
		v.Permit, v.Rule = d.Permit, d.Rule
	}
	return v
}
