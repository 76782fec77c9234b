package dns64

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/test/dnstest"
)

// The test zones: dns64.test (negative TTL 3600, above every A record's
// TTL), neg.test (negative TTL 30), and reverse names for PTR.
const testZone = `
dns64.test.            3600 IN SOA ns.dns64.test. host.dns64.test. 1 3600 600 86400 3600
a-only.dns64.test.      300 IN A 198.51.100.10
aaaa-only.dns64.test.   300 IN AAAA 2001:db8:99::10
both.dns64.test.        300 IN A 198.51.100.11
both.dns64.test.        300 IN AAAA 2001:db8:99::11
cname.dns64.test.       300 IN CNAME cname2.dns64.test.
cname2.dns64.test.      300 IN CNAME a-only.dns64.test.
cname-aaaa.dns64.test.  300 IN CNAME aaaa-only.dns64.test.
cname-nx.dns64.test.    300 IN CNAME nx.dns64.test.
empty.dns64.test.       300 IN TXT "no address"
mapped.dns64.test.      300 IN AAAA ::ffff:198.51.100.12
mapped.dns64.test.      300 IN A 198.51.100.12
excluded.dns64.test.    300 IN AAAA 2001:db8:bad::13
excluded.dns64.test.    300 IN A 198.51.100.13
half-excluded.dns64.test. 300 IN AAAA 2001:db8:bad::14
half-excluded.dns64.test. 300 IN AAAA 2001:db8:99::14
half-excluded.dns64.test. 300 IN A 198.51.100.14
loopback.dns64.test.    300 IN A 127.0.0.1
router.dns64.test.      300 IN A 192.0.2.1
two-a.dns64.test.       300 IN A 127.0.0.1
two-a.dns64.test.       300 IN A 198.51.100.15
denied.dns64.test.      300 IN A 203.0.113.16
port80.dns64.test.      300 IN A 192.0.2.2
faith-aaaa.dns64.test.  300 IN AAAA 2001:db8:46::7f00:1
faith-aaaa.dns64.test.  300 IN A 198.51.100.17
mx.dns64.test.          300 IN MX 10 a-only.dns64.test.
low-ttl.dns64.test.      20 IN A 198.51.100.18
neg.test.              3600 IN SOA ns.neg.test. host.neg.test. 1 3600 600 86400 30
short.neg.test.         300 IN A 198.51.100.19
10.100.51.198.in-addr.arpa. 300 IN PTR a-only.dns64.test.
100.51.198.in-addr.arpa. 3600 IN SOA ns.dns64.test. host.dns64.test. 1 3600 600 86400 3600
`

// bigZone has a name with 100 A records, more than 1232 bytes, and more
// AAAA records.
func bigZone() string {
	var b strings.Builder
	b.WriteString(testZone)
	for i := range 100 {
		fmt.Fprintf(&b, "big.dns64.test. 300 IN A 198.51.100.%d\n", 100+i)
	}
	return b.String()
}

var (
	testPrefix = netip.MustParsePrefix("2001:db8:46::/96")
	routerAddr = netip.MustParseAddr("192.0.2.1")
)

// testRules: the client ::1 may reach 198.51.100.0/24 and 192.0.2.2 on
// port 80 only; 203.0.113.0/24 matches no rule, so it is denied.
const testRules = `
::1 permit 198.51.100.0/24
::1 permit 192.0.2.2:80
`

// env is a responder on [::1] with its upstream.
type env struct {
	r    *Responder
	up   *dnstest.Server
	addr string // the responder's, for dns.Client
	ups  []string
	mu   sync.Mutex
	obs  []string // "UPSTREAM RESULT" per upstream query
}

