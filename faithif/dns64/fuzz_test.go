package dns64

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/faithif/faithif/relay"
)

// FuzzUpstreamAnswer: whatever an upstream answers (any message, given as
// the answer to both the AAAA and the A question of a name), the responder
// neither panics nor hands out an address outside its prefix or one the
// relay refuses, and its answer can be sent.
func FuzzUpstreamAnswer(f *testing.F) {
	seed := func(text ...string) []byte {
		m := new(dns.Msg)
		m.SetQuestion("x.example.", dns.TypeA)
		m.Response = true
		for _, s := range text {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			if rr.Header().Rrtype == dns.TypeSOA {
				m.Ns = append(m.Ns, rr)
			} else {
				m.Answer = append(m.Answer, rr)
			}
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed("x.example. 300 IN A 198.51.100.10", "x.example. 300 IN A 127.0.0.1"))
	f.Add(seed("x.example. 300 IN CNAME y.example.", "y.example. 300 IN CNAME x.example.", "y.example. 300 IN A 198.51.100.1"))
	f.Add(seed("x.example. 300 IN AAAA ::ffff:1.2.3.4", "x.example. 300 IN AAAA 2001:db8:46::7f00:1", "x.example. 300 IN A 192.0.2.1"))
	f.Add(seed("example. 300 IN SOA a. b. 1 2 3 4 5"))
	prefix := netip.MustParsePrefix("2001:db8:46::/96")
	mapper, _ := relay.NewMapper(prefix)
	rules, _ := relay.ParseRules("f", strings.NewReader("::1 deny 198.51.100.1\n::/0 permit 0.0.0.0/0\n"), nil)
	policy := relay.Policy{Mapper: mapper, Rules: rules, IsLocal: func(a netip.Addr) bool { return a == routerAddr }}
	now := time.Unix(1_700_000_000, 0)
	client := netip.MustParseAddr("::1")
	f.Fuzz(func(t *testing.T, data []byte) {
		up := new(dns.Msg)
		if up.Unpack(data) != nil {
			return
		}
		name := "x.example."
		if len(up.Question) > 0 && dns.IsFqdn(up.Question[0].Name) {
			name = up.Question[0].Name
		}
		for _, synthAll := range []bool{false, true} {
			r, err := New(Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("[::1]:53")}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")},
				Prefix: prefix, CacheSize: 8, SynthAll: synthAll}, Options{Policy: func() relay.Policy { return policy }, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			for _, qt := range []uint16{dns.TypeAAAA, dns.TypeA} {
				k := cacheKey{name: strings.ToLower(name), qtype: qt, qclass: dns.ClassINET}
				r.cache.l.Add(k, cacheEntry{msg: up, stored: now, ttl: 60}) // as put would, whatever the TTLs say
			}
			q := new(dns.Msg)
			q.SetQuestion(name, dns.TypeAAAA)
			a, _ := r.answer(client, q)
			w := &fakeWriter{remote: udpFrom("::1")}
			r.write(w, q, a, false)
			if len(w.msgs) != 1 {
				t.Fatal("no answer written")
			}
			if _, err := w.msgs[0].Pack(); err != nil {
				t.Fatalf("the answer cannot be sent: %v", err)
			}
			for _, rr := range a.Answer {
				aaaa, ok := rr.(*dns.AAAA)
				if !ok {
					continue
				}
				addr, _ := netip.AddrFromSlice(aaaa.AAAA)
				if prefix.Contains(addr) && !policy.CheckAnyPort(client, addr).Permit {
					t.Fatalf("handed out %s, which the relay refuses", addr)
				}
				if r.excluded(addr) {
					t.Fatalf("handed out %s, an excluded address", addr)
				}
			}
			r.Close()
		}
	})
}

// FuzzQuery: whatever a client sends (any message the DNS library reads;
// the server in front drops answers before ServeDNS), the responder
// answers it with one message that can be sent. Its upstream is a closed
// port: every lookup fails at once.
func FuzzQuery(f *testing.F) {
	for _, q := range []*dns.Msg{question("x.example.", dns.TypeAAAA), question("x.example.", dns.TypePTR), question("a.4.6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.4.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", dns.TypePTR)} {
		q.SetEdns0(4096, true)
		b, _ := q.Pack()
		f.Add(b)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	closed := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	prefix := netip.MustParsePrefix("2001:db8:46::/96")
	mapper, _ := relay.NewMapper(prefix)
	policy := relay.Policy{Mapper: mapper}
	r, err := New(Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("[::1]:53")}, Upstreams: []netip.AddrPort{closed},
		Prefix: prefix, Allow: []netip.Prefix{netip.MustParsePrefix("::1/128")}, Timeout: time.Second}, Options{Policy: func() relay.Policy { return policy }})
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		q := new(dns.Msg)
		if q.Unpack(data) != nil {
			return
		}
		w := &fakeWriter{remote: udpFrom("::1")}
		r.ServeDNS(w, q)
		if len(w.msgs) != 1 {
			t.Fatalf("%d answers to %v", len(w.msgs), q)
		}
		if _, err := w.msgs[0].Pack(); err != nil {
			t.Fatalf("the answer cannot be sent: %v\n%v", err, w.msgs[0])
		}
	})
}
