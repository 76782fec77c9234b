package soak

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

func TestMain(m *testing.M) { os.Exit(netlab.Main(m)) }

// settings are the soak's knobs (see the package doc).
type settings struct {
	duration time.Duration
	workers  int
	rate     int
	idle     int
	bulk     int
	rssSlack uint64 // bytes
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", key, v)
	}
	return n
}

func loadSettings(t *testing.T) settings {
	if os.Getenv("SOAK_SECONDS") == "" {
		// Not with the end-to-end tests (go test ./test/...), beside
		// which it would run in parallel: make test runs it on its own.
		t.Skip("SOAK_SECONDS not set: run it with make soak (600 s) or make test (60 s)")
	}
	s := settings{
		duration: time.Duration(envInt(t, "SOAK_SECONDS", 0)) * time.Second,
		workers:  envInt(t, "SOAK_WORKERS", 16),
		rate:     envInt(t, "SOAK_RATE", 200),
		idle:     envInt(t, "SOAK_IDLE", 200),
		bulk:     envInt(t, "SOAK_BULK", 2),
		rssSlack: uint64(envInt(t, "SOAK_RSS_SLACK_MB", 32)) << 20,
	}
	if s.duration <= 0 || s.workers == 0 || s.rate == 0 {
		t.Fatalf("SOAK_SECONDS, SOAK_WORKERS and SOAK_RATE must be positive")
	}
	return s
}

const (
	// metricsAddr is where faithif serves its metrics, in the router.
	metricsAddr = "127.0.0.1:9464"
	// idleTimeout is faithif's --idle-timeout: idle flows held longer are
	// reset by faithif, which is part of the churn.
	idleTimeout = 8 * time.Second
	// warmup is the churn before the baseline is read.
	warmup = 10 * time.Second
	// connTimeout bounds each connection's life (but an idle one's hold).
	connTimeout = 30 * time.Second
	// settleTimeout bounds each wait for faithif to come back.
	settleTimeout = 60 * time.Second
)

