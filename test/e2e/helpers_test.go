package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/faithif/faithif/test/netlab"
)

// Shared helpers of the end-to-end tests: those that more than one test
// file calls. A helper that only one file calls is in that file.

// The test binary: netlab.Main sweeps away the namespaces of earlier runs
// that crashed.

func TestMain(m *testing.M) { os.Exit(netlab.Main(m)) }

// Labs, contexts and faithif's status.

// startLab builds a lab and starts faithif in it with args (after
// "create faith0 --prefix 2001:db8:46::/96 -f").
func startLab(t *testing.T, args ...string) (*netlab.Lab, *netlab.Faithif) {
	t.Helper()
	lab := netlab.New(t)
	f := lab.StartFaithif(t, args...)
	return lab, f
}

// testCtx returns a context that ends after d or at the test's deadline,
// whichever is first.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	if dl, ok := t.Deadline(); ok {
		ctx2, cancel2 := context.WithDeadline(ctx, dl.Add(-5*time.Second))
		t.Cleanup(cancel2)
		ctx = ctx2
	}
	t.Cleanup(cancel)
	return ctx
}

// mustShow runs "faithif show faith0 --json".
func mustShow(t *testing.T, lab *netlab.Lab) *netlab.Status {
	t.Helper()
	st, err := lab.Show()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitStatus polls "faithif show --json" until ok returns true or timeout
// passes, and returns the last status.
func waitStatus(t *testing.T, lab *netlab.Lab, timeout time.Duration, ok func(*netlab.Status) bool) *netlab.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := lab.Show()
		if err != nil {
			t.Fatalf("%v", err)
		}
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Servers in the server namespace.

// listenServer opens a TCP listener on the server's IPv4 address (random
// port) and returns it with its port.
func listenServer(t *testing.T, lab *netlab.Lab) (*net.TCPListener, int) {
	t.Helper()
	l := lab.Server.ListenTCP(t, "tcp4", netlab.ServerAddr+":0")
	return l, l.Addr().(*net.TCPAddr).Port
}

// serve accepts connections on l until l is closed, running h for each in
// its own goroutine. The test's cleanup closes l and waits for the handlers.
func serve(t *testing.T, l *net.TCPListener, h func(c *net.TCPConn)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				h(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("server handlers still running 10 s after the test")
		}
	})
}

// echoHandler copies everything back until the client half-closes, then
// half-closes in turn and waits for the client to close.
func echoHandler(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(60 * time.Second))
	io.Copy(c, c)
	c.CloseWrite()
	io.Copy(io.Discard, c)
}

// echoServer starts an echo server on the server namespace and returns its
// port.
func echoServer(t *testing.T, lab *netlab.Lab) int {
	t.Helper()
	l, port := listenServer(t, lab)
	serve(t, l, echoHandler)
	return port
}

// countingListener listens on address in ns and counts the connections it
// accepts (each is closed at once).
func countingListener(t *testing.T, ns *netlab.Namespace, network, address string) (int, *atomic.Int32) {
	t.Helper()
	l := ns.ListenTCP(t, network, address)
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, &n
}

// expectNoAccept fails the test if the counting listener got a connection,
// after giving a relayed connection time to arrive.
func expectNoAccept(t *testing.T, n *atomic.Int32, what string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Errorf("%s got %d connection(s); want none: faithif relayed a refused flow", what, got)
	}
}

// Addresses through faithif, and connections from the client namespace.

// serverAddr returns the client-side address of the server's port through
// faithif: [2001:db8:46::c000:202]:port.
func serverAddr(port int) string {
	return netlab.FaithHostPort(netlab.ServerAddr, port)
}

