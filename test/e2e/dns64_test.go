package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/faithif/faithif/test/dnstest"
	"github.com/faithif/faithif/test/netlab"
)

// Tests of the built-in DNS64 (--dns64): a client that knows only the
// router as its resolver fetches a page by name through faith0, and
// faithif's answers are unbound's, but where the relay would refuse an
// address.

// dns64Zone is served by the name server in the IPv4 namespace
// (192.0.2.2:53). Its negative TTL (3600) is above every A record's TTL
// but in neg.example, whose SOA says 30.
const dns64Zone = `
dns64.example.            3600 IN SOA ns.dns64.example. host.dns64.example. 1 3600 600 86400 3600
www.dns64.example.         300 IN A 192.0.2.2
a-only.dns64.example.      300 IN A 198.51.100.10
aaaa-only.dns64.example.   300 IN AAAA 2001:db8:99::10
both.dns64.example.        300 IN A 198.51.100.11
both.dns64.example.        300 IN AAAA 2001:db8:99::11
cname.dns64.example.       300 IN CNAME cname2.dns64.example.
cname2.dns64.example.      300 IN CNAME a-only.dns64.example.
empty.dns64.example.       300 IN TXT "no address"
mapped.dns64.example.      300 IN AAAA ::ffff:198.51.100.12
mapped.dns64.example.      300 IN A 198.51.100.12
excluded.dns64.example.    300 IN AAAA 2001:db8:bad::13
excluded.dns64.example.    300 IN A 198.51.100.13
loopback.dns64.example.    300 IN A 127.0.0.1
router.dns64.example.      300 IN A 192.0.2.1
denied.dns64.example.      300 IN A 203.0.113.16
two-a.dns64.example.       300 IN A 127.0.0.1
two-a.dns64.example.       300 IN A 198.51.100.15
neg.example.              3600 IN SOA ns.neg.example. host.neg.example. 1 3600 600 86400 30
short.neg.example.         300 IN A 198.51.100.19
100.51.198.in-addr.arpa.  3600 IN SOA ns.dns64.example. host.dns64.example. 1 3600 600 86400 3600
10.100.51.198.in-addr.arpa. 300 IN PTR a-only.dns64.example.
`

// nameServer serves zone on 192.0.2.2:53, UDP and TCP, in the lab's IPv4
// namespace.
func nameServer(t *testing.T, lab *netlab.Lab, zone string) *dnstest.Server {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	err := lab.Server.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp", netlab.ServerAddr+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", netlab.ServerAddr+":53")
		return err
	})
	if err != nil {
		t.Fatalf("name server in %s: %v", lab.Server.Name, err)
	}
	s, err := dnstest.Serve(dnstest.MustParseZone(zone), pc, ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// queryFrom asks server a question from namespace ns, over UDP.
func queryFrom(ns *netlab.Namespace, server, name string, qtype uint16) (*dns.Msg, error) {
	return queryFromAddr(ns, "", server, name, qtype)
}

// queryFromAddr is queryFrom from the local address src ("": the
// kernel's choice).
func queryFromAddr(ns *netlab.Namespace, src, server, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	return exchangeFrom(ns, src, server, q)
}

// exchangeFrom sends q to server from namespace ns, from the local address
// src ("": the kernel's choice), over UDP.
func exchangeFrom(ns *netlab.Namespace, src, server string, q *dns.Msg) (*dns.Msg, error) {
	var m *dns.Msg
	err := ns.Do(func() error {
		c := &dns.Client{Timeout: 5 * time.Second} // a hang guard
		if src != "" {
			c.Dialer = &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}
		}
		var err error
		m, _, err = c.Exchange(q, server)
		return err
	})
	return m, err
}