// TestSoak churns connections through faithif and checks that goroutines,
// descriptors, memory and open flows come back to their baseline.
func TestSoak(t *testing.T) {
	cfg := loadSettings(t)
	lab := netlab.New(t)
	for _, ns := range []*netlab.Namespace{lab.Client, lab.Router} {
		// Many short connections: reuse TIME_WAIT ports, and more of them.
		for k, v := range map[string]string{"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "10000 65000"} {
			if err := ns.Sysctl(k, v); err != nil {
				t.Fatalf("sysctl %s in %s: %v", k, ns.Name, err)
			}
		}
	}
	lab.StartFaithif(t, "--keepfaith", "--metrics", metricsAddr, "--idle-timeout", idleTimeout.String(), "--log-level", "warn")
	srv := startServer(t, lab)
	target := netlab.FaithHostPort(netlab.ServerAddr, srv.port)

	t.Logf("warm-up: %v of churn", warmup)
	runChurn(t, lab, target, cfg, warmup, nil)
	settle(t, lab, nil)
	base := scrape(t, lab)
	t.Logf("baseline: %v", base)

	t.Logf("soak: %v of churn (%d loops, at most %d connections/s, %d idle flows, %d bulk loops)", cfg.duration, cfg.workers, cfg.rate, cfg.idle, cfg.bulk)
	peak := base
	stats := runChurn(t, lab, target, cfg, cfg.duration, func() {
		if m, err := scrapeErr(lab); err == nil {
			peak = peak.max(m)
		}
	})
	start := time.Now()
	after := settle(t, lab, &base)
	took := time.Since(start).Round(time.Second)
	srv.close(t)

	st, err := lab.Show()
	if err != nil {
		t.Fatal(err)
	}
	ok := func(b bool) string {
		if b {
			return "ok"
		}
		return "NOT BACK"
	}
	var tb strings.Builder
	tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "faithif\tbaseline\tpeak\tafter\tlimit\t\t\n")
	fmt.Fprintf(tw, "goroutines\t%d\t%d\t%d\t%d\t%s\t\n", base.goroutines, peak.goroutines, after.goroutines, base.goroutines, ok(after.goroutines <= base.goroutines))
	fmt.Fprintf(tw, "open fds\t%d\t%d\t%d\t%d\t%s\t\n", base.fds, peak.fds, after.fds, base.fds, ok(after.fds <= base.fds))
	fmt.Fprintf(tw, "RSS MiB\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", mib(base.rss), mib(peak.rss), mib(after.rss), mib(base.rss+cfg.rssSlack), ok(after.rss <= base.rss+cfg.rssSlack))
	fmt.Fprintf(tw, "flows open\t%d\t%d\t%d\t%d\t%s\t\n", base.flowsOpen, peak.flowsOpen, st.FlowsOpen, 0, ok(st.FlowsOpen == 0))
	fmt.Fprintf(tw, "handshakes\t%d\t%d\t%d\t%d\t%s\t\n", 0, peak.handshakes, st.HandshakesInFlight, 0, ok(st.HandshakesInFlight == 0))
	tw.Flush()
	fmt.Fprintf(&tb, "back in %v after the churn; RSS slack %d MiB (SOAK_RSS_SLACK_MB)\n\n", took, cfg.rssSlack>>20)
	tw = tabwriter.NewWriter(&tb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "connections\tstarted\tas expected\tunexpected\t\n")
	for k := kind(0); k < numKinds; k++ {
		s := &stats.kinds[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", k, s.started.Load(), s.ok.Load(), s.bad.Load())
	}
	fmt.Fprintf(tw, "server side\t%d\t%d\t%d\t\n", srv.conns.Load(), srv.conns.Load()-srv.bad.Load(), srv.bad.Load())
	tw.Flush()
	fmt.Fprintf(&tb, "faithif: flows_total %d, outcomes %v, ends %v, bytes in %d out %d\n",
		st.FlowsTotal, st.FlowOutcomes, st.FlowEnds, st.BytesIn, st.BytesOut)
	fmt.Print(tb.String())

	if after.goroutines > base.goroutines {
		t.Errorf("faithif's goroutines did not come back: %d after the churn, %d before", after.goroutines, base.goroutines)
	}
	if after.fds > base.fds {
		t.Errorf("faithif's open descriptors did not come back: %d after the churn, %d before", after.fds, base.fds)
	}
	if after.rss > base.rss+cfg.rssSlack {
		t.Errorf("faithif's RSS did not come back: %.1f MiB after the churn, %.1f MiB before (slack %d MiB)", mib(after.rss), mib(base.rss), cfg.rssSlack>>20)
	}
	if st.FlowsOpen != 0 || st.HandshakesInFlight != 0 {
		t.Errorf("faithif still reports %d open flows and %d handshakes", st.FlowsOpen, st.HandshakesInFlight)
	}
	for _, e := range stats.errors() {
		t.Errorf("client: %s", e)
	}
	for _, e := range srv.errors() {
		t.Errorf("server: %s", e)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// Faithif's resources, from its metrics and `faithif show --json`.

type sample struct {
	goroutines, fds, rss  uint64
	flowsOpen, handshakes int64
}

func (s sample) String() string {
	return fmt.Sprintf("goroutines %d, open fds %d, RSS %.1f MiB, flows open %d", s.goroutines, s.fds, mib(s.rss), s.flowsOpen)
}

func (s sample) max(o sample) sample {
	return sample{max(s.goroutines, o.goroutines), max(s.fds, o.fds), max(s.rss, o.rss), max(s.flowsOpen, o.flowsOpen), max(s.handshakes, o.handshakes)}
}

func scrape(t *testing.T, lab *netlab.Lab) sample {
	t.Helper()
	s, err := scrapeErr(lab)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scrapeErr reads the process metrics from faithif's /metrics, and the
// flows from its gauges.
func scrapeErr(lab *netlab.Lab) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, body, err := lab.Router.HTTPGet(ctx, "http://"+metricsAddr+"/metrics")
	if err != nil {
		return sample{}, err
	}
	if code != 200 {
		return sample{}, fmt.Errorf("GET /metrics: status %d", code)
	}
	var s sample
	want := map[string]func(float64){
		"go_goroutines":                 func(v float64) { s.goroutines = uint64(v) },
		"process_open_fds":              func(v float64) { s.fds = uint64(v) },
		"process_resident_memory_bytes": func(v float64) { s.rss = uint64(v) },
		"faithif_flows_open":            func(v float64) { s.flowsOpen = int64(v) },
		"faithif_handshakes_in_flight":  func(v float64) { s.handshakes = int64(v) },
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(line, "#") {
			continue
		}
		name := f[0]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		if set, ok := want[name]; ok {
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return sample{}, fmt.Errorf("/metrics: %q: %v", line, err)
			}
			set(v)
			seen[name] = true
		}
	}
	for name := range want {
		if !seen[name] {
			return sample{}, fmt.Errorf("/metrics has no %s", name)
		}
	}
	return s, nil
}

// settle waits until faithif reports no open flow and no handshake, then,
// if base is set, until its goroutines and descriptors are back to base (or
// settleTimeout passes), and returns the last sample.
func settle(t *testing.T, lab *netlab.Lab, base *sample) sample {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		st, err := lab.Show()
		if err != nil {
			t.Fatal(err)
		}
		if st.FlowsOpen == 0 && st.HandshakesInFlight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%v after the churn faithif still reports %d open flows and %d handshakes", settleTimeout, st.FlowsOpen, st.HandshakesInFlight)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if base == nil {
		time.Sleep(3 * time.Second) // flows' goroutines end after the counters
		return scrape(t, lab)
	}
	deadline = time.Now().Add(settleTimeout)
	for {
		s := scrape(t, lab)
		if (s.goroutines <= base.goroutines && s.fds <= base.fds) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(time.Second)
	}
}