type envOpts struct {
	zone     string
	cfg      func(*Config)
	rules    string
	prefixes []netip.Prefix
	now      func() time.Time
	extra    []netip.AddrPort // upstreams before the zone's
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	if o.zone == "" {
		o.zone = testZone
	}
	if o.rules == "" {
		o.rules = testRules
	}
	if o.prefixes == nil {
		o.prefixes = []netip.Prefix{testPrefix}
	}
	e := &env{up: dnstest.Start(t, dnstest.MustParseZone(o.zone), "127.0.0.1")}
	m, err := relay.NewMapper(o.prefixes...)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := relay.ParseRules("test.rules", strings.NewReader(o.rules), nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := relay.Policy{Mapper: m, Rules: rules, IsLocal: func(a netip.Addr) bool { return a == routerAddr }}
	cfg := Config{
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("[::1]:0")},
		Upstreams: append(o.extra, e.up.Addr),
		Prefix:    o.prefixes[0],
		Allow:     []netip.Prefix{netip.MustParsePrefix("::1/128")},
		CacheSize: DefaultCacheSize,
		Timeout:   time.Second,
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.r, err = New(cfg, Options{
		Policy: func() relay.Policy { return policy },
		Now:    o.now,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		ObserveUpstream: func(u string, _ time.Duration, result string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.obs = append(e.obs, u+" "+result)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.r.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.r.Close)
	if err := e.r.Serve(); err != nil {
		t.Fatal(err)
	}
	e.addr = e.r.Addrs()[0]
	return e
}

// query asks the responder over net ("udp" or "tcp"); set adjusts the
// query first.
func (e *env) query(t *testing.T, name string, qtype uint16, network string, set func(*dns.Msg)) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if set != nil {
		set(q)
	}
	c := &dns.Client{Net: network, Timeout: 10 * time.Second} // a hang guard
	m, _, err := c.Exchange(q, e.addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return m
}

func (e *env) aaaa(t *testing.T, name string) *dns.Msg {
	t.Helper()
	return e.query(t, name, dns.TypeAAAA, "udp", nil)
}

// records renders an answer section as sorted "NAME TTL TYPE DATA" lines.
func records(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		data := strings.TrimPrefix(rr.String(), h.String())
		out = append(out, fmt.Sprintf("%s %d %s %s", strings.ToLower(h.Name), h.Ttl, dns.TypeToString[h.Rrtype], data))
	}
	sort.Strings(out)
	return out
}

func withEDNS(do bool) func(*dns.Msg) {
	return func(m *dns.Msg) { m.SetEdns0(4096, do) }
}

// TestSynthesis: RFC 6147's rules, name by name, and the relay's own rules
// deciding which A records become AAAA records.
func TestSynthesis(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) {
		c.Exclude = []netip.Prefix{netip.MustParsePrefix("2001:db8:bad::/48")}
	}})
	for _, tc := range []struct {
		name  string
		rcode int
		want  []string
		soa   bool // a SOA in the authority section
	}{
		// A only: synthesized, with the A record's TTL (below the SOA's 3600).
		{"a-only.dns64.test.", dns.RcodeSuccess, []string{"a-only.dns64.test. 300 AAAA 2001:db8:46::c633:640a"}, false},
		// Real AAAA records are returned unchanged, with or without A.
		{"aaaa-only.dns64.test.", dns.RcodeSuccess, []string{"aaaa-only.dns64.test. 300 AAAA 2001:db8:99::10"}, false},
		{"both.dns64.test.", dns.RcodeSuccess, []string{"both.dns64.test. 300 AAAA 2001:db8:99::11"}, false},
		// A CNAME chain to a name with only A: the chain, then the synthesized record.
		{"cname.dns64.test.", dns.RcodeSuccess, []string{
			"a-only.dns64.test. 300 AAAA 2001:db8:46::c633:640a",
			"cname.dns64.test. 300 CNAME cname2.dns64.test.",
			"cname2.dns64.test. 300 CNAME a-only.dns64.test.",
		}, false},
		{"cname-aaaa.dns64.test.", dns.RcodeSuccess, []string{
			"aaaa-only.dns64.test. 300 AAAA 2001:db8:99::10",
			"cname-aaaa.dns64.test. 300 CNAME aaaa-only.dns64.test.",
		}, false},
		// NXDOMAIN, at once or at the end of a chain: returned as it is.
		{"nx.dns64.test.", dns.RcodeNameError, nil, true},
		{"cname-nx.dns64.test.", dns.RcodeNameError, []string{"cname-nx.dns64.test. 300 CNAME nx.dns64.test."}, true},
		// No AAAA and no A: the empty NOERROR answer with its SOA.
		{"empty.dns64.test.", dns.RcodeSuccess, nil, true},
		// AAAA records in ::ffff:0:0/96, or in an excluded range, count as absent.
		{"mapped.dns64.test.", dns.RcodeSuccess, []string{"mapped.dns64.test. 300 AAAA 2001:db8:46::c633:640c"}, false},
		{"excluded.dns64.test.", dns.RcodeSuccess, []string{"excluded.dns64.test. 300 AAAA 2001:db8:46::c633:640d"}, false},
		{"half-excluded.dns64.test.", dns.RcodeSuccess, []string{"half-excluded.dns64.test. 300 AAAA 2001:db8:99::14"}, false},
		// The relay would refuse these: no AAAA at all, the AAAA answer stands.
		{"loopback.dns64.test.", dns.RcodeSuccess, nil, true},
		{"router.dns64.test.", dns.RcodeSuccess, nil, true},
		{"denied.dns64.test.", dns.RcodeSuccess, nil, true},
		// One of two A records refused: the other synthesized.
		{"two-a.dns64.test.", dns.RcodeSuccess, []string{"two-a.dns64.test. 300 AAAA 2001:db8:46::c633:640f"}, false},
		// Permitted on port 80 only: some port is enough.
		{"port80.dns64.test.", dns.RcodeSuccess, []string{"port80.dns64.test. 300 AAAA 2001:db8:46::c000:202"}, false},
		// A real AAAA in the FAITH prefix that the relay refuses (127.0.0.1)
		// counts as absent: synthesized from the A record instead.
		{"faith-aaaa.dns64.test.", dns.RcodeSuccess, []string{"faith-aaaa.dns64.test. 300 AAAA 2001:db8:46::c633:6411"}, false},
		// The SOA's negative TTL (30) is below the A record's (300).
		{"short.neg.test.", dns.RcodeSuccess, []string{"short.neg.test. 30 AAAA 2001:db8:46::c633:6413"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := e.aaaa(t, tc.name)
			if m.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
			if got := records(m.Answer); !slices.Equal(got, tc.want) {
				t.Errorf("answer\n%q\nwant\n%q", got, tc.want)
			}
			hasSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != tc.soa {
				t.Errorf("authority %v, want a SOA: %v", m.Ns, tc.soa)
			}
			if m.AuthenticatedData || !m.RecursionAvailable || !m.Response || m.Authoritative {
				t.Errorf("flags: AD %v RA %v QR %v AA %v", m.AuthenticatedData, m.RecursionAvailable, m.Response, m.Authoritative)
			}
		})
	}
	c := e.r.Counters()
	// always_refused: loopback, two-a's 127.0.0.1, faith-aaaa's real AAAA.
	want := map[string]uint64{"always_refused": 3, "router_address": 1, "access_rules": 1, "not_global": 0, "not_mappable": 0}
	if !mapsEqual(c.DNS64Suppressed, want) {
		t.Errorf("suppressed %v, want %v", c.DNS64Suppressed, want)
	}
	if c.DNS64Synthesized["aaaa"] != 8 || c.DNS64Queries["aaaa"] != 18 || c.DNS64Results["noerror"] != 16 || c.DNS64Results["nxdomain"] != 2 {
		t.Errorf("counters %+v", c)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestWellKnownPrefixNotGlobal: under 64:ff9b::/96 a documentation address
// is not global (RFC 6052 3.1), so the relay refuses it and it is not
// synthesized.
func TestWellKnownPrefixNotGlobal(t *testing.T) {
	e := newEnv(t, envOpts{prefixes: []netip.Prefix{relay.WellKnownPrefix}})
	m := e.aaaa(t, "a-only.dns64.test.")
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Errorf("answer %v, want none", m.Answer)
	}
	if n := e.r.Counters().DNS64Suppressed["not_global"]; n != 1 {
		t.Errorf("suppressed not_global %d, want 1", n)
	}
}

