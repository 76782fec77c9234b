package dns64

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/faithif/faithif/relay"
)

// noSOATTL caps the TTL of a synthesized AAAA record when the negative
// AAAA answer carried no SOA (RFC 6147 5.1.7).
const noSOATTL = 600

// errCNAMELoop means an answer's CNAME chain leads back into itself.
var errCNAMELoop = errors.New("the CNAME chain loops")

// answer resolves req for client: what the answer's RCODE, AD bit and
// sections are (write makes the message), and how the query ended.
func (r *Responder) answer(client netip.Addr, req *dns.Msg) (*dns.Msg, result) {
	a, err := r.resolve(client, req)
	switch {
	case errors.Is(err, errOverloaded):
		return rcodeMsg(dns.RcodeServerFailure), resultOverloaded
	case err != nil:
		q := req.Question[0]
		r.log.Debug("dns64: no upstream answered", "name", q.Name, "type", dns.TypeToString[q.Qtype], "error", err.Error())
		return rcodeMsg(dns.RcodeServerFailure), resultServFail
	}
	return a, resultOf(a.Rcode)
}

// resolve is answer, with an error when no upstream answered.
func (r *Responder) resolve(client netip.Addr, req *dns.Msg) (*dns.Msg, error) {
	if req.Opcode != dns.OpcodeQuery {
		return rcodeMsg(dns.RcodeNotImplemented), nil
	}
	if len(req.Question) != 1 {
		return rcodeMsg(dns.RcodeFormatError), nil
	}
	opts := 0
	for _, rr := range req.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opts++
		}
	}
	if opts > 1 {
		return rcodeMsg(dns.RcodeFormatError), nil // RFC 6891 6.1.1
	}
	opt := req.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		return rcodeMsg(dns.RcodeBadVers), nil
	}
	q := req.Question[0]
	do := opt != nil && opt.Do()
	// The client understands AD if it set DO or AD (RFC 6840 5.7).
	wantAD := do || req.AuthenticatedData
	var (
		a   *dns.Msg
		err error
	)
	switch {
	case q.Qclass == dns.ClassINET && q.Qtype == dns.TypeAAAA && !req.CheckingDisabled:
		a, err = r.aaaa(client, q.Name, do)
	case q.Qclass == dns.ClassINET && q.Qtype == dns.TypePTR && !req.CheckingDisabled && r.ptrTarget(q.Name).IsValid():
		a, err = r.ptr(q.Name, r.ptrTarget(q.Name), do) // a full ip6.arpa name in a FAITH prefix
	default:
		// Everything else, and with CD set (RFC 6147 5.5: the client
		// validates, and synthesis would fail its validation), goes
		// through as the upstream answered.
		a, err = r.lookup(q.Name, q.Qtype, q.Qclass, do, req.CheckingDisabled)
	}
	if err != nil {
		return nil, err
	}
	a.AuthenticatedData = a.AuthenticatedData && wantAD
	return a, nil
}