// faithTo returns the client's address of ip4:port through the RFC 6052
// prefix (/32, /40, /48, /56, /64 or /96): [ip4 embedded in prefix]:port,
// with bits 64..71 (the "u" octet) skipped.
func faithTo(prefix, ip4 string, port int) string {
	p := netip.MustParsePrefix(prefix)
	a := p.Addr().As16()
	v4 := netip.MustParseAddr(ip4).As4()
	i := p.Bits() / 8
	for _, b := range v4 {
		if i == 8 {
			i++
		}
		a[i] = b
		i++
	}
	return net.JoinHostPort(netip.AddrFrom16(a).String(), strconv.Itoa(port))
}

// dialTimeout bounds every connect to the server: a lost SYN is retried
// by the kernel for much longer than a test should wait.
const dialTimeout = 30 * time.Second

// dialServer connects from the client namespace to the server through
// faithif, giving up after dialTimeout.
func dialServer(ctx context.Context, lab *netlab.Lab, port int) (*net.TCPConn, error) {
	return dialTo(ctx, lab, serverAddr(port))
}

// dialTo connects from the client namespace to addr (host:port), giving up
// after dialTimeout.
func dialTo(ctx context.Context, lab *netlab.Lab, addr string) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := lab.Client.Dial(ctx, "tcp6", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// mustDialServer is dialServer that fails the test on error and closes the
// connection at the end of the test.
func mustDialServer(t *testing.T, ctx context.Context, lab *netlab.Lab, port int) *net.TCPConn {
	t.Helper()
	c, err := dialServer(ctx, lab, port)
	if err != nil {
		t.Fatalf("connect from client to %s: %v", serverAddr(port), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nextClientPort hands out fixed client source ports, below the kernel's
// ephemeral range, so that a test can find the log lines of one flow by its
// client=[2001:db8:1::2]:PORT.
var nextClientPort atomic.Int32

func init() { nextClientPort.Store(20000) }

func clientPort() int { return int(nextClientPort.Add(1)) }

// connectFrom connects from the client's fixed port lport to addr
// (host:port), giving up after timeout, and returns the connection (nil on
// error), the error and how long connect took.
func connectFrom(ctx context.Context, lab *netlab.Lab, lport int, addr string, timeout time.Duration) (*net.TCPConn, error, time.Duration) {
	return connectFromAddr(ctx, lab, netip.MustParseAddr(netlab.ClientAddr), lport, addr, timeout)
}

// connectFromAddr is connectFrom from the client's address src (one of
// its link's: netlab.Lab.AddClientAddrs); lport 0 is any port.
func connectFromAddr(ctx context.Context, lab *netlab.Lab, src netip.Addr, lport int, addr string, timeout time.Duration) (*net.TCPConn, error, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	c, err := lab.Client.DialFrom(ctx, "tcp6", netip.AddrPortFrom(src, uint16(lport)).String(), addr)
	d := time.Since(start)
	if err != nil {
		return nil, err, d
	}
	return c.(*net.TCPConn), nil, d
}

// connectGuard bounds a connect expected to fail: a hang guard only, far
// beyond any answer faithif gives (its dial timeouts are a few seconds) and
// far short of the client's own give-up (about 2 minutes of SYN
// retransmissions, ending in ETIMEDOUT).
const connectGuard = 30 * time.Second

// expectConnectErr connects from client port lport to addr and fails the
// test unless connect fails with want: the errno is the mechanism (the RST
// or the ICMPv6 error faithif answered with); how long it took decides
// nothing (connectGuard is a hang guard). It returns how long connect took,
// for the log.
func expectConnectErr(t *testing.T, ctx context.Context, lab *netlab.Lab, lport int, addr string, want syscall.Errno) time.Duration {
	t.Helper()
	return expectConnectErrFrom(t, ctx, lab, netip.MustParseAddr(netlab.ClientAddr), lport, addr, want)
}

// expectConnectErrFrom is expectConnectErr from the client's address src.
func expectConnectErrFrom(t *testing.T, ctx context.Context, lab *netlab.Lab, src netip.Addr, lport int, addr string, want syscall.Errno) time.Duration {
	t.Helper()
	c, err, d := connectFromAddr(ctx, lab, src, lport, addr, connectGuard)
	from := netip.AddrPortFrom(src, uint16(lport))
	if err == nil {
		c.Close()
		t.Errorf("connect from %s to %s succeeded after %v; want %v (%s)", from, addr, d, want, errnoName(want))
		return d
	}
	if !errors.Is(err, want) {
		t.Errorf("connect from %s to %s after %v: %v; want %v (%s)", from, addr, d.Round(time.Millisecond), err, want, errnoName(want))
	} else {
		t.Logf("connect from %s to %s: %s after %v", from, addr, errnoName(want), d.Round(time.Microsecond))
	}
	return d
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EACCES:
		return "EACCES"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.EHOSTUNREACH:
		return "EHOSTUNREACH"
	case syscall.ENETUNREACH:
		return "ENETUNREACH"
	}
	return fmt.Sprintf("errno %d", int(e))
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Data: reproducible random bytes, their hashes, echoes through faithif.

// randReader returns size bytes of reproducible pseudo-random data.
func randReader(seed uint64, size int64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(s), size)
}

func randBytes(seed uint64, size int) []byte {
	b := make([]byte, size)
	io.ReadFull(randReader(seed, int64(size)), b)
	return b
}

type hashResult struct {
	n   int64
	sum [32]byte
	err error
	at  time.Time
}

// sendHashed writes size random bytes to w and returns their SHA-256.
func sendHashed(w io.Writer, seed uint64, size int64) hashResult {
	h := sha256.New()
	n, err := io.CopyBuffer(w, io.TeeReader(randReader(seed, size), h), make([]byte, 256<<10))
	r := hashResult{n: n, err: err, at: time.Now()}
	copy(r.sum[:], h.Sum(nil))
	return r
}

// recvHashed reads r to EOF and returns the SHA-256 of what it read.
func recvHashed(r io.Reader) hashResult {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	res := hashResult{n: n, err: err, at: time.Now()}
	copy(res.sum[:], h.Sum(nil))
	return res
}

func mibps(n int64, d time.Duration) float64 {
	return float64(n) / (1 << 20) / d.Seconds()
}

// echoExchange sends size random bytes on c (an echo flow) while reading
// the echo, and checks that the echo is byte-exact.
func echoExchange(t *testing.T, c *net.TCPConn, seed uint64, size int) {
	t.Helper()
	if err := tryEchoExchange(c, seed, size); err != nil {
		t.Fatal(err)
	}
}

// tryEchoExchange is echoExchange returning what went wrong.
func tryEchoExchange(c *net.TCPConn, seed uint64, size int) error {
	data := randBytes(seed, size)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, size)
	_, rerr := io.ReadFull(c, got)
	if err := <-werr; err != nil {
		return fmt.Errorf("write %d bytes on the open flow: %w", size, err)
	}
	if rerr != nil {
		return fmt.Errorf("read the echo of %d bytes on the open flow: %w", size, rerr)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("the echo of %d bytes on the open flow differs", size)
	}
	return nil
}

// echoRoundTrip sends msg on a new connection from the client to an echo
// server at addr (host:port, e.g. serverAddr(port)), half-closes and
// checks the echo.
func echoRoundTrip(ctx context.Context, lab *netlab.Lab, addr, msg string) error {
	c, err := dialTo(ctx, lab, addr)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write to %s: %w", addr, err)
	}
	if err := c.CloseWrite(); err != nil {
		return fmt.Errorf("close write to %s: %w", addr, err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read echo from %s: %w", addr, err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo from %s = %q, want %q", addr, got, msg)
	}
	return nil
}

// echoFlows opens n flows to addr from the client, each sending size
// random bytes (seeded by seed+i) while reading the echo, and checks the
// echo byte for byte and the close.
func echoFlows(t *testing.T, ctx context.Context, lab *netlab.Lab, addr string, n, size int, seed uint64) {
	t.Helper()
	for i := range n {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		nc, err := lab.Client.Dial(dctx, "tcp6", addr)
		cancel()
		if err != nil {
			t.Fatalf("flow %d to %s: connect: %v", i, addr, err)
		}
		c := nc.(*net.TCPConn)
		echoExchange(t, c, seed+uint64(i), size)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.CloseWrite()
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Errorf("flow %d to %s: after the echo: %d more bytes, %v; want a clean EOF", i, addr, len(b), err)
		}
		c.Close()
	}
}