// TestSynthAll: every name gets the synthesized records, real AAAA or not.
func TestSynthAll(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.SynthAll = true }})
	for name, want := range map[string][]string{
		"both.dns64.test.":      {"both.dns64.test. 300 AAAA 2001:db8:46::c633:640b"},
		"aaaa-only.dns64.test.": nil,
		"nx.dns64.test.":        nil,
	} {
		m := e.aaaa(t, name)
		if got := records(m.Answer); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if n := e.up.Count("both.dns64.test.", dns.TypeAAAA, ""); n != 0 {
		t.Errorf("synthall asked the upstream for AAAA %d times", n)
	}
	if m := e.aaaa(t, "nx.dns64.test."); m.Rcode != dns.RcodeNameError {
		t.Errorf("nx: %s", dns.RcodeToString[m.Rcode])
	}
}

// TestDNSSECBits: CD passes the upstream's answer through unsynthesized;
// a synthesized answer never has AD, nor the A records' signatures; a
// passed-through one has the upstream's AD for a client that asked for it.
func TestDNSSECBits(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, set := range []func(*dns.Msg){
		func(m *dns.Msg) { m.CheckingDisabled = true },
		func(m *dns.Msg) { m.CheckingDisabled = true; m.SetEdns0(4096, true) },
	} {
		m := e.query(t, "a-only.dns64.test.", dns.TypeAAAA, "udp", set)
		if len(m.Answer) != 0 || m.Rcode != dns.RcodeSuccess || !m.CheckingDisabled {
			t.Errorf("CD: %v, want the upstream's empty answer, CD echoed", m)
		}
	}
	m := e.query(t, "cname.dns64.test.", dns.TypeAAAA, "udp", withEDNS(true))
	var types []string
	for _, rr := range m.Answer {
		s := dns.TypeToString[rr.Header().Rrtype]
		if sig, ok := rr.(*dns.RRSIG); ok {
			s += "(" + dns.TypeToString[sig.TypeCovered] + ")"
		}
		types = append(types, s)
	}
	if want := []string{"CNAME", "RRSIG(CNAME)", "CNAME", "RRSIG(CNAME)", "AAAA"}; !slices.Equal(types, want) {
		t.Errorf("DO: answer %v, want %v", types, want)
	}
	if m.AuthenticatedData {
		t.Error("a synthesized answer has AD set")
	}
	if opt := m.IsEdns0(); opt == nil || !opt.Do() {
		t.Errorf("DO not echoed: %v", opt)
	}
	// Passed through: AD as the upstream said, to a client that asked (DO
	// or AD), not to one that did not.
	if m := e.query(t, "a-only.dns64.test.", dns.TypeA, "udp", withEDNS(true)); !m.AuthenticatedData {
		t.Error("A with DO: AD not passed on")
	}
	if m := e.query(t, "aaaa-only.dns64.test.", dns.TypeAAAA, "udp", withEDNS(true)); !m.AuthenticatedData || len(m.Answer) != 2 {
		t.Errorf("real AAAA with DO: AD %v, answer %v", m.AuthenticatedData, m.Answer)
	}
	if m := e.query(t, "a-only.dns64.test.", dns.TypeA, "udp", func(m *dns.Msg) { m.AuthenticatedData = true }); m.AuthenticatedData {
		t.Error("the upstream was asked without DO, yet AD")
	}
}