// aaaa answers an AAAA query (RFC 6147 5.1): the name's AAAA records if it
// has usable ones, else AAAA records synthesized from its A records in
// r.cfg.Prefix, for the addresses the relay would let client reach.
// Synthesized answers never have AD set.
func (r *Responder) aaaa(client netip.Addr, name string, do bool) (*dns.Msg, error) {
	var neg *dns.Msg // the AAAA answer that led to synthesis
	if !r.cfg.SynthAll {
		m, err := r.lookup(name, dns.TypeAAAA, dns.ClassINET, do, false)
		if err != nil {
			return nil, err
		}
		switch m.Rcode {
		case dns.RcodeNameError:
			return m, nil // 5.1.2: returned as it is
		case dns.RcodeSuccess:
			names, err := chain(name, m.Answer)
			if err != nil {
				return nil, err
			}
			kept, n := r.usableAAAA(client, m.Answer, names)
			if n > 0 {
				// 5.1.3 and 5.1.4: the real ones, less those excluded.
				if len(kept) != len(m.Answer) {
					m.Answer, m.AuthenticatedData = kept, false
				}
				return m, nil
			}
			m.Answer, m.AuthenticatedData = kept, false
		}
		// 5.1.2: any other RCODE counts as an empty answer.
		neg = m
	}
	am, err := r.lookup(name, dns.TypeA, dns.ClassINET, do, false)
	if err != nil {
		if neg != nil {
			return neg, nil
		}
		return nil, err
	}
	names, err := chain(name, am.Answer)
	if err != nil {
		return nil, err
	}
	var ttlCap uint32 = maxCacheTTL
	if neg != nil {
		if t, ok := negativeTTL(neg); ok {
			ttlCap = t
		} else {
			ttlCap = noSOATTL
		}
	}
	out := &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: am.Rcode}, Ns: am.Ns}
	as, made := 0, 0
	for _, rr := range am.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if !names[strings.ToLower(rr.Hdr.Name)] {
				continue // not of this name: not believed
			}
			v4, ok := netip.AddrFromSlice(rr.A.To4())
			if !ok {
				continue // no address (an empty record): not an A record
			}
			as++
			aaaa := relay.Unmap(r.cfg.Prefix, v4)
			if !r.relays(client, aaaa, rr.Hdr.Name, v4) {
				continue
			}
			made++
			out.Answer = append(out.Answer, &dns.AAAA{
				Hdr:  dns.RR_Header{Name: rr.Hdr.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: min(rr.Hdr.Ttl, ttlCap)},
				AAAA: aaaa.AsSlice(),
			})
		case *dns.CNAME, *dns.DNAME:
			out.Answer = append(out.Answer, rr) // the chain
		case *dns.RRSIG:
			if rr.TypeCovered == dns.TypeCNAME || rr.TypeCovered == dns.TypeDNAME {
				out.Answer = append(out.Answer, rr) // the chain's, still valid
			}
		}
		// Anything else in an A answer is not the client's business.
	}
	switch {
	case made > 0:
		r.stats.synthesized[synthAAAA].Add(1)
		return out, nil
	case neg != nil && (as == 0 || neg.Rcode == dns.RcodeSuccess):
		// No A record (or an A lookup that failed): the AAAA answer
		// stands, as unbound and BIND have it. Every A record withheld:
		// the name has no AAAA, as the AAAA answer said.
		return neg, nil
	case as == 0:
		return out, nil // synthall: the A answer's RCODE and chain, no A record
	}
	// Every A record withheld, after an AAAA answer that was an error (or
	// none asked): the name exists and has no AAAA.
	out.Rcode, out.Ns = dns.RcodeSuccess, nil
	if neg != nil {
		out.Ns = soaOf(neg)
	}
	return out, nil
}

// usableAAAA returns the records of answer less the AAAA records that
// count as absent: in ::ffff:0:0/96 or an excluded range (RFC 6147 5.1.4),
// in a FAITH prefix at an address the relay would refuse client, or with
// no address at all; and
// how many AAAA records of the names are left. When a record is taken
// out, so are the signatures of AAAA records.
func (r *Responder) usableAAAA(client netip.Addr, answer []dns.RR, names map[string]bool) ([]dns.RR, int) {
	kept, n, dropped := answer[:0:0], 0, false
	for _, rr := range answer {
		a, ok := rr.(*dns.AAAA)
		if !ok {
			kept = append(kept, rr)
			continue
		}
		addr, ok := netip.AddrFromSlice(a.AAAA)
		if !ok || !addr.Is6() || r.excluded(addr) || !r.relaysReal(client, addr, a.Hdr.Name) {
			dropped = true
			continue
		}
		kept = append(kept, rr)
		if names[strings.ToLower(a.Hdr.Name)] {
			n++
		}
	}
	if dropped {
		sigs := kept[:0]
		for _, rr := range kept {
			if s, ok := rr.(*dns.RRSIG); !ok || s.TypeCovered != dns.TypeAAAA {
				sigs = append(sigs, rr)
			}
		}
		kept = sigs
	}
	return kept, n
}