// faithif's log lines.

func hasAll(line string, subs ...string) bool {
	if line == "" {
		return false
	}
	for _, s := range subs {
		if !strings.Contains(line, s) {
			return false
		}
	}
	return true
}

// findLine returns the first line of log holding every one of subs.
func findLine(log string, subs ...string) (string, bool) {
	for _, line := range strings.Split(log, "\n") {
		if hasAll(line, subs...) {
			return line, true
		}
	}
	return "", false
}

// countLines counts the lines of log holding every one of subs.
func countLines(log string, subs ...string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if hasAll(line, subs...) {
			n++
		}
	}
	return n
}

// clientTag is how faithif's log names the client's flow from lport.
func clientTag(lport int) string {
	return fmt.Sprintf("client=[%s]:%d ", netlab.ClientAddr, lport)
}

// expectRefusedLog waits up to 2 s for the "flow refused" log line of the
// flow from lport and checks that it holds every one of subs.
func expectRefusedLog(t *testing.T, f *netlab.Faithif, lport int, subs ...string) string {
	t.Helper()
	line, ok := f.WaitLog(2*time.Second, func(l string) bool { return hasAll(l, `msg="flow refused"`, clientTag(lport)) })
	if !ok {
		t.Errorf("no flow refused log line for %s; log:\n%s", clientTag(lport), f.Stderr())
		return ""
	}
	for _, s := range subs {
		if !strings.Contains(line, s) {
			t.Errorf("the flow refused log line lacks %q: %s", s, line)
		}
	}
	return line
}