// The workload.

// kind is one kind of connection of the churn.
type kind int

const (
	kindEcho            kind = iota // send, half-close, read the echo to EOF
	kindClientReset                 // send, then reset
	kindServerReset                 // the server resets: the client reads ECONNRESET
	kindServerHalfClose             // the server sends and half-closes first, then reads the client's bytes
	kindIdle                        // nothing for 1-15 s (beyond the idle timeout, faithif resets it), then close or reset
	kindBulk                        // the server sends 4-16 MiB and closes
	numKinds
)

var kindNames = [numKinds]string{"echo, client half-close", "client reset", "server reset", "server half-close first", "idle", "bulk"}

func (k kind) String() string { return kindNames[k] }

// Commands: the first byte a client sends says what the server does.
var kindCommand = [numKinds]byte{'e', 'e', 'r', 's', 'i', 'b'}

type kindStats struct{ started, ok, bad atomic.Uint64 }

type churnStats struct {
	kinds [numKinds]kindStats
	mu    sync.Mutex
	errs  []string
	nerrs int
}

// fail records an unexpected outcome of a connection of kind k.
func (s *churnStats) fail(k kind, format string, args ...any) {
	s.kinds[k].bad.Add(1)
	msg := k.String() + ": " + fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nerrs++
	if len(s.errs) < 10 {
		s.errs = append(s.errs, msg)
	}
}

func (s *churnStats) errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nerrs > len(s.errs) {
		return append(s.errs, fmt.Sprintf("... %d unexpected outcomes in all", s.nerrs))
	}
	return s.errs
}