// useResolver makes server the only resolver of the namespace's commands
// run through "ip netns exec", which mounts /etc/netns/NAME/resolv.conf
// over /etc/resolv.conf.
func useResolver(t *testing.T, ns *netlab.Namespace, server string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+server+"\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startNginx starts an nginx serving page on addr:80 in ns, and waits until
// it answers.
func startNginx(t *testing.T, lab *netlab.Lab, ns *netlab.Namespace, addr, page string) string {
	t.Helper()
	dir := netlab.TempDir(t, "nginx")
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	access := filepath.Join(dir, "access.log")
	conf := fmt.Sprintf(`user nobody nogroup;
worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
    access_log %[2]s;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    types { text/html html; }
    server { listen %[3]s:80; root %[4]s; index index.html; }
}
`, dir, access, addr, www)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	lab.Start(t, netlab.StartSpec{NS: ns, Env: []string{}, Argv: []string{"nginx", "-p", dir, "-c", path}})
	ctx := testCtx(t, 10*time.Second)
	for {
		code, body, err := ns.HTTPGet(ctx, "http://"+addr+"/")
		if err == nil && code == 200 && body == page {
			return access
		}
		if ctx.Err() != nil {
			t.Fatalf("nginx on %s:80 in %s not answering: %d %v", addr, ns.Name, code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDNS64EndToEnd: the IPv6-only client's only resolver is the router;
// it resolves a name served in the IPv4 namespace and fetches http://NAME/
// from the IPv4-only nginx through faith0. A name at 127.0.0.1 gets no
// AAAA. show lists the listener. Draining stops the responder.
func TestDNS64EndToEnd(t *testing.T) {
	lab := netlab.New(t)
	ns := nameServer(t, lab, dns64Zone)
	const page = "hello from the IPv4-only nginx, by name\n"
	access := startNginx(t, lab, lab.Server, netlab.ServerAddr, page)
	resolver := "[" + netlab.RouterAddr6 + "]:53"
	f := lab.StartFaithif(t, "--keepfaith", "--log-level", "debug", "--dns64", resolver, "--dns64-upstream", netlab.ServerAddr)
	useResolver(t, lab.Client, netlab.RouterAddr6)

	ctx := testCtx(t, 30*time.Second)
	out, err := lab.Client.Run(ctx, "curl", "-sS", "--max-time", "10", "http://www.dns64.example/")
	if err != nil || out != page {
		t.Fatalf("curl http://www.dns64.example/ from the client: %q, %v", out, err)
	}
	st := mustShow(t, lab)
	if st.FlowsAccepted != 1 || st.DNS64Synthesized["aaaa"] == 0 || st.DNS64Queries["aaaa"] == 0 {
		t.Errorf("after the fetch: flows accepted %d, dns64 synthesized %v, queries %v", st.FlowsAccepted, st.DNS64Synthesized, st.DNS64Queries)
	}
	if log, err := os.ReadFile(access); err != nil || !regexpLine(string(log), `^`+regexp.QuoteMeta(netlab.RouterAddr4)+` .*"GET / HTTP/1.1" 200 .*curl/`) {
		t.Errorf("nginx's access log: %q, %v; want curl's request from the router's %s", log, err, netlab.RouterAddr4)
	}
	if n := ns.Count("www.dns64.example.", dns.TypeA, ""); n == 0 {
		t.Errorf("the name server in %s was never asked www's A record", lab.Server.Name)
	}

	// The synthesized address, and none for a name at 127.0.0.1.
	m, err := queryFrom(lab.Client, resolver, "www.dns64.example.", dns.TypeAAAA)
	if err != nil || len(m.Answer) != 1 || m.Answer[0].(*dns.AAAA).AAAA.String() != netlab.ServerFaithAddr {
		t.Errorf("AAAA www.dns64.example: %v, %v; want %s", m, err, netlab.ServerFaithAddr)
	}
	m, err = queryFrom(lab.Client, resolver, "loopback.dns64.example.", dns.TypeAAAA)
	if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Errorf("AAAA loopback.dns64.example (A 127.0.0.1): %v, %v; want NOERROR and no AAAA", m, err)
	}
	if _, ok := f.WaitLog(5*time.Second, func(l string) bool {
		return hasAll(l, "level=DEBUG", "AAAA withheld", "name=loopback.dns64.example.", "a=127.0.0.1", "reason=always_refused", "client=2001:db8:1::2")
	}); !ok {
		t.Errorf("no debug line says why loopback.dns64.example got no AAAA:\n%s", f.Stderr())
	}
	st = mustShow(t, lab)
	if st.DNS64Suppressed["always_refused"] != 1 {
		t.Errorf("dns64 suppressed %v, want always_refused 1", st.DNS64Suppressed)
	}
	if !slices.Equal(st.DNS64Listen, []string{resolver}) || !slices.Equal(st.DNS64Upstreams, []string{netlab.ServerAddr + ":53"}) || st.DNS64Prefix != netlab.FaithPrefix {
		t.Errorf("show --json: dns64_listen %q, upstreams %q, prefix %q", st.DNS64Listen, st.DNS64Upstreams, st.DNS64Prefix)
	}
	r := lab.Faithif("show", netlab.FaithIf)
	if !regexpLine(r.Stdout, `^  dns64 +listen \[2001:db8:1::1\]:53, upstreams 192\.0\.2\.2:53, prefix 2001:db8:46::/96$`) {
		t.Errorf("show faith0 does not list the listener:\n%s", r.Stdout)
	}

	// Draining: no more names for a relay that takes no new flow.
	port := echoServer(t, lab)
	c, err := dialServer(ctx, lab, port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan netlab.Result, 1)
	go func() { done <- lab.Faithif("destroy", netlab.FaithIf, "--grace", "20s") }()
	waitStatus(t, lab, 10*time.Second, func(st *netlab.Status) bool { return st.Draining })
	if _, err := queryFrom(lab.Client, resolver, "www.dns64.example.", dns.TypeAAAA); err == nil {
		t.Error("draining: the responder still answers")
	}
	if st := mustShow(t, lab); !st.Draining || len(st.DNS64Listen) != 0 {
		t.Errorf("draining: draining %v, dns64_listen %q", st.Draining, st.DNS64Listen)
	}
	f.ExpectExit()
	c.Close()
	if r := <-done; r.ExitCode != 0 {
		t.Errorf("destroy: %s", r)
	}
}

// TestDNS64Appliance: faithif run with an [interface.dns64] table: the
// plan says it, clients outside allow are REFUSED, and the metrics count
// queries by type and result, syntheses, suppressions by reason and the
// upstream's latency, as promtool accepts them.
func TestDNS64Appliance(t *testing.T) {
	lab := netlab.New(t)
	nameServer(t, lab, dns64Zone)
	stranger, err := lab.AddClientAddrs(netip.MustParseAddr("2001:db8:1::99"), 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := netlab.TempDir(t, "conf")
	conf := filepath.Join(dir, "faithif.conf")
	resolver := "[" + netlab.RouterAddr6 + "]:53"
	writeFile(t, conf, `keepfaith = true
metrics = "`+metricsAddr+`"
log_level = "debug"
[[interface]]
name = "faith0"
prefixes = ["`+netlab.FaithPrefix+`"]
  [[interface.route]]
  prefix = "`+netlab.FaithPrefix+`"
  [interface.dns64]
  listen = ["`+resolver+`"]
  upstreams = ["`+netlab.ServerAddr+`"]
  allow = ["`+netlab.ClientAddr+`"]
  rate_limit = 50
`)
	r := netlab.RunCommand(lab.Router.Command(testCtx(t, 20*time.Second), lab.Env(), netlab.Binary(t), "run", "--config", conf, "--check"))
	if want := "    dns64 on [" + resolver + "] (udp, tcp), prefix " + netlab.FaithPrefix + ", upstreams [192.0.2.2:53], clients [2001:db8:1::2/128]\n"; r.ExitCode != 0 || !strings.Contains(r.Stdout, want) {
		t.Errorf("run --check: %s; want %q", r, want)
	}
	lab.StartRun(t, "--config", conf)
	ctx := testCtx(t, time.Minute)

	for _, q := range []struct {
		name  string
		qtype uint16
		src   string
		rcode int
		n     int
	}{
		{"a-only.dns64.example.", dns.TypeAAAA, netlab.ClientAddr, dns.RcodeSuccess, 1},
		{"loopback.dns64.example.", dns.TypeAAAA, netlab.ClientAddr, dns.RcodeSuccess, 0},
		{"nx.dns64.example.", dns.TypeA, netlab.ClientAddr, dns.RcodeNameError, 0},
		{"a-only.dns64.example.", dns.TypeAAAA, stranger[0].String(), dns.RcodeRefused, 0},
	} {
		m, err := queryFromAddr(lab.Client, q.src, resolver, q.name, q.qtype)
		if err != nil || m.Rcode != q.rcode || len(m.Answer) != q.n {
			t.Errorf("%s %s from %q: %v, %v; want %s with %d records", q.name, dns.TypeToString[q.qtype], q.src, m, err, dns.RcodeToString[q.rcode], q.n)
		}
	}
	mfs := scrape(t, ctx, lab.Router, metricsAddr)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"faithif_dns64_queries_total", []string{"type", "aaaa"}, 3},
		{"faithif_dns64_queries_total", []string{"type", "a"}, 1},
		{"faithif_dns64_queries_total", []string{"type", "ptr"}, 0},
		{"faithif_dns64_query_results_total", []string{"result", "noerror"}, 2},
		{"faithif_dns64_query_results_total", []string{"result", "nxdomain"}, 1},
		{"faithif_dns64_query_results_total", []string{"result", "not_allowed"}, 1},
		{"faithif_dns64_query_results_total", []string{"result", "rate_limited"}, 0},
		{"faithif_dns64_synthesized_total", []string{"kind", "aaaa"}, 1},
		{"faithif_dns64_synthesis_suppressed_total", []string{"reason", "always_refused"}, 1},
		{"faithif_dns64_synthesis_suppressed_total", []string{"reason", "access_rules"}, 0},
	} {
		if v := metricValue(t, mfs, c.name, append([]string{"interface", "faith0"}, c.labels...)...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	// Upstream queries: a-only AAAA and A, loopback AAAA and A (NOERROR),
	// nx A (NXDOMAIN).
	for res, n := range map[string]uint64{"noerror": 4, "nxdomain": 1} {
		if m := oneMetric(t, mfs, "faithif_dns64_upstream_duration_seconds", "interface", "faith0", "upstream", "192.0.2.2:53", "result", res); m == nil || m.GetHistogram().GetSampleCount() != n {
			t.Errorf("upstream latency histogram, %s: %v, want %d samples", res, m, n)
		}
	}
	_, text, err := lab.Router.HTTPGet(ctx, "http://"+metricsAddr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	lint := exec.CommandContext(ctx, "promtool", "check", "metrics")
	lint.Stdin = strings.NewReader(text)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if r := lab.Faithif("show", "faith0"); !regexpLine(r.Stdout, `^  dns64 +listen \[2001:db8:1::1\]:53, upstreams 192\.0\.2\.2:53, prefix 2001:db8:46::/96$`) ||
		!regexpLine(r.Stdout, `^  dns64 results +.*not_allowed 1`) {
		t.Errorf("show faith0:\n%s", r.Stdout)
	}
}

// regexpLine reports whether a line of text matches pattern.
func regexpLine(text, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range strings.Split(text, "\n") {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

// unboundConf is unbound's configuration for the interoperability test:
// its own port, directory and pid file, no chroot, no remote control, the
// dns64 module with faithif's prefix, forwarding everything to the lab's
// name server. dns64-ignore-aaaa is unbound's per-name exclusion: the names
// whose AAAA records faithif excludes (::ffff:0:0/96, --dns64-exclude).
const unboundConf = `server:
    interface: %[1]s@5353
    port: 5353
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "%[2]s"
    pidfile: "%[2]s/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    access-control: 2001:db8:1::/64 allow
    module-config: "dns64 iterator"
    dns64-prefix: %[3]s
    dns64-ignore-aaaa: mapped.dns64.example
    dns64-ignore-aaaa: excluded.dns64.example
    serve-original-ttl: yes
    qname-minimisation: no
    minimal-responses: yes
    local-zone: "8.b.d.0.1.0.0.2.ip6.arpa." nodefault
    local-zone: "100.51.198.in-addr.arpa." nodefault
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: %[4]s@53
`

// TestDNS64Unbound: for every kind of name, faithif's DNS64 answers as
// unbound's dns64 module does (Debian's unbound, with the same prefix and
// the same upstream), but where faithif's rules make it differ, each named.
func TestDNS64Unbound(t *testing.T) {
	if _, err := exec.LookPath("unbound"); err != nil {
		t.Fatalf("unbound not found (install it with test/scripts/install-deps.sh): %v", err)
	}
	lab := netlab.New(t)
	nameServer(t, lab, dns64Zone)
	dir := netlab.TempDir(t, "unbound")
	rules := filepath.Join(dir, "faithd.conf")
	if err := os.WriteFile(rules, []byte("2001:db8:1::/64 deny 203.0.113.0/24\n::/0 permit 0.0.0.0/0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	faithif := "[" + netlab.RouterAddr6 + "]:53"
	unbound := "[" + netlab.RouterAddr6 + "]:5353"
	lab.StartFaithif(t, "--access", rules, "--dns64", faithif, "--dns64-upstream", netlab.ServerAddr,
		"--dns64-exclude", "2001:db8:bad::/48")
	conf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(unboundConf, netlab.RouterAddr6, dir, netlab.FaithPrefix, netlab.ServerAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 60*time.Second)
	if out, err := lab.Router.Run(ctx, "unbound-checkconf", conf); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	lab.Start(t, netlab.StartSpec{NS: lab.Router, Env: []string{}, Argv: []string{"unbound", "-d", "-c", conf},
		Ready: func(l string) bool { return strings.Contains(l, "start of service") }})

	// The differences, and why: the relay-aware rule (an address the relay
	// would refuse this client is not handed out), and RFC 6147 5.1.7's
	// TTL (unbound copies the A record's).
	differs := map[string]string{
		"loopback.dns64.example.": "relay: 127.0.0.1 is always refused",
		"router.dns64.example.":   "relay: 192.0.2.1 is the router's own address",
		"denied.dns64.example.":   "relay: the access rules deny 203.0.113.0/24 to this client",
		"two-a.dns64.example.":    "relay: of two A records, 127.0.0.1 is always refused",
		"short.neg.example.":      "TTL: the SOA's negative TTL (30) is below the A record's (300)",
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		kind  string
		cd    bool
	}{
		{"a-only.dns64.example.", dns.TypeAAAA, "A only", false},
		{"aaaa-only.dns64.example.", dns.TypeAAAA, "AAAA only", false},
		{"both.dns64.example.", dns.TypeAAAA, "both", false},
		{"cname.dns64.example.", dns.TypeAAAA, "CNAME chain", false},
		{"nx.dns64.example.", dns.TypeAAAA, "NXDOMAIN", false},
		{"empty.dns64.example.", dns.TypeAAAA, "empty AAAA", false},
		{"mapped.dns64.example.", dns.TypeAAAA, "::ffff: AAAA", false},
		{"excluded.dns64.example.", dns.TypeAAAA, "excluded range", false},
		{"a-only.dns64.example.", dns.TypeA, "A passed through", false},
		{"a-only.dns64.example.", dns.TypeAAAA, "CD set", true},
		{"loopback.dns64.example.", dns.TypeAAAA, "always refused", false},
		{"router.dns64.example.", dns.TypeAAAA, "router address", false},
		{"denied.dns64.example.", dns.TypeAAAA, "access rules", false},
		{"two-a.dns64.example.", dns.TypeAAAA, "one of two refused", false},
		{"short.neg.example.", dns.TypeAAAA, "negative TTL", false},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(tc.name, tc.qtype)
			q.CheckingDisabled = tc.cd
			fm, err := exchangeFrom(lab.Client, "", faithif, q)
			if err != nil {
				t.Fatalf("faithif: %v", err)
			}
			um, err := exchangeFrom(lab.Client, "", unbound, q)
			if err != nil {
				t.Fatalf("unbound: %v", err)
			}
			f, u := summary(fm), summary(um)
			why, named := differs[tc.name]
			if tc.qtype != dns.TypeAAAA || tc.cd {
				named = false
			}
			switch {
			case !named && f != u:
				t.Errorf("%s %s: faithif and unbound differ\nfaithif: %s\nunbound: %s", tc.name, dns.TypeToString[tc.qtype], f, u)
			case named && f == u:
				t.Errorf("%s: expected to differ (%s), both say %s", tc.name, why, f)
			case named:
				t.Logf("%s differs as it should (%s)\nfaithif: %s\nunbound: %s", tc.name, why, f, u)
			default:
				t.Logf("%s %s: both %s", tc.name, dns.TypeToString[tc.qtype], f)
			}
		})
	}
	// Where they differ, faithif's answer is the one the issue asks for.
	for name, want := range map[string]string{
		"loopback.dns64.example.": "NOERROR [] SOA",
		"router.dns64.example.":   "NOERROR [] SOA",
		"denied.dns64.example.":   "NOERROR [] SOA",
		"two-a.dns64.example.":    "NOERROR [two-a.dns64.example. 300 AAAA 2001:db8:46::c633:640f]",
		"short.neg.example.":      "NOERROR [short.neg.example. 30 AAAA 2001:db8:46::c633:6413]",
	} {
		m, err := queryFrom(lab.Client, faithif, name, dns.TypeAAAA)
		if err != nil || summary(m) != want {
			t.Errorf("faithif %s: %s %v, want %s", name, summary(m), err, want)
		}
	}
	// PTR under the prefix: unbound answers under the ip6.arpa name,
	// faithif with a CNAME to the in-addr.arpa name; the PTR is the same.
	rev, _ := dns.ReverseAddr(netlab.FaithAddr("198.51.100.10"))
	fm, err1 := queryFrom(lab.Client, faithif, rev, dns.TypePTR)
	um, err2 := queryFrom(lab.Client, unbound, rev, dns.TypePTR)
	if err1 != nil || err2 != nil || ptrTarget(fm) != "a-only.dns64.example." || ptrTarget(um) != ptrTarget(fm) {
		t.Errorf("PTR %s: faithif %v (%v), unbound %v (%v)", rev, fm, err1, um, err2)
	}
	if len(fm.Answer) != 2 || fm.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Errorf("faithif's PTR answer: %v, want the CNAME, then the PTR", fm.Answer)
	}
	// The access rules reloaded: the next answer follows them, though the
	// upstream's answers are cached.
	writeFile(t, rules, "2001:db8:1::/64 deny 203.0.113.0/24\n2001:db8:1::/64 deny 198.51.100.10\n::/0 permit 0.0.0.0/0\n")
	if r := lab.Faithif("reload", "faith0"); r.ExitCode != 0 {
		t.Fatalf("reload: %s", r)
	}
	if m, err := queryFrom(lab.Client, faithif, "a-only.dns64.example.", dns.TypeAAAA); err != nil || summary(m) != "NOERROR [] SOA" {
		t.Errorf("a-only after the rules deny 198.51.100.10: %s %v, want no AAAA", summary(m), err)
	}
}

// summary renders what a DNS64 answer says: RCODE, the answer records
// (sorted, with TTLs), and whether a SOA came with a negative answer.
func summary(m *dns.Msg) string {
	if m == nil {
		return "no answer"
	}
	var rrs []string
	for _, rr := range m.Answer {
		h := rr.Header()
		rrs = append(rrs, fmt.Sprintf("%s %d %s %s", strings.ToLower(h.Name), h.Ttl, dns.TypeToString[h.Rrtype], strings.TrimPrefix(rr.String(), h.String())))
	}
	sort.Strings(rrs)
	s := fmt.Sprintf("%s %v", dns.RcodeToString[m.Rcode], rrs)
	if len(m.Answer) == 0 {
		for _, rr := range m.Ns {
			if rr.Header().Rrtype == dns.TypeSOA {
				s += " SOA"
			}
		}
	}
	return s
}

// ptrTarget returns the target of an answer's PTR record.
func ptrTarget(m *dns.Msg) string {
	if m == nil {
		return ""
	}
	for _, rr := range m.Answer {
		if p, ok := rr.(*dns.PTR); ok {
			return p.Ptr
		}
	}
	return ""
}

// TestDNS64StartErrors: a listen address the responder cannot bind (not
// the router's, or in use) fails create, in the foreground or the
// background, and run, with exit status 1, the reason, and nothing left
// behind; a DNS64 flag without --dns64 is a usage error.
func TestDNS64StartErrors(t *testing.T) {
	lab := netlab.New(t)
	ns := lab.Router
	bin := netlab.Binary(t)
	busy, err := ns.Listen("tcp", "["+netlab.RouterAddr6+"]:53")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	linksBefore, err := ns.LinkNames()
	if err != nil {
		t.Fatal(err)
	}
	dir := netlab.TempDir(t, "conf")
	conf := filepath.Join(dir, "faithif.conf")
	writeFile(t, conf, `[[interface]]
name = "faith0"
prefixes = ["`+netlab.FaithPrefix+`"]
  [[interface.route]]
  prefix = "`+netlab.FaithPrefix+`"
  [interface.dns64]
  listen = ["[`+netlab.RouterAddr6+`]:53"]
  upstreams = ["`+netlab.ServerAddr+`"]
`)
	create := []string{"create", "faith0", "--prefix", netlab.FaithPrefix, "--route", "--dns64-upstream", netlab.ServerAddr}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"NotOurs", append(create, "-f", "--dns64", "[2001:db8:9::1]:53"), 1, `faithif: create faith0: dns64: listen: listen udp \[2001:db8:9::1\]:53: bind: cannot assign requested address`},
		{"InUse", append(create, "-f", "--dns64", "["+netlab.RouterAddr6+"]:53"), 1, `faithif: create faith0: dns64: listen: listen tcp \[2001:db8:1::1\]:53: bind: address already in use`},
		{"InUseBackground", append(create, "--dns64", "["+netlab.RouterAddr6+"]:53"), 1, `dns64: listen: listen tcp \[2001:db8:1::1\]:53: bind: address already in use`},
		{"Run", []string{"run", "--config", conf}, 1, `create faith0: dns64: listen: listen tcp \[2001:db8:1::1\]:53: bind: address already in use`},
		{"NoListen", []string{"create", "faith0", "-f", "--dns64-upstream", netlab.ServerAddr}, 2, `faithif: --dns64: missing`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := netlab.RunCommand(ns.Command(testCtx(t, 20*time.Second), lab.Env(), bin, c.args...))
			if r.Err != nil || r.ExitCode != c.code || !regexp.MustCompile(c.want).MatchString(r.Stderr) {
				t.Errorf("faithif %s: %s; want exit %d and /%s/", strings.Join(c.args, " "), r, c.code, c.want)
			}
			links, err := ns.LinkNames()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(links, linksBefore) {
				t.Errorf("links after the failed start: %v, before: %v", links, linksBefore)
			}
			if socks, _ := filepath.Glob(filepath.Join(lab.RunDir, "*.sock")); len(socks) > 0 {
				t.Errorf("sockets left in the run directory: %v", socks)
			}
			if routes, _ := ns.IP("-6", "route", "show", netlab.FaithPrefix); strings.TrimSpace(routes) != "" {
				t.Errorf("route left: %s", routes)
			}
		})
	}
}