// excluded reports whether an AAAA record's address counts as absent.
func (r *Responder) excluded(a netip.Addr) bool {
	if MappedPrefix.Contains(a) {
		return true
	}
	for _, p := range r.cfg.Exclude {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// relays reports whether the relay would let client reach the FAITH
// address aaaa on some port, asking the relay's own policy; if not, it
// counts and logs why (at debug level) and the record is withheld.
func (r *Responder) relays(client, aaaa netip.Addr, name string, a netip.Addr) bool {
	v := r.opts.Policy().CheckAnyPort(client, aaaa)
	if v.Permit {
		return true
	}
	reason, why := reasonOf(v)
	r.stats.suppressed[reason].Add(1)
	if r.log.Enabled(r.ctx, slog.LevelDebug) { // no line built above debug level
		args := []any{"name", name, "aaaa", aaaa.String(), "client", client.String(), "reason", reason.String(), "why", why}
		if a.IsValid() {
			args = append(args, "a", a.String())
		}
		r.log.Debug("dns64: AAAA withheld: the relay would refuse it", args...)
	}
	return false
}

// relaysReal is relays for a real AAAA record: one outside every FAITH
// prefix is not the relay's business.
func (r *Responder) relaysReal(client, aaaa netip.Addr, name string) bool {
	if _, err := r.opts.Policy().Mapper.Map(aaaa); errors.Is(err, relay.ErrNoPrefix) {
		return true
	}
	return r.relays(client, aaaa, name, netip.Addr{})
}

// reasonOf says why a verdict refuses every port.
func reasonOf(v relay.Verdict) (Reason, string) {
	switch {
	case v.Refused == nil:
		why := "no access rule permits any port"
		if v.Rule != nil {
			why = fmt.Sprintf("denied by the access rule at line %d: %s", v.Rule.Line, v.Rule)
		}
		return ReasonAccessRules, why
	case errors.Is(v.Refused, relay.ErrForbiddenDestination):
		return ReasonAlwaysRefused, v.Refused.Error()
	case errors.Is(v.Refused, relay.ErrNotGlobal):
		return ReasonNotGlobal, v.Refused.Error()
	case errors.Is(v.Refused, relay.ErrRouterAddress):
		return ReasonRouterAddress, v.Refused.Error()
	}
	return ReasonNotMappable, v.Refused.Error()
}

// chain returns the names of the CNAME chain that starts at name in
// answer, name included, in lower case: as long as the answer has it (it
// cannot be longer than the answer), or errCNAMELoop if it comes back to a
// name of its own.
func chain(name string, answer []dns.RR) (map[string]bool, error) {
	cnames := make(map[string]string)
	for _, rr := range answer {
		if c, ok := rr.(*dns.CNAME); ok {
			if n := strings.ToLower(c.Hdr.Name); cnames[n] == "" {
				cnames[n] = strings.ToLower(c.Target)
			}
		}
	}
	cur := strings.ToLower(dns.Fqdn(name))
	names := map[string]bool{cur: true}
	for {
		next, ok := cnames[cur]
		if !ok {
			return names, nil
		}
		if names[next] {
			return nil, fmt.Errorf("%s: %w at %s", name, errCNAMELoop, next)
		}
		names[next] = true
		cur = next
	}
}

// soaOf returns the SOA records of an answer's authority section.
func soaOf(m *dns.Msg) []dns.RR {
	var out []dns.RR
	for _, rr := range m.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			out = append(out, rr)
		}
	}
	return out
}

// ptrTarget returns the IPv4 address embedded in a full ip6.arpa name
// under one of the relay's FAITH prefixes, or the zero Addr.
func (r *Responder) ptrTarget(name string) netip.Addr {
	a, ok := parseIP6Arpa(name)
	if !ok {
		return netip.Addr{}
	}
	v4, _ := r.opts.Policy().Mapper.Map(a) // valid whenever it is in a prefix and the u-octet is 0
	return v4
}

// ptr answers a PTR query for the ip6.arpa name of a FAITH address with a
// CNAME to the in-addr.arpa name of the IPv4 address in it, followed by
// what the upstream has for that name (RFC 6147 5.3.1).
func (r *Responder) ptr(name string, v4 netip.Addr, do bool) (*dns.Msg, error) {
	b := v4.As4()
	target := fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa.", b[3], b[2], b[1], b[0])
	m, err := r.lookup(target, dns.TypePTR, dns.ClassINET, do, false)
	if err != nil {
		return nil, err
	}
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return m, nil
	}
	ttl := uint32(noSOATTL)
	if len(m.Answer) > 0 {
		ttl = min(ttl, m.Answer[0].Header().Ttl)
	} else if t, ok := negativeTTL(m); ok {
		ttl = min(ttl, t)
	}
	cname := &dns.CNAME{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: target}
	m.Answer = append([]dns.RR{cname}, m.Answer...)
	m.AuthenticatedData = false
	r.stats.synthesized[synthPTR].Add(1)
	return m, nil
}

// parseIP6Arpa returns the address of a full ip6.arpa name (32 nibble
// labels).
func parseIP6Arpa(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(strings.ToLower(dns.Fqdn(name)), ".ip6.arpa.")
	if !ok || len(rest) != 63 {
		return netip.Addr{}, false
	}
	var a [16]byte
	for i := range 32 {
		if i < 31 && rest[2*i+1] != '.' {
			return netip.Addr{}, false
		}
		c := rest[2*i]
		var nib byte
		switch {
		case c >= '0' && c <= '9':
			nib = c - '0'
		case c >= 'a' && c <= 'f':
			nib = c - 'a' + 10
		default:
			return netip.Addr{}, false
		}
		pos := 31 - i // the name starts with the last nibble
		if pos%2 == 0 {
			a[pos/2] |= nib << 4
		} else {
			a[pos/2] |= nib
		}
	}
	return netip.AddrFrom16(a), true
}