// TestPassThrough: A and every other type go through unchanged.
func TestPassThrough(t *testing.T) {
	e := newEnv(t, envOpts{})
	if m := e.query(t, "loopback.dns64.test.", dns.TypeA, "udp", nil); !slices.Equal(records(m.Answer), []string{"loopback.dns64.test. 300 A 127.0.0.1"}) {
		t.Errorf("A: %v", m.Answer)
	}
	if m := e.query(t, "mx.dns64.test.", dns.TypeMX, "tcp", nil); !slices.Equal(records(m.Answer), []string{"mx.dns64.test. 300 MX 10 a-only.dns64.test."}) {
		t.Errorf("MX: %v", m.Answer)
	}
	if m := e.query(t, "other.example.", dns.TypeA, "udp", nil); m.Rcode != dns.RcodeRefused {
		t.Errorf("the upstream's REFUSED: %s", dns.RcodeToString[m.Rcode])
	}
	if c := e.r.Counters(); c.DNS64Queries["a"] != 2 || c.DNS64Queries["other"] != 1 || c.DNS64Results["refused"] != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestPTR: an ip6.arpa name under the FAITH prefix is a CNAME to the
// in-addr.arpa name of the address in it; any other goes through.
func TestPTR(t *testing.T) {
	e := newEnv(t, envOpts{})
	name, _ := dns.ReverseAddr("2001:db8:46::c633:640a")
	m := e.query(t, name, dns.TypePTR, "udp", nil)
	want := []string{
		"10.100.51.198.in-addr.arpa. 300 PTR a-only.dns64.test.",
		name + " 300 CNAME 10.100.51.198.in-addr.arpa.",
	}
	if got := records(m.Answer); m.Rcode != dns.RcodeSuccess || !slices.Equal(got, want) {
		t.Errorf("PTR %s: %s %q, want %q", name, dns.RcodeToString[m.Rcode], got, want)
	}
	// No PTR for the IPv4 address: NXDOMAIN after the CNAME.
	name2, _ := dns.ReverseAddr("2001:db8:46::c633:6463")
	m = e.query(t, name2, dns.TypePTR, "udp", nil)
	if got := records(m.Answer); m.Rcode != dns.RcodeNameError || len(got) != 1 || m.Answer[0].Header().Ttl != 600 {
		t.Errorf("PTR %s: %s %q, want NXDOMAIN after the CNAME", name2, dns.RcodeToString[m.Rcode], got)
	}
	// Outside the prefix, or not a full name: the upstream's answer.
	name3, _ := dns.ReverseAddr("2001:db8:47::c633:640a")
	for _, n := range []string{name3, "6.4.0.0.8.b.d.0.1.0.0.2.ip6.arpa."} {
		m = e.query(t, n, dns.TypePTR, "udp", nil)
		if m.Rcode != dns.RcodeRefused || e.up.Count(n, dns.TypePTR, "") != 1 {
			t.Errorf("PTR %s: %s, asked %d times; want the upstream's REFUSED", n, dns.RcodeToString[m.Rcode], e.up.Count(n, dns.TypePTR, ""))
		}
	}
	if n := e.r.Counters().DNS64Synthesized["ptr"]; n != 2 {
		t.Errorf("synthesized ptr %d, want 2", n)
	}
}

// TestTruncation: a truncated upstream answer is asked again over TCP; a
// client gets at most 512 bytes over UDP without EDNS0 and at most 1232
// with, TC set beyond, and everything over TCP.
func TestTruncation(t *testing.T) {
	e := newEnv(t, envOpts{zone: bigZone()})
	m := e.query(t, "big.dns64.test.", dns.TypeAAAA, "udp", nil)
	if !m.Truncated || m.IsEdns0() != nil || wireLen(m) > 512 {
		t.Errorf("UDP without EDNS0: TC %v, OPT %v, %d bytes", m.Truncated, m.IsEdns0(), wireLen(m))
	}
	if udp, tcp := e.up.Count("big.dns64.test.", dns.TypeA, "udp"), e.up.Count("big.dns64.test.", dns.TypeA, "tcp"); udp != 1 || tcp != 1 {
		t.Errorf("upstream asked A over UDP %d, TCP %d times; want 1 and 1 (truncated, then TCP)", udp, tcp)
	}
	m = e.query(t, "big.dns64.test.", dns.TypeAAAA, "udp", withEDNS(false))
	opt := m.IsEdns0()
	if !m.Truncated || opt == nil || opt.UDPSize() != ednsSize || wireLen(m) > ednsSize || len(m.Answer) == 0 {
		t.Errorf("UDP with EDNS0 4096: TC %v, OPT %v, %d bytes, %d records; want TC, OPT 1232, at most 1232 bytes", m.Truncated, opt, wireLen(m), len(m.Answer))
	}
	m = e.query(t, "big.dns64.test.", dns.TypeAAAA, "tcp", nil)
	if m.Truncated || len(m.Answer) != 100 {
		t.Errorf("TCP: TC %v, %d records, want 100", m.Truncated, len(m.Answer))
	}
	// A query with EDNS0 version 1: BADVERS, with an OPT record.
	m = e.query(t, "a-only.dns64.test.", dns.TypeAAAA, "udp", func(m *dns.Msg) { m.SetEdns0(4096, false); m.IsEdns0().SetVersion(1) })
	if m.Rcode != dns.RcodeBadVers || m.IsEdns0() == nil {
		t.Errorf("EDNS version 1: %s, OPT %v", dns.RcodeToString[m.Rcode], m.IsEdns0())
	}
}

// wireLen is the size of m as sent, compressed.
func wireLen(m *dns.Msg) int {
	m.Compress = true
	return m.Len()
}

// silentUDP returns a UDP address that reads queries and never answers,
// and the count of what it read.
func silentUDP(t *testing.T) (netip.AddrPort, func() int) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// closedUDP returns a UDP address nothing listens on: a query there is
// answered by an ICMP port unreachable.
func closedUDP(t *testing.T) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return ap
}

