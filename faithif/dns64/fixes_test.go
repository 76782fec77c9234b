package dns64

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/faithif/faithif/test/dnstest"
)

// TestInflightCap: with the upstream black-holed, at most maxInflight
// upstream queries (and so sockets) are in flight; one more query gets
// SERVFAIL at once, counted as overloaded, and asks nothing upstream.
func TestInflightCap(t *testing.T) {
	silent, heard := silentUDP(t)
	e := newEnv(t, envOpts{cfg: func(c *Config) {
		c.Upstreams = []netip.AddrPort{silent}
		c.Timeout = 20 * time.Second
	}})
	var wg sync.WaitGroup
	for i := range maxInflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.r.ServeDNS(&fakeWriter{remote: udpFrom("::1")}, question(fmt.Sprintf("n%d.dns64.test.", i), dns.TypeMX))
		}()
	}
	defer wg.Wait()
	defer e.r.Close() // abandons the queries in flight
	for deadline := time.Now().Add(20 * time.Second); heard() < maxInflight; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // a hang guard
			t.Fatalf("the upstream heard %d queries, want %d", heard(), maxInflight)
		}
	}
	w := &fakeWriter{remote: udpFrom("::1")}
	e.r.ServeDNS(w, question("one-more.dns64.test.", dns.TypeMX))
	if len(w.msgs) != 1 || w.msgs[0].Rcode != dns.RcodeServerFailure {
		t.Fatalf("query %d: %v, want SERVFAIL", maxInflight+1, w.msgs)
	}
	if n := e.r.Counters().DNS64Results["overloaded"]; n != 1 {
		t.Errorf("overloaded %d, want 1", n)
	}
	if n := heard(); n != maxInflight {
		t.Errorf("the upstream heard %d queries, want %d", n, maxInflight)
	}
}

// TestRateLimitPer64: the addresses of one /64 share netRateFactor times
// an address's rate; another /64 has its own; IPv4 addresses only their
// own.
func TestRateLimitPer64(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	e := newEnv(t, envOpts{now: clk.now, cfg: func(c *Config) {
		c.RateLimit = 2
		c.Allow = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.0/24")}
	}})
	answered := func(from string) int {
		w := &fakeWriter{remote: udpFrom(from)}
		e.r.ServeDNS(w, question("mx.dns64.test.", dns.TypeMX))
		return len(w.msgs)
	}
	n := 0
	for i := range 20 { // one query each, each address within its own rate
		n += answered(fmt.Sprintf("2001:db8:1::%x", i+1))
	}
	if want := 2 * 2 * netRateFactor; n != want {
		t.Errorf("one /64, 20 addresses: %d answered, want %d (the /64's burst)", n, want)
	}
	if answered("2001:db8:2::1") != 1 {
		t.Error("another /64 was limited")
	}
	n = 0
	for i := range 20 {
		n += answered(fmt.Sprintf("192.0.2.%d", i+1))
	}
	if n != 20 {
		t.Errorf("20 IPv4 addresses: %d answered, want 20", n)
	}
	if r := e.r.Counters().DNS64Results["rate_limited"]; r != 4 {
		t.Errorf("rate_limited %d, want 4", r)
	}
}

// tcpConn connects to the responder over TCP.
func tcpConn(t *testing.T, addr string) *dns.Conn {
	t.Helper()
	c, err := dns.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard
	return c
}

// ask sends one query on c and reads the answer.
func ask(c *dns.Conn, name string) (*dns.Msg, error) {
	if err := c.WriteMsg(question(name, dns.TypeMX)); err != nil {
		return nil, err
	}
	return c.ReadMsg()
}

// closedByPeer reports whether err is the server closing the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(fmt.Sprint(err), "connection reset")
}

// TestTCPNotAllowedClosed: a client outside allow gets REFUSED over TCP and
// its connection closed, so that it holds no connection slot.
func TestTCPNotAllowedClosed(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.Allow = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/64")} }})
	c := tcpConn(t, e.addr)
	m, err := ask(c, "mx.dns64.test.")
	if err != nil || m.Rcode != dns.RcodeRefused {
		t.Fatalf("not allowed over TCP: %v %v, want REFUSED", m, err)
	}
	// Without the close, a second query would be answered REFUSED again.
	if m, err := ask(c, "mx.dns64.test."); !closedByPeer(err) {
		t.Errorf("a second query after REFUSED: %v %v, want the connection closed", m, err)
	}
}