// runChurn runs the workload against target for d, calling sample (if not
// nil) every 2 s, and returns when every connection it opened is closed.
func runChurn(t *testing.T, lab *netlab.Lab, target string, cfg settings, d time.Duration, sample func()) *churnStats {
	t.Helper()
	stats := &churnStats{}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(time.Second / time.Duration(cfg.rate))
	defer tick.Stop()
	var wg, idleWG sync.WaitGroup
	var idle atomic.Int64
	for w := 0; w < cfg.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(w)))
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				k := pickKind(rng)
				if k == kindIdle {
					if idle.Add(1) > int64(cfg.idle) {
						idle.Add(-1)
						k = kindEcho
					} else {
						idleWG.Add(1)
						go func(seed uint64) {
							defer idleWG.Done()
							defer idle.Add(-1)
							oneConn(ctx, lab, target, kindIdle, rand.New(rand.NewPCG(seed, 1)), stats)
						}(rng.Uint64())
						continue
					}
				}
				oneConn(ctx, lab, target, k, rng, stats)
			}
		}()
	}
	for b := 0; b < cfg.bulk; b++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(1000+b)))
			for ctx.Err() == nil {
				oneConn(ctx, lab, target, kindBulk, rng, stats)
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
	}
	if sample != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := time.NewTicker(2 * time.Second)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
					sample()
				}
			}
		}()
	}
	wg.Wait()
	idleWG.Wait()
	return stats
}

// pickKind draws a connection kind: mostly short echoes.
func pickKind(rng *rand.Rand) kind {
	switch n := rng.IntN(100); {
	case n < 55:
		return kindEcho
	case n < 67:
		return kindClientReset
	case n < 79:
		return kindServerReset
	case n < 92:
		return kindServerHalfClose
	default:
		return kindIdle
	}
}

// oneConn opens one connection of kind k through faithif and checks what
// the client sees. ctx ends the churn: an idle connection is closed early
// then, and connections are not started after it.
func oneConn(ctx context.Context, lab *netlab.Lab, target string, k kind, rng *rand.Rand, stats *churnStats) {
	if ctx.Err() != nil {
		return
	}
	stats.kinds[k].started.Add(1)
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	nc, err := lab.Client.Dial(dctx, "tcp6", target)
	cancel()
	if err != nil {
		stats.fail(k, "dial %s: %v", target, err)
		return
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	c.SetDeadline(time.Now().Add(connTimeout))
	reset := func() { c.SetLinger(0); c.Close() }
	hdr := func(n, m int) []byte {
		b := []byte{kindCommand[k], 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(n))
		binary.BigEndian.PutUint32(b[5:], uint32(m))
		return b
	}
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}

	switch k {
	case kindEcho:
		data := payload(1 + rng.IntN(16<<10))
		if _, err := c.Write(append(hdr(0, 0), data...)); err != nil {
			stats.fail(k, "write: %v", err)
			return
		}
		if err := c.CloseWrite(); err != nil {
			stats.fail(k, "half-close: %v", err)
			return
		}
		got, err := io.ReadAll(c)
		if err != nil {
			stats.fail(k, "read the echo: %v (after %d of %d bytes)", err, len(got), len(data))
			return
		}
		if !bytes.Equal(got, data) {
			stats.fail(k, "echo of %d bytes came back as %d different bytes", len(data), len(got))
			return
		}
	case kindClientReset:
		if _, err := c.Write(append(hdr(0, 0), payload(1+rng.IntN(32<<10))...)); err != nil {
			stats.fail(k, "write: %v", err)
			return
		}
		if rng.IntN(2) == 0 {
			io.ReadFull(c, make([]byte, 1))
		}
		reset()
	case kindServerReset:
		if _, err := c.Write(append(hdr(0, 0), payload(100)...)); err != nil {
			stats.fail(k, "write: %v", err)
			return
		}
		n, err := io.Copy(io.Discard, c)
		if !errors.Is(err, syscall.ECONNRESET) {
			stats.fail(k, "read: %d bytes then %v; want ECONNRESET (the server reset)", n, err)
			return
		}
	case kindServerHalfClose:
		n, m := rng.IntN(64<<10), rng.IntN(64<<10)
		if _, err := c.Write(hdr(n, m)); err != nil {
			stats.fail(k, "write: %v", err)
			return
		}
		got, err := io.Copy(io.Discard, c)
		if err != nil || got != int64(n) {
			stats.fail(k, "read %d of the server's %d bytes up to its FIN: %v", got, n, err)
			return
		}
		// The server has half-closed; this direction still flows.
		if _, err := c.Write(payload(m)); err != nil {
			stats.fail(k, "write %d bytes after the server's FIN: %v", m, err)
			return
		}
		c.CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			stats.fail(k, "read the end after the half-close: %v", err)
			return
		}
	case kindIdle:
		if _, err := c.Write(hdr(0, 0)); err != nil {
			stats.fail(k, "write: %v", err)
			return
		}
		hold := time.Second + time.Duration(rng.Int64N(int64(14*time.Second)))
		c.SetDeadline(time.Time{})
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		if rng.IntN(2) == 0 {
			reset()
		}
	case kindBulk:
		n := 4<<20 + rng.IntN(12<<20)
		if _, err := c.Write(hdr(n, 0)); err != nil {
			stats.fail(k, "write: %v", err)
			return
		}
		got, err := io.Copy(io.Discard, c)
		if err != nil || got != int64(n) {
			stats.fail(k, "read %d of %d bytes: %v", got, n, err)
			return
		}
	}
	stats.kinds[k].ok.Add(1)
}

