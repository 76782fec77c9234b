// Package dnstest is a small authoritative DNS server for faithif's tests:
// the upstream of the DNS64 responder's unit tests, the name server of the
// end-to-end tests' IPv4 namespace, and the common upstream of faithif and
// unbound in the interoperability test.
//
// It serves zones given as text (one record a line, in zone-file syntax),
// over UDP and TCP on the same port, follows CNAME chains inside its zones,
// answers NXDOMAIN and no-data with the zone's SOA, truncates UDP answers
// to what the query allows (512 bytes without EDNS0), and, when a query sets
// DO, adds a stand-in RRSIG to each RRset and sets AD, as a validating
// resolver would. It counts the questions it was asked, by transport, and
// can be told to stop answering or to answer SERVFAIL, to test failover.
package dnstest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Zone is a set of records, with the SOA of each zone apex.
type Zone struct {
	soa map[string]*dns.SOA // by apex
	rrs map[string][]dns.RR // by owner name, lower case
}

// ParseZone reads records, one a line in zone-file syntax with absolute
// names ("a.example.test. 300 IN A 192.0.2.1"); blank lines and lines
// starting with ; are skipped. Each SOA record makes its owner a zone apex.
func ParseZone(text string) (*Zone, error) {
	z := &Zone{soa: map[string]*dns.SOA{}, rrs: map[string][]dns.RR{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			return nil, fmt.Errorf("dnstest: line %d: %w", n, err)
		}
		name := strings.ToLower(rr.Header().Name)
		if soa, ok := rr.(*dns.SOA); ok {
			z.soa[name] = soa
		}
		z.rrs[name] = append(z.rrs[name], rr)
	}
	return z, sc.Err()
}

// MustParseZone is ParseZone for tests: it panics on error.
func MustParseZone(text string) *Zone {
	z, err := ParseZone(text)
	if err != nil {
		panic(err)
	}
	return z
}

// apex returns the SOA of the zone name is in, nil if none.
func (z *Zone) apex(name string) *dns.SOA {
	for n := name; ; {
		if soa, ok := z.soa[n]; ok {
			return soa
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			return nil
		}
		n = n[i+1:]
	}
}

// Mode is how a Server answers.
type Mode int32

// The modes.
const (
	Answer   Mode = iota // from the zone
	Silent               // not at all
	ServFail             // SERVFAIL to everything
)

// Server serves a Zone. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the address it answers on, over UDP and TCP.
	Addr netip.AddrPort

	zone    *Zone
	mode    atomic.Int32
	mu      sync.Mutex
	counts  map[string]int // "name/TYPE/udp"
	servers []*dns.Server
}

// Serve answers from z on pc (UDP) and ln (TCP, nil: none), which the
// caller opened (in any network namespace), until Close.
func Serve(z *Zone, pc net.PacketConn, ln net.Listener) (*Server, error) {
	s := &Server{zone: z, counts: map[string]int{}, Addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.servers = append(s.servers, &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify})
	if ln != nil {
		s.servers = append(s.servers, &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: notify})
	}
	errc := make(chan error, len(s.servers))
	for _, srv := range s.servers {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				errc <- err
			}
		}()
	}
	for range s.servers {
		select {
		case <-started:
		case err := <-errc:
			s.Close()
			return nil, fmt.Errorf("dnstest: serve: %w", err)
		}
	}
	return s, nil
}

// Start serves z on host (an IP address) over UDP and TCP, on a port free
// for both, in the caller's network namespace; the test's cleanup stops
// it.
func Start(t testing.TB, z *Zone, host string) *Server {
	t.Helper()
	pc, ln, err := ListenBoth(host)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s, err := Serve(z, pc, ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// ListenBoth opens a UDP socket and a TCP listener on the same free port
// of host.
func ListenBoth(host string) (net.PacketConn, net.Listener, error) {
	var last error
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		last = err
	}
	return nil, nil, fmt.Errorf("no port free for both UDP and TCP on %s: %w", host, last)
}

// Close stops the server.
func (s *Server) Close() {
	for _, srv := range s.servers {
		srv.Shutdown()
	}
}

// SetMode changes how the server answers from now on.
func (s *Server) SetMode(m Mode) { s.mode.Store(int32(m)) }

// Count returns how often the server was asked name (any case) of type
// qtype over network ("udp" or "tcp"; "" both).
func (s *Server) Count(name string, qtype uint16, network string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(dns.Fqdn(name)) + "/" + dns.TypeToString[qtype] + "/"
	if network != "" {
		return s.counts[key+network]
	}
	return s.counts[key+"udp"] + s.counts[key+"tcp"]
}

// Total returns how many questions the server was asked.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	s.mu.Lock()
	s.counts[strings.ToLower(q.Name)+"/"+dns.TypeToString[q.Qtype]+"/"+network]++
	s.mu.Unlock()
	mode := Mode(s.mode.Load())
	if mode == Silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	do := req.IsEdns0() != nil && req.IsEdns0().Do()
	switch {
	case mode == ServFail:
		m.Rcode = dns.RcodeServerFailure
	default:
		s.zone.answer(m, q, do)
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(4096, do)
		size = max(size, int(opt.UDPSize()))
	}
	if network == "tcp" {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	w.WriteMsg(m)
}

// answer fills m for q: the CNAME chain from q's name, then the records
// of its type at the chain's end; NXDOMAIN or no data with the SOA.
func (z *Zone) answer(m *dns.Msg, q dns.Question, do bool) {
	name := strings.ToLower(q.Name)
	soa := z.apex(name)
	if soa == nil {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	for range 16 {
		rrs, ok := z.rrs[name]
		if !ok {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa}
			break
		}
		var cname *dns.CNAME
		var match []dns.RR
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
				cname = c
			}
			if rr.Header().Rrtype == q.Qtype {
				match = append(match, rr)
			}
		}
		if cname != nil {
			m.Answer = append(m.Answer, cname)
			name = strings.ToLower(cname.Target)
			if soa = z.apex(name); soa == nil {
				break // out of the zones: the resolver goes on
			}
			continue
		}
		if len(match) == 0 {
			m.Ns = []dns.RR{soa}
		}
		m.Answer = append(m.Answer, match...)
		break
	}
	if do {
		m.AuthenticatedData = true
		m.Answer = sign(m.Answer)
		m.Ns = sign(m.Ns)
	}
}

// sign adds a stand-in RRSIG after each RRset.
func sign(rrs []dns.RR) []dns.RR {
	var out []dns.RR
	for i, rr := range rrs {
		out = append(out, rr)
		h := rr.Header()
		if i+1 < len(rrs) && rrs[i+1].Header().Rrtype == h.Rrtype && strings.EqualFold(rrs[i+1].Header().Name, h.Name) {
			continue // the set goes on
		}
		out = append(out, &dns.RRSIG{
			Hdr:         dns.RR_Header{Name: h.Name, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: h.Ttl},
			TypeCovered: h.Rrtype, Algorithm: dns.ECDSAP256SHA256, Labels: uint8(dns.CountLabel(h.Name)),
			OrigTtl: h.Ttl, Expiration: 2000000000, Inception: 1600000000, KeyTag: 12345,
			SignerName: "test.", Signature: "c3RhbmQtaW4gc2lnbmF0dXJl",
		})
	}
	return out
}