// The router: routes, links, what faithif leaves behind.

// routeFaith routes prefix to dev in the router by hand (what --route does).
func routeFaith(t *testing.T, lab *netlab.Lab, prefix, dev string) {
	t.Helper()
	if _, err := lab.Router.IP("-6", "route", "replace", prefix, "dev", dev); err != nil {
		t.Fatal(err)
	}
}

// hasLink reports whether the router has a link called name.
func hasLink(t *testing.T, lab *netlab.Lab, name string) bool {
	t.Helper()
	links, err := lab.Router.LinkNames()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(links, name)
}

// faithLinks returns the router's links whose name starts with "faith".
func faithLinks(t *testing.T, lab *netlab.Lab) []string {
	t.Helper()
	links, err := lab.Router.LinkNames()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l, "faith") {
			out = append(out, l)
		}
	}
	return out
}

// checkNothingLeft fails the test if the router has a faith link, the run
// dir a control socket, or a faithif process of the lab is still running.
func checkNothingLeft(t *testing.T, lab *netlab.Lab, what string) {
	t.Helper()
	if l := faithLinks(t, lab); len(l) > 0 {
		t.Errorf("%s: faith links left in the router: %v", what, l)
	}
	if socks, _ := filepath.Glob(filepath.Join(lab.RunDir, "*.sock")); len(socks) > 0 {
		t.Errorf("%s: control sockets left in the run dir: %v", what, socks)
	}
	if pids := netlab.RunDirPids(lab.RunDir); len(pids) > 0 {
		t.Errorf("%s: faithif processes left running: %v", what, pids)
	}
}

// Configuration files.

// writeFile writes text to path.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// lineOf returns the 1-based number of the line on which sub (which may
// span lines) first starts in text.
func lineOf(t *testing.T, text, sub string) int {
	t.Helper()
	i := strings.Index(text, sub)
	if i < 0 {
		t.Fatalf("no %q in:\n%s", sub, text)
	}
	return strings.Count(text[:i], "\n") + 1
}