// TestFailover: an upstream that refuses the connection, one that does
// not answer within the timeout, one that answers SERVFAIL: each is
// passed over for the next; when none answers, SERVFAIL.
func TestFailover(t *testing.T) {
	closed := closedUDP(t)
	silent, heard := silentUDP(t)
	e := newEnv(t, envOpts{extra: []netip.AddrPort{closed, silent}, cfg: func(c *Config) { c.Timeout = 200 * time.Millisecond }})
	m := e.aaaa(t, "a-only.dns64.test.")
	if !slices.Equal(records(m.Answer), []string{"a-only.dns64.test. 300 AAAA 2001:db8:46::c633:640a"}) {
		t.Fatalf("answer %v", m.Answer)
	}
	if heard() != 1 { // AAAA; the A query went to the one that answered
		t.Errorf("the silent upstream heard %d queries, want 1", heard())
	}
	e.mu.Lock()
	obs := slices.Clone(e.obs)
	e.mu.Unlock()
	want := []string{closed.String() + " failed", silent.String() + " timeout", e.up.Addr.String() + " noerror", e.up.Addr.String() + " noerror"}
	if !slices.Equal(obs, want) {
		t.Errorf("upstream queries %q, want %q", obs, want)
	}
	// Every upstream fails: SERVFAIL.
	e.up.SetMode(dnstest.Silent)
	m = e.aaaa(t, "both.dns64.test.")
	if m.Rcode != dns.RcodeServerFailure {
		t.Errorf("all silent: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	// An upstream's SERVFAIL: the next is asked; the last one's answer
	// stands when all say so.
	e.up.SetMode(dnstest.ServFail)
	if m := e.query(t, "mx.dns64.test.", dns.TypeMX, "udp", nil); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("all SERVFAIL: %s", dns.RcodeToString[m.Rcode])
	}
	if c := e.r.Counters(); c.DNS64Results["servfail"] != 2 {
		t.Errorf("results %v", c.DNS64Results)
	}
	good := dnstest.Start(t, dnstest.MustParseZone(testZone), "127.0.0.1")
	bad := dnstest.Start(t, dnstest.MustParseZone(testZone), "127.0.0.1")
	bad.SetMode(dnstest.ServFail)
	e2 := newEnv(t, envOpts{extra: []netip.AddrPort{bad.Addr, good.Addr}})
	if m := e2.query(t, "mx.dns64.test.", dns.TypeMX, "udp", nil); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 ||
		bad.Count("mx.dns64.test.", dns.TypeMX, "") != 1 || good.Count("mx.dns64.test.", dns.TypeMX, "") != 1 {
		t.Errorf("SERVFAIL then an answer: %v", m)
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestCache: answers are kept for their TTL, given with their TTL lowered
// by their age, asked again once expired; negative answers for the SOA's
// negative TTL; at most CacheSize of them.
func TestCache(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnv(t, envOpts{now: clk.now})
	e.aaaa(t, "a-only.dns64.test.")
	clk.add(100 * time.Second)
	m := e.aaaa(t, "a-only.dns64.test.")
	if got := records(m.Answer); !slices.Equal(got, []string{"a-only.dns64.test. 200 AAAA 2001:db8:46::c633:640a"}) {
		t.Errorf("after 100 s: %q, want TTL 200", got)
	}
	if a, aaaa := e.up.Count("a-only.dns64.test.", dns.TypeA, ""), e.up.Count("a-only.dns64.test.", dns.TypeAAAA, ""); a != 1 || aaaa != 1 {
		t.Errorf("upstream asked A %d, AAAA %d times; want once each", a, aaaa)
	}
	clk.add(200 * time.Second) // the A record's 300 s are over
	e.aaaa(t, "a-only.dns64.test.")
	if a := e.up.Count("a-only.dns64.test.", dns.TypeA, ""); a != 2 {
		t.Errorf("after 300 s: upstream asked A %d times, want 2", a)
	}
	// NXDOMAIN is kept for the SOA's negative TTL (3600 s).
	e.aaaa(t, "nx.dns64.test.")
	clk.add(3599 * time.Second)
	e.aaaa(t, "nx.dns64.test.")
	if n := e.up.Count("nx.dns64.test.", dns.TypeAAAA, ""); n != 1 {
		t.Errorf("NXDOMAIN asked %d times within its negative TTL", n)
	}
	c := e.r.Counters()
	if c.DNS64CacheHits == 0 || c.DNS64CacheMisses == 0 || c.DNS64CacheEntries == 0 {
		t.Errorf("cache counters %+v", c)
	}

	// Bounded: with room for two answers, a third pushes out the oldest.
	e2 := newEnv(t, envOpts{now: clk.now, cfg: func(c *Config) { c.CacheSize = 2 }})
	for _, n := range []string{"a-only", "both", "mx", "a-only"} {
		e2.query(t, n+".dns64.test.", dns.TypeA, "udp", nil)
	}
	if n := e2.up.Count("a-only.dns64.test.", dns.TypeA, ""); n != 2 {
		t.Errorf("cache of 2: a-only asked %d times, want 2", n)
	}
	if n := e2.r.Counters().DNS64CacheEntries; n != 2 {
		t.Errorf("cache of 2 holds %d", n)
	}
	// No cache at all.
	e3 := newEnv(t, envOpts{cfg: func(c *Config) { c.CacheSize = 0 }})
	e3.query(t, "mx.dns64.test.", dns.TypeMX, "udp", nil)
	e3.query(t, "mx.dns64.test.", dns.TypeMX, "udp", nil)
	if n := e3.up.Count("mx.dns64.test.", dns.TypeMX, ""); n != 2 {
		t.Errorf("no cache: asked %d times, want 2", n)
	}
}

// TestCacheTTL: what is kept, and for how long.
func TestCacheTTL(t *testing.T) {
	z := dnstest.MustParseZone(testZone)
	_ = z
	soa, _ := dns.NewRR("x. 3600 IN SOA ns.x. h.x. 1 1 1 1 60")
	a, _ := dns.NewRR("x. 90000 IN A 192.0.2.1")
	b, _ := dns.NewRR("x. 20 IN A 192.0.2.2")
	for _, tc := range []struct {
		m    *dns.Msg
		want uint32
	}{
		{&dns.Msg{Answer: []dns.RR{a, b}}, 20},
		{&dns.Msg{Answer: []dns.RR{a}}, maxCacheTTL},
		{&dns.Msg{Ns: []dns.RR{soa}}, 60},
		{&dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeNameError}, Ns: []dns.RR{soa}}, 60},
		{&dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeNameError}}, 0},
		{&dns.Msg{}, 0},
		{&dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeServerFailure}, Answer: []dns.RR{a}}, 0},
		{&dns.Msg{MsgHdr: dns.MsgHdr{Truncated: true}, Answer: []dns.RR{a}}, 0},
	} {
		if got := cacheTTL(tc.m); got != tc.want {
			t.Errorf("cacheTTL(%v) = %d, want %d", tc.m, got, tc.want)
		}
	}
}

