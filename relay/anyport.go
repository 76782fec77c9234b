package relay

import (
	"net/netip"
	"slices"
)

// Policy returns the policy the relay decides new flows with: its Mapper,
// the access rules in force now and its IsLocal. A later SetRules is not
// seen by the returned value; ask again for each decision.
func (r *Relay) Policy() Policy {
	return Policy{Mapper: r.cfg.Mapper, Rules: r.rules.Load(), IsLocal: r.cfg.IsLocal}
}

// CheckAnyPort decides whether a flow from client src to the FAITH address
// dst would be relayed to some destination port: the Verdict of the first
// port that Check permits, or, if none does, one that shows why (Refused
// when the destination is refused whatever the port, else the deny of the
// lowest port). The DNS64 responder asks it before handing a client an
// address (package faithif/dns64).
//
// It decides with Check itself, at one port of each range over which the
// rules' answer cannot change: the access rules match ports by ranges, so
// between two consecutive range bounds (a rule's first port, or the port
// after its last) every port matches the same rules in the same order.
func (p Policy) CheckAnyPort(src, dst netip.Addr) Verdict {
	ports := []uint16{1}
	if p.Rules != nil {
		for i := range p.Rules.Rules {
			r := &p.Rules.Rules[i]
			if r.PortHi == 0 {
				continue // every port
			}
			ports = append(ports, r.PortLo)
			if r.PortHi < 65535 {
				ports = append(ports, r.PortHi+1)
			}
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	var first Verdict
	for i, port := range ports {
		v := p.Check(src, netip.AddrPortFrom(dst, port))
		if v.Refused != nil || v.Permit {
			return v
		}
		if i == 0 {
			first = v
		}
	}
	return first
}