// TestTCPPerClient: one client address holds at most maxTCPConnsPerClient
// connections; one more is closed at once; a slot given back is taken
// again.
func TestTCPPerClient(t *testing.T) {
	e := newEnv(t, envOpts{})
	var conns []*dns.Conn
	for i := range maxTCPConnsPerClient {
		c := tcpConn(t, e.addr)
		if m, err := ask(c, "mx.dns64.test."); err != nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("connection %d: %v %v", i+1, m, err)
		}
		conns = append(conns, c)
	}
	extra := tcpConn(t, e.addr)
	if m, err := ask(extra, "mx.dns64.test."); !closedByPeer(err) {
		t.Fatalf("connection %d: %v %v, want it closed", maxTCPConnsPerClient+1, m, err)
	}
	conns[0].Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c := tcpConn(t, e.addr)
		m, err := ask(c, "mx.dns64.test.")
		if err == nil && m.Rcode == dns.RcodeSuccess {
			break
		}
		c.Close()
		if time.Now().After(deadline) { // a hang guard: the slot comes back once the server sees the close
			t.Fatalf("after one closed: %v %v", m, err)
		}
	}
}

// txtMsg is an answer of n bytes or so: TXT records of 200 bytes.
func txtMsg(name string, n int) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.Response = true
	for m.Len() < n {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: []string{strings.Repeat("x", 200)}})
	}
	return m
}

// TestCacheBudget: the cache holds at most its budget in bytes, counted
// by packed size, the least recently used forgotten first; an answer
// larger than the budget is not kept; an answer stored again is counted
// once.
func TestCacheBudget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const size = 10000
	c := newCache(1000, 3*size+size/2)
	key := func(i int) cacheKey {
		return cacheKey{name: fmt.Sprintf("n%d.", i), qtype: dns.TypeTXT, qclass: dns.ClassINET}
	}
	for i := range 5 {
		c.put(key(i), txtMsg(fmt.Sprintf("n%d.", i), size), now)
	}
	if c.len() != 3 || c.size() > c.budget {
		t.Errorf("5 answers of %d bytes in %d: %d kept, %d bytes", size, c.budget, c.len(), c.size())
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := c.get(key(i), now); ok != want {
			t.Errorf("answer %d kept %v, want %v", i, ok, want)
		}
	}
	before := c.size()
	c.put(key(4), txtMsg("n4.", size), now)
	if c.size() != before || c.len() != 3 {
		t.Errorf("stored again: %d bytes, %d kept; want %d, 3", c.size(), c.len(), before)
	}
	c.put(key(9), txtMsg("n9.", 4*size), now)
	if _, ok := c.get(key(9), now); ok || c.len() != 3 {
		t.Error("an answer larger than the budget was kept")
	}
	var total int64
	for _, k := range c.l.Keys() {
		e, _ := c.l.Peek(k)
		total += int64(e.msg.Len())
	}
	if total != c.size() {
		t.Errorf("size %d, the entries' %d", c.size(), total)
	}
	if newCache(10, 0) != nil || newCache(0, 10) != nil {
		t.Error("a cache without room")
	}
}

// TestFailoverBackoff: an upstream that timed out or answered SERVFAIL is
// asked after the others for backoff, then probed again; each query is
// observed with its result.
func TestFailoverBackoff(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	silent, heard := silentUDP(t)
	bad := dnstest.Start(t, dnstest.MustParseZone(testZone), "127.0.0.1")
	bad.SetMode(dnstest.ServFail)
	e := newEnv(t, envOpts{now: clk.now, extra: []netip.AddrPort{silent, bad.Addr}, cfg: func(c *Config) { c.Timeout = 200 * time.Millisecond }})
	check := func(step string, wantHeard, wantBad int) {
		t.Helper()
		if heard() != wantHeard || bad.Total() != wantBad {
			t.Errorf("%s: the silent upstream heard %d, the SERVFAIL one %d; want %d, %d", step, heard(), bad.Total(), wantHeard, wantBad)
		}
	}
	for _, name := range []string{"a-only", "both"} {
		if m := e.aaaa(t, name+".dns64.test."); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("%s: %v", name, m)
		}
	}
	check("AAAA a-only (both asked), then A a-only and AAAA both (backed off)", 1, 1)
	clk.add(backoff)
	e.query(t, "mx.dns64.test.", dns.TypeMX, "udp", nil)
	check("after the backoff", 2, 2)
	e.mu.Lock()
	obs := slices.Clone(e.obs)
	e.mu.Unlock()
	s, b, g := silent.String(), bad.Addr.String(), e.up.Addr.String()
	want := []string{s + " timeout", b + " servfail", g + " noerror", g + " noerror", g + " noerror", s + " timeout", b + " servfail", g + " noerror"}
	if !slices.Equal(obs, want) {
		t.Errorf("upstream queries %q, want %q", obs, want)
	}
}