// fakeWriter is a dns.ResponseWriter that keeps what is written.
type fakeWriter struct {
	remote net.Addr
	msgs   []*dns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv6loopback, Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error   { w.msgs = append(w.msgs, m); return nil }
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}
func (w *fakeWriter) Network() string             { return "udp" }

func udpFrom(a string) net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(a), 5353))
}
func tcpFrom(a string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(a), 5353))
}

func question(name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	return q
}

// TestRateLimit: a client address gets twice its rate at once, then its
// rate; over it, UDP queries are dropped and TCP ones REFUSED; another
// address has its own.
func TestRateLimit(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnv(t, envOpts{now: clk.now, cfg: func(c *Config) {
		c.RateLimit = 2
		c.Allow = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")}
	}})
	w := &fakeWriter{remote: udpFrom("2001:db8:1::2")}
	for range 5 {
		e.r.ServeDNS(w, question("mx.dns64.test.", dns.TypeMX))
	}
	if len(w.msgs) != 4 {
		t.Errorf("rate 2: %d of 5 queries answered at once, want 4 (a burst of twice the rate)", len(w.msgs))
	}
	tw := &fakeWriter{remote: tcpFrom("2001:db8:1::2")}
	e.r.ServeDNS(tw, question("mx.dns64.test.", dns.TypeMX))
	if len(tw.msgs) != 1 || tw.msgs[0].Rcode != dns.RcodeRefused {
		t.Errorf("over the rate over TCP: %v, want REFUSED", tw.msgs)
	}
	other := &fakeWriter{remote: udpFrom("2001:db8:1::3")}
	e.r.ServeDNS(other, question("mx.dns64.test.", dns.TypeMX))
	if len(other.msgs) != 1 || other.msgs[0].Rcode != dns.RcodeSuccess {
		t.Errorf("another address: %v", other.msgs)
	}
	clk.add(time.Second)
	w.msgs = nil
	for range 3 {
		e.r.ServeDNS(w, question("mx.dns64.test.", dns.TypeMX))
	}
	if len(w.msgs) != 2 {
		t.Errorf("a second later: %d of 3 answered, want 2", len(w.msgs))
	}
	if n := e.r.Counters().DNS64Results["rate_limited"]; n != 3 {
		t.Errorf("rate_limited %d, want 3", n)
	}
}