// "faithif run" and the router state it must leave as found.

// metricsAddr is where the tests serve metrics, on the loopback of the
// lab's router namespace (not the host's).
const metricsAddr = "127.0.0.1:9464"

// stopRun sends SIGTERM to a "faithif run" process and checks that it
// exits with status 0 within bound.
func stopRun(t *testing.T, f *netlab.Faithif, bound time.Duration) time.Duration {
	t.Helper()
	f.ExpectExit()
	start := time.Now()
	if err := f.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if !f.Wait(bound) {
		t.Fatalf("faithif run still running %v after SIGTERM\nstderr:\n%s", bound, f.Stderr())
	}
	d := time.Since(start)
	if err := f.ExitErr(); err != nil {
		t.Errorf("faithif run exit after SIGTERM: %v, want status 0\nstderr:\n%s", err, f.Stderr())
	}
	t.Logf("faithif run exited %v after SIGTERM", d.Round(time.Millisecond))
	return d
}

// nsState is what "faithif run" may change in a namespace, as text to
// compare: links, addresses, IPv4 and IPv6 routes of every table, policy
// rules, some sysctls, the keepfaith value as "faithif sysctl" reads it,
// and what is in the run directory (control sockets).
type nsState struct {
	Links, Addrs, Routes6, Routes4, Rules6 string
	Sysctls                                map[string]string
	KeepFaith                              string
	RunDir                                 []string
}

// runSysctls are the kernel parameters the run tests' configurations set,
// and the per-link copies that setting "all" changes.
var runSysctls = []string{
	"net.ipv6.conf.all.forwarding",
	"net.ipv6.conf.default.forwarding",
	"net.ipv6.conf." + netlab.RouterClientLink + ".forwarding",
	"net.ipv6.conf.default.hop_limit",
	"net.ipv6.conf.all.hop_limit",
	"net.ipv6.conf.default.accept_dad",
}

// snapshot records the state of ns, whose faithif run directory is runDir.
func snapshot(t *testing.T, ns *netlab.Namespace, runDir string) nsState {
	t.Helper()
	// Lines sorted: the kernel lists some routes (the anycast ones IPv6
	// forwarding adds, for instance) in an order that can change when they
	// are removed and added again; the set is the state.
	ip := func(args ...string) string {
		out, err := ns.IP(args...)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	st := nsState{
		Links:   ip("-o", "link", "show"),
		Addrs:   ip("-o", "addr", "show"),
		Routes6: ip("-6", "route", "show", "table", "all"),
		Routes4: ip("-4", "route", "show", "table", "all"),
		Rules6:  ip("-6", "rule", "show"),
		Sysctls: map[string]string{},
	}
	for _, k := range runSysctls {
		v, err := ns.ReadSysctl(k)
		if err != nil {
			t.Fatal(err)
		}
		st.Sysctls[k] = v
	}
	st.KeepFaith = keepfaith(t, ns, runDir)
	ents, err := os.ReadDir(runDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		// The stored keepfaith value is compared through faithif sysctl;
		// logs of background instances are not state.
		if e.Name() != "keepfaith" && !strings.HasSuffix(e.Name(), ".log") {
			st.RunDir = append(st.RunDir, e.Name())
		}
	}
	return st
}

// keepfaith returns what "faithif sysctl net.inet6.ip6.keepfaith" prints
// in ns with FAITHIF_RUN_DIR=runDir.
func keepfaith(t *testing.T, ns *netlab.Namespace, runDir string) string {
	t.Helper()
	r := faithifIn(t, ns, runDir, "sysctl", "net.inet6.ip6.keepfaith")
	if r.ExitCode != 0 {
		t.Fatalf("faithif sysctl net.inet6.ip6.keepfaith: %s", r)
	}
	return strings.TrimSpace(r.Stdout)
}

// faithifIn runs "faithif ARGS..." in ns with FAITHIF_RUN_DIR=runDir.
func faithifIn(t *testing.T, ns *netlab.Namespace, runDir string, args ...string) netlab.Result {
	t.Helper()
	bin := netlab.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), netlab.CommandTimeout)
	defer cancel()
	return netlab.RunCommand(ns.Command(ctx, []string{"FAITHIF_RUN_DIR=" + runDir}, bin, args...))
}