// chainUpstream answers with a CNAME chain of n names from c0.chain.test,
// then an A record at its end; loop.test names make a loop.
func chainUpstream(t *testing.T, n int) netip.AddrPort {
	soa, _ := dns.NewRR("chain.test. 3600 IN SOA ns.chain.test. h.chain.test. 1 1 1 1 3600")
	return weirdUpstream(t, func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Compress = true
		cname := func(from, to string) dns.RR {
			return &dns.CNAME{Hdr: dns.RR_Header{Name: from, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: to}
		}
		if strings.HasSuffix(q.Question[0].Name, "loop.test.") {
			m.Answer = []dns.RR{cname("l0.loop.test.", "l1.loop.test."), cname("l1.loop.test.", "l0.loop.test.")}
			w.WriteMsg(m)
			return
		}
		for i := range n {
			m.Answer = append(m.Answer, cname(fmt.Sprintf("c%d.chain.test.", i), fmt.Sprintf("c%d.chain.test.", i+1)))
		}
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: fmt.Sprintf("c%d.chain.test.", n), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(198, 51, 100, 10)})
		} else {
			m.Ns = []dns.RR{soa}
		}
		w.WriteMsg(m)
	})
}

// TestLongCNAMEChain: a chain is followed as far as the answer has it,
// however long; a loop is SERVFAIL.
func TestLongCNAMEChain(t *testing.T) {
	const n = 40
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.Upstreams = []netip.AddrPort{chainUpstream(t, n)} }})
	m := e.query(t, "c0.chain.test.", dns.TypeAAAA, "tcp", nil)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != n+1 || m.Answer[n].Header().Name != fmt.Sprintf("c%d.chain.test.", n) || m.Answer[n].Header().Rrtype != dns.TypeAAAA {
		t.Errorf("a chain of %d: %v, want the chain and an AAAA record at its end", n, m)
	}
	if m := e.aaaa(t, "l0.loop.test."); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("a CNAME loop: %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
}

// TestFormErr: two OPT records are FORMERR (RFC 6891 6.1.1); a query the
// library cannot unpack, which it answers FORMERR itself, is counted.
func TestFormErr(t *testing.T) {
	e := newEnv(t, envOpts{})
	w := &fakeWriter{remote: udpFrom("::1")}
	q := question("mx.dns64.test.", dns.TypeMX)
	q.SetEdns0(1232, false)
	q.Extra = append(q.Extra, q.Extra[0])
	e.r.ServeDNS(w, q)
	if len(w.msgs) != 1 || w.msgs[0].Rcode != dns.RcodeFormatError {
		t.Errorf("two OPT records: %v, want FORMERR", w.msgs)
	}
	c, err := net.Dial("udp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard
	// A header with one question, then a label longer than the message.
	if _, err := c.Write([]byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, 'a'}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	var m dns.Msg
	if err != nil || m.Unpack(buf[:n]) != nil || m.Rcode != dns.RcodeFormatError || m.Id != 0x1234 {
		t.Fatalf("a message that does not unpack: %v %v, want FORMERR", m, err)
	}
	if r := e.r.Counters(); r.DNS64Results["formerr"] != 2 || r.DNS64Queries["other"] != 2 {
		t.Errorf("results %v, queries %v; want 2 formerr, 2 other queries (MX, and the one without a type)", r.DNS64Results, r.DNS64Queries)
	}
}

// TestUpstreamStateLog: a failing upstream is warned about once per
// backoff however often it fails, again after it; answering again is
// logged once; a NOERROR or NXDOMAIN answer is no failure.
func TestUpstreamStateLog(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	u := &upstream{addr: "192.0.2.53:53"}
	now := time.Unix(1_700_000_000, 0)
	servfail := &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeServerFailure}}
	refused := &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeRefused}}
	u.state(log, nil, errors.New("i/o timeout"), now)
	u.state(log, servfail, nil, now.Add(time.Second))
	u.state(log, refused, nil, now.Add(backoff-time.Second))
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings within a backoff, want 1:\n%s", n, buf.String())
	}
	if u.downUntil.Load() != now.Add(backoff-time.Second).Add(backoff).UnixNano() {
		t.Error("the backoff does not run from the last failure")
	}
	u.state(log, servfail, nil, now.Add(backoff))
	if n := strings.Count(buf.String(), "level=WARN"); n != 2 || !strings.Contains(buf.String(), `error="answered SERVFAIL"`) {
		t.Errorf("after a backoff: %d warnings, want 2:\n%s", n, buf.String())
	}
	u.state(log, &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeNameError}}, nil, now.Add(backoff+time.Second))
	u.state(log, &dns.Msg{}, nil, now.Add(backoff+2*time.Second))
	if n := strings.Count(buf.String(), "answering again"); n != 1 || u.downUntil.Load() != 0 {
		t.Errorf("answering again logged %d times, want 1 (down until %d):\n%s", n, u.downUntil.Load(), buf.String())
	}
}