// TestAllow: clients outside the allowed prefixes and the local networks
// are REFUSED, without asking upstream.
func TestAllow(t *testing.T) {
	local := netip.MustParsePrefix("2001:db8:7::/64")
	e := newEnv(t, envOpts{cfg: func(c *Config) {
		c.Allow = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64"), netip.MustParsePrefix("192.0.2.0/24")}
		c.AllowLocalNets = true
	}})
	e.r.opts.LocalNets = local.Contains
	for _, tc := range []struct {
		from string
		ok   bool
	}{
		{"2001:db8:1::2", true}, {"192.0.2.9", true}, {"::ffff:192.0.2.9", true}, {"2001:db8:7::9", true},
		{"2001:db8:2::2", false}, {"198.51.100.1", false}, {"::1", false},
	} {
		w := &fakeWriter{remote: udpFrom(tc.from)}
		e.r.ServeDNS(w, question("mx.dns64.test.", dns.TypeMX))
		if len(w.msgs) != 1 || (w.msgs[0].Rcode == dns.RcodeSuccess) != tc.ok {
			t.Errorf("%s: %v, want answered %v", tc.from, w.msgs, tc.ok)
		}
	}
	if n := e.up.Count("mx.dns64.test.", dns.TypeMX, ""); n != 1 {
		t.Errorf("upstream asked %d times, want once (then cached)", n)
	}
	if n := e.r.Counters().DNS64Results["not_allowed"]; n != 3 {
		t.Errorf("not_allowed %d, want 3", n)
	}
}

// TestMalformed: what the DNS library would reject by itself is answered
// here, and counted.
func TestMalformed(t *testing.T) {
	e := newEnv(t, envOpts{})
	w := &fakeWriter{remote: udpFrom("::1")}
	notify := question("dns64.test.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	e.r.ServeDNS(w, notify)
	two := question("a-only.dns64.test.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	e.r.ServeDNS(w, two)
	e.r.ServeDNS(w, &dns.Msg{})
	var got []string
	for _, m := range w.msgs {
		got = append(got, dns.RcodeToString[m.Rcode])
	}
	if want := []string{"NOTIMP", "FORMERR", "FORMERR"}; !slices.Equal(got, want) {
		t.Errorf("rcodes %v, want %v", got, want)
	}
	if r := e.r.Counters().DNS64Results; r["notimp"] != 1 || r["formerr"] != 2 {
		t.Errorf("results %v", r)
	}
	if acceptQuery(dns.Header{Bits: 1 << 15}) != dns.MsgIgnore || acceptQuery(dns.Header{Qdcount: 3}) != dns.MsgAccept {
		t.Error("acceptQuery: answers must be ignored, everything else handled")
	}
}

// TestListenErrors: an address in use, or not of this machine, fails
// Listen with nothing left bound; Close ends serving and frees the port.
func TestListenErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	used := netip.MustParseAddrPort(e.addr)
	free := closedUDP(t)
	policy := func() relay.Policy { return relay.Policy{} }
	for _, tc := range []struct {
		listen []netip.AddrPort
		want   string
	}{
		{[]netip.AddrPort{free, used}, "address already in use"},
		{[]netip.AddrPort{netip.MustParseAddrPort("[2001:db8:ffff::1]:53")}, "cannot assign requested address"},
	} {
		r, err := New(Config{Listen: tc.listen, Upstreams: []netip.AddrPort{e.up.Addr}, Prefix: testPrefix}, Options{Policy: policy})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Listen()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dns64: listen: ") {
			t.Errorf("Listen %v: %v, want %q", tc.listen, err, tc.want)
		}
		if err := r.Serve(); err == nil {
			t.Error("Serve after a failed Listen: no error")
		}
		r.Close()
	}
	// The free address of the failed pair was released again.
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(free))
	if err != nil {
		t.Errorf("%s still bound after a failed Listen: %v", free, err)
	} else {
		pc.Close()
	}
	for _, tc := range []struct {
		cfg  Config
		opts Options
		want string
	}{
		{Config{Upstreams: []netip.AddrPort{used}, Prefix: testPrefix}, Options{Policy: policy}, "no listen address"},
		{Config{Listen: []netip.AddrPort{free}, Prefix: testPrefix}, Options{Policy: policy}, "no upstream"},
		{Config{Listen: []netip.AddrPort{free}, Upstreams: []netip.AddrPort{used}}, Options{Policy: policy}, "no prefix"},
		{Config{Listen: []netip.AddrPort{free}, Upstreams: []netip.AddrPort{used}, Prefix: testPrefix}, Options{}, "no relay policy"},
	} {
		if _, err := New(tc.cfg, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want %q", err, tc.want)
		}
	}
	// Close: the port is free again, and a second Close is harmless.
	e.r.Close()
	e.r.Close()
	pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(used))
	if err != nil {
		t.Errorf("%s still bound after Close: %v", used, err)
	} else {
		pc.Close()
	}
	if err := e.r.Listen(); err == nil {
		t.Error("Listen after Close: no error")
	}
}