// sameState fails the test with what differs between want and got.
func sameState(t *testing.T, what string, want, got nsState) {
	t.Helper()
	diff := func(name, a, b string) {
		if a != b {
			t.Errorf("%s: %s changed:\nbefore:\n%s\nafter:\n%s", what, name, a, b)
		}
	}
	diff("links (ip -o link)", want.Links, got.Links)
	diff("addresses (ip -o addr)", want.Addrs, got.Addrs)
	diff("IPv6 routes (ip -6 route show table all)", want.Routes6, got.Routes6)
	diff("IPv4 routes (ip -4 route show table all)", want.Routes4, got.Routes4)
	diff("IPv6 rules (ip -6 rule)", want.Rules6, got.Rules6)
	for _, k := range runSysctls {
		diff("sysctl "+k, want.Sysctls[k], got.Sysctls[k])
	}
	diff("keepfaith (faithif sysctl)", want.KeepFaith, got.KeepFaith)
	diff("run directory", strings.Join(want.RunDir, " "), strings.Join(got.RunDir, " "))
}

// Prometheus metrics.

// scrape fetches http://addr/metrics from inside ns and parses the
// Prometheus text format.
func scrape(t *testing.T, ctx context.Context, ns *netlab.Namespace, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := tryScrape(ctx, ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func tryScrape(ctx context.Context, ns *netlab.Namespace, addr string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := ns.HTTPClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s in %s: %w", addr, ns.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("scrape %s: status %d: %s", addr, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("scrape %s: Content-Type %q, want the text format", addr, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: parse: %w\n%s", addr, err, body)
	}
	return mfs, nil
}

// labelsMatch reports whether m has every label in want (name, value,
// name, value...).
func labelsMatch(m *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// metricValue returns the counter or gauge value of the one sample of
// family name with the given labels (name, value, ...); it fails the test
// if there is not exactly one.
func metricValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := oneMetric(t, mfs, name, labels...)
	if m == nil {
		return -1
	}
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	t.Errorf("%s%v is neither a counter nor a gauge", name, labels)
	return -1
}

func oneMetric(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Errorf("no metric family %s", name)
		return nil
	}
	var found []*dto.Metric
	for _, m := range mf.GetMetric() {
		if labelsMatch(m, labels) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Errorf("%d samples of %s with labels %v, want 1", len(found), name, labels)
		return nil
	}
	return found[0]
}

// metricSum adds up the samples of family name with the given labels.
func metricSum(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var s float64
	for _, m := range mfs[name].GetMetric() {
		if labelsMatch(m, labels) {
			s += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return s
}

// countReads reads c until it fails, adding every byte read to n; the
// returned channel is closed when it has stopped.
func countReads(c net.Conn, n *atomic.Int64) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256<<10)
		for {
			k, err := c.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	}()
	return done
}

// localAddrsReadings counts faithif's "local addresses read" debug lines:
// take it before changing an address or a local route in the router, then
// waitLocalAddrsRead for a reading after it.
func localAddrsReadings(f *netlab.Faithif) int {
	return countLines(f.Stderr(), `msg="local addresses read"`)
}

// waitLocalAddrsRead waits until faithif (started with --log-level debug)
// has read its local addresses more than before times: the state after a
// netlink change, instead of a sleep.
func waitLocalAddrsRead(t *testing.T, f *netlab.Faithif, before int) {
	t.Helper()
	if _, ok := f.WaitLog(20*time.Second, func(string) bool { return localAddrsReadings(f) > before }); !ok {
		t.Fatalf("faithif did not read its local addresses again after the change (20 s hang guard):\n%s", f.Stderr())
	}
}