// The server: an IPv4 listener in the server namespace doing what each
// connection's first byte says.

type server struct {
	l     net.Listener
	port  int
	wg    sync.WaitGroup
	conns atomic.Uint64
	bad   atomic.Uint64
	mu    sync.Mutex
	errs  []string
}

func startServer(t *testing.T, lab *netlab.Lab) *server {
	t.Helper()
	l := lab.Server.ListenTCP(t, "tcp4", netlab.ServerAddr+":0")
	s := &server{l: l, port: l.Addr().(*net.TCPAddr).Port}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				if err := s.handle(c.(*net.TCPConn)); err != nil {
					s.fail(err)
				}
			}()
		}
	}()
	return s
}

func (s *server) fail(err error) {
	s.bad.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, err.Error())
	}
}

func (s *server) errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errs
}

// close stops the listener and waits for the connections' handlers.
func (s *server) close(t *testing.T) {
	s.l.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(connTimeout):
		t.Errorf("server: connection handlers still running %v after the churn", connTimeout)
	}
}

// handle serves one connection. Errors the client caused on purpose
// (resets) are not errors.
func (s *server) handle(c *net.TCPConn) error {
	c.SetDeadline(time.Now().Add(connTimeout + 20*time.Second)) // idle ones included
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil // the client reset before its header, or an idle flow sent only its header
	}
	n, m := int64(binary.BigEndian.Uint32(hdr[1:])), int64(binary.BigEndian.Uint32(hdr[5:]))
	switch hdr[0] {
	case 'e':
		io.Copy(c, c)
		c.CloseWrite()
	case 'r':
		c.Read(make([]byte, 1024))
		c.SetLinger(0)
	case 's':
		if _, err := io.CopyN(c, zeros{}, n); err != nil {
			return fmt.Errorf("server half-close first: write %d bytes: %v", n, err)
		}
		c.CloseWrite()
		got, err := io.Copy(io.Discard, c)
		if err != nil || got != m {
			return fmt.Errorf("server half-close first: read %d of the client's %d bytes after the server's FIN: %v", got, m, err)
		}
	case 'i':
		io.Copy(io.Discard, c)
	case 'b':
		io.CopyN(c, zeros{}, n)
	default:
		return fmt.Errorf("unknown command %q", hdr[0])
	}
	return nil
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