func TestParseIP6Arpa(t *testing.T) {
	for _, s := range []string{"2001:db8:46::c633:640a", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"} {
		a := netip.MustParseAddr(s)
		name, _ := dns.ReverseAddr(s)
		if got, ok := parseIP6Arpa(strings.ToUpper(name)); !ok || got != a {
			t.Errorf("%s: %v %v", name, got, ok)
		}
	}
	for _, name := range []string{"1.0.0.127.in-addr.arpa.", "a.b.ip6.arpa.", strings.Repeat("g.", 32) + "ip6.arpa.", strings.Repeat("11", 32) + ".ip6.arpa."} {
		if _, ok := parseIP6Arpa(name); ok {
			t.Errorf("%s parsed", name)
		}
	}
}

func TestParseAddrs(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		listen   bool
		err      string
	}{
		{"192.0.2.53", "192.0.2.53:53", false, ""},
		{"2001:db8::53", "[2001:db8::53]:53", false, ""},
		{"[2001:db8::53]:5353", "[2001:db8::53]:5353", false, ""},
		{"[2001:db8::53]", "[2001:db8::53]:53", false, ""},
		{"[192.0.2.53]", "", false, "want an IP address"},
		{"[::]:53", "[::]:53", true, ""},
		{"[::]:53", "", false, "not a unicast address"},
		{"ff02::fb", "", true, "multicast"},
		{"::ffff:192.0.2.1", "", false, "IPv4-mapped"},
		{"192.0.2.53:0", "", false, "want a number from 1 to 65535"},
		{"192.0.2.53:99999", "", false, "want a number from 1 to 65535"},
		{"ns.example:53", "", false, "is not an IP address"},
		{"[2001:db8::53", "", false, "want an IP address"},
	} {
		parse := ParseUpstream
		if tc.listen {
			parse = ParseListen
		}
		ap, err := parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || ap.String() != tc.want {
			t.Errorf("%q: %v %v, want %s", tc.in, ap, err, tc.want)
		}
	}
}

// weirdUpstream answers every query through h, on 127.0.0.1 over UDP.
func weirdUpstream(t *testing.T, h dns.HandlerFunc) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestUpstreamMisbehaving: an answer to another question, or a message
// that is not an answer, is no answer (the next upstream is asked, and with
// none SERVFAIL); an extended RCODE reaches a client without EDNS0 as
// SERVFAIL.
func TestUpstreamMisbehaving(t *testing.T) {
	other := weirdUpstream(t, func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Question[0].Name = "elsewhere.example."
		w.WriteMsg(m)
	})
	notAnswer := weirdUpstream(t, func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Response = false
		w.WriteMsg(m)
	})
	extended := weirdUpstream(t, func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.SetEdns0(1232, false)
		m.Rcode = dns.RcodeBadCookie
		w.WriteMsg(m)
	})
	e := newEnv(t, envOpts{extra: []netip.AddrPort{other, notAnswer}})
	if m := e.query(t, "mx.dns64.test.", dns.TypeMX, "udp", nil); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("after two bad upstreams: %v, want the third one's answer", m)
	}
	e.mu.Lock()
	obs := slices.Clone(e.obs)
	e.mu.Unlock()
	if want := []string{other.String() + " failed", notAnswer.String() + " failed", e.up.Addr.String() + " noerror"}; !slices.Equal(obs, want) {
		t.Errorf("upstream queries %q, want %q", obs, want)
	}
	e2 := newEnv(t, envOpts{cfg: func(c *Config) { c.Upstreams = []netip.AddrPort{extended} }})
	if m := e2.query(t, "mx.dns64.test.", dns.TypeMX, "udp", nil); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("BADCOOKIE to a client without EDNS0: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if m := e2.query(t, "mx.dns64.test.", dns.TypeMX, "udp", withEDNS(false)); m.Rcode != dns.RcodeBadCookie {
		t.Errorf("BADCOOKIE to a client with EDNS0: %s", dns.RcodeToString[m.Rcode])
	}
}

// TestPrefixLengths: synthesis in a prefix of every RFC 6052 length puts
// the IPv4 address where the relay reads it back (the u-octet skipped),
// and PTR reads it out again.
func TestPrefixLengths(t *testing.T) {
	for _, p := range []string{"2001:db8::/32", "2001:db8:100::/40", "2001:db8:122::/48", "2001:db8:122:300::/56", "2001:db8:122:344::/64", "2001:db8:46::/96"} {
		prefix := netip.MustParsePrefix(p)
		e := newEnv(t, envOpts{prefixes: []netip.Prefix{prefix}})
		m := e.aaaa(t, "a-only.dns64.test.")
		if len(m.Answer) != 1 {
			t.Fatalf("%s: %v", p, m.Answer)
		}
		got, _ := netip.AddrFromSlice(m.Answer[0].(*dns.AAAA).AAAA)
		mapper, _ := relay.NewMapper(prefix)
		if v4, err := mapper.Map(got); err != nil || v4 != netip.MustParseAddr("198.51.100.10") || !prefix.Contains(got) {
			t.Errorf("%s: synthesized %s maps to %v (%v)", p, got, v4, err)
		}
		rev, _ := dns.ReverseAddr(got.String())
		m = e.query(t, rev, dns.TypePTR, "udp", nil)
		if len(m.Answer) != 2 || m.Answer[0].(*dns.CNAME).Target != "10.100.51.198.in-addr.arpa." {
			t.Errorf("%s: PTR %s: %v", p, rev, m.Answer)
		}
	}
}
