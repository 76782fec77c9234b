package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faithif/faithif/test/netlab"
)

// metricsAddr is where faithif serves /metrics, on the router namespace's
// loopback.
const metricsAddr = "127.0.0.1:9464"

// env is one row's lab: client, router with faithif, server, attacker, an
// echo server for the legitimate workload.
type env struct {
	p        *netlab.Program
	cfg      *config
	ctx      context.Context
	lab      *netlab.Lab
	atk      *netlab.Namespace
	f        *netlab.Faithif
	echoPort int
	echoConn atomic.Int64 // connections the echo server accepted
}

// newEnv builds a lab with the attacker and an echo server, and starts
// faithif with --keepfaith --metrics 127.0.0.1:9464 and args. before, if
// set, runs once the lab is built and before faithif starts.
func newEnv(ctx context.Context, p *netlab.Program, cfg *config, before func(*netlab.Lab), args ...string) *env {
	e := &env{p: p, cfg: cfg, ctx: ctx}
	e.lab = netlab.New(p)
	e.atk = e.lab.AddAttacker(p)
	e.echoPort = e.serve(e.lab.Server, netlab.ServerAddr+":0", func(c net.Conn) {
		e.echoConn.Add(1)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.Copy(c, c)
	})
	if before != nil {
		before(e.lab)
	}
	e.f = e.lab.StartFaithif(p, append([]string{"--keepfaith", "--metrics", metricsAddr}, args...)...)
	return e
}

// serve listens on addr in ns and runs h for each connection in its own
// goroutine (closing the connection after); the row's cleanup closes the
// listener and every connection. It returns the port.
func (e *env) serve(ns *netlab.Namespace, addr string, h func(net.Conn)) int {
	l, err := ns.Listen("tcp4", addr)
	if err != nil {
		e.p.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				h(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	e.p.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port
}

// show returns `faithif show faith0 --json`, decoded loosely (the
// harness reads counters by name, and says which one is missing).
func (e *env) show() (status, error) {
	r := e.lab.Faithif("show", netlab.FaithIf, "--json")
	if r.ExitCode != 0 {
		return nil, fmt.Errorf("faithif show: %s", r)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &m); err != nil {
		return nil, fmt.Errorf("faithif show --json: %w", err)
	}
	return m, nil
}

// mustShow is show that ends the row on error.
func (e *env) mustShow() status {
	st, err := e.show()
	if err != nil {
		e.p.Fatalf("%v", err)
	}
	return st
}

// status is `faithif show --json`.
type status map[string]any

// num returns a number of the status by key path ("flows_denied",
// "packets_discarded", "bad_flags"), and whether it is there.
func (s status) num(path ...string) (float64, bool) {
	var v any = map[string]any(s)
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, false
		}
		if v, ok = m[k]; !ok {
			return 0, false
		}
	}
	f, ok := v.(float64)
	return f, ok
}

// n is num with 0 for a missing key.
func (s status) n(path ...string) float64 {
	f, _ := s.num(path...)
	return f
}

// delta returns b's value minus a's for the key path, and whether b has it.
func delta(a, b status, path ...string) (float64, bool) {
	vb, ok := b.num(path...)
	return vb - a.n(path...), ok
}

// proc is faithif's process figures from /metrics.
type proc struct {
	ok                   bool
	rss, goroutines, fds float64
}

// metrics scrapes faithif's /metrics in the router.
func (e *env) metrics() (proc, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return proc{}, err
	}
	resp, err := e.lab.Router.HTTPClient().Do(req)
	if err != nil {
		return proc{}, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	var pr proc
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "process_resident_memory_bytes":
			pr.rss, found = v, found+1
		case "go_goroutines":
			pr.goroutines, found = v, found+1
		case "process_open_fds":
			pr.fds, found = v, found+1
		}
	}
	if err := sc.Err(); err != nil {
		return proc{}, fmt.Errorf("scrape /metrics: %w", err)
	}
	if found != 3 {
		return proc{}, fmt.Errorf("scrape /metrics: process_resident_memory_bytes, go_goroutines or process_open_fds missing")
	}
	pr.ok = true
	return pr, nil
}

// sampler scrapes /metrics every period until stopped, keeping the peak
// of each figure.
type sampler struct {
	stopc chan struct{}
	done  chan struct{}
	peak  proc
	errs  int
}

// sample starts a sampler.
func (e *env) sample(period time.Duration) *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if pr, err := e.metrics(); err == nil {
				s.peak.ok = true
				s.peak.rss = max(s.peak.rss, pr.rss)
				s.peak.goroutines = max(s.peak.goroutines, pr.goroutines)
				s.peak.fds = max(s.peak.fds, pr.fds)
			} else {
				s.errs++
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop stops the sampler and returns the peaks.
func (s *sampler) stop() proc {
	close(s.stopc)
	<-s.done
	return s.peak
}

// attempt is one legitimate connection.
type attempt struct {
	connect time.Duration // until connect returned
	retrans uint32        // SYN retransmissions (TCP_INFO)
	err     error         // connect or echo failure
}

// legit is the legitimate workload: a trickle of real kernel connections
// from the client to the echo server through faithif.
type legit struct {
	mu    sync.Mutex
	res   []attempt
	start time.Time
	stop  func() // ends the trickle and waits for the connections under way
}

// minLegit is how long the trickle runs at least, so that even a short
// attack has a few legitimate connections beside it.
const minLegit = 2 * time.Second

// startLegit starts the trickle: one connection every legitInterval, each
// in its own goroutine, until the summary. With fresh addresses (see
// freshAddrs), each connection comes from the next one of them, a host of
// the client's /64 that faithif has not seen: under a SYN flood's pressure
// every one of them must pass the SYN challenge (a validated address is
// trusted for minutes, so one address would be challenged once). Without,
// from the client's own address.
func (e *env) startLegit(fresh *freshAddrs) *legit {
	lg := &legit{start: time.Now()}
	loopCtx, stopLoop := context.WithCancel(e.ctx)
	loopDone := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		defer close(loopDone)
		t := time.NewTicker(e.cfg.legitInterval)
		defer t.Stop()
		for {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := e.legitFrom(e.ctx, fresh) // bounded by legitTimeout and the echo's deadline
				lg.mu.Lock()
				lg.res = append(lg.res, a)
				lg.mu.Unlock()
			}()
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	lg.stop = func() {
		once.Do(func() {
			stopLoop()
			<-loopDone
			wg.Wait()
		})
	}
	e.p.Cleanup(lg.stop)
	return lg
}

// freshAddrs hands out addresses added to the client's link, each once.
type freshAddrs struct {
	addrs []netip.Addr
	next  atomic.Int64
}

// freshAddrs adds n addresses of the client's /64 to its link, from
// 2001:db8:1::2:1 on (row 7's are from 2001:db8:1::1:1), for as many
// legitimate connections.
func (e *env) freshAddrs(n int) *freshAddrs {
	addrs, err := e.lab.AddClientAddrs(netip.MustParseAddr("2001:db8:1::2:1"), n)
	if err != nil {
		e.p.Fatalf("%v", err)
	}
	return &freshAddrs{addrs: addrs}
}

// take returns the next fresh address, or an error once all are used.
func (f *freshAddrs) take() (netip.Addr, error) {
	i := f.next.Add(1) - 1
	if i >= int64(len(f.addrs)) {
		return netip.Addr{}, fmt.Errorf("no fresh client address left (%d used): the trickle outlasted its plan", len(f.addrs))
	}
	return f.addrs[i], nil
}

// dialFrom connects from the client to addr, from the next fresh address
// if fresh is not nil, else from the client's own.
func (e *env) dialFrom(ctx context.Context, fresh *freshAddrs, addr string) (net.Conn, error) {
	if fresh == nil {
		return e.lab.Client.Dial(ctx, "tcp6", addr)
	}
	from, err := fresh.take()
	if err != nil {
		return nil, err
	}
	return e.lab.Client.DialFrom(ctx, "tcp6", netip.AddrPortFrom(from, 0).String(), addr)
}

// legitOnce makes one legitimate connection from the client's address:
// connect, exchange 64 bytes, close.
func (e *env) legitOnce(ctx context.Context) attempt { return e.legitFrom(ctx, nil) }

// legitFrom is legitOnce from the next of fresh addresses (nil: the
// client's own).
func (e *env) legitFrom(ctx context.Context, fresh *freshAddrs) attempt {
	dctx, cancel := context.WithTimeout(ctx, e.cfg.legitTimeout)
	defer cancel()
	start := time.Now()
	c, err := e.dialFrom(dctx, fresh, netlab.FaithHostPort(netlab.ServerAddr, e.echoPort))
	a := attempt{connect: time.Since(start)}
	if err != nil {
		a.err = err
		return a
	}
	defer c.Close()
	a.retrans = synRetransmits(c.(*net.TCPConn))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("legitimate client, 64 bytes of payload .........................")
	if _, err := c.Write(msg); err != nil {
		a.err = fmt.Errorf("write: %w", err)
		return a
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		a.err = fmt.Errorf("read the echo: %w", err)
	}
	return a
}

// synRetransmits returns how many times the connected socket c sent its
// SYN again (TCP_INFO's total retransmissions, only SYNs before any data).
func synRetransmits(c *net.TCPConn) uint32 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint32
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = info.Total_retrans
		}
	})
	return n
}

// legitSummary is what the legitimate clients saw.
type legitSummary struct {
	attempts, ok int // ok: connected within legitOK and echoed
	failed       int // connect or echo failed
	p50, max     time.Duration
	maxRetrans   uint32
	firstErr     string
	slow         int // connected, but later than legitOK
}

// summary stops the trickle, waits for the connections under way, and
// summarises them.
func (lg *legit) summary(e *env) legitSummary {
	settle(e.ctx, time.Until(lg.start.Add(minLegit)))
	lg.stop()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	var s legitSummary
	var times []time.Duration
	for _, a := range lg.res {
		s.attempts++
		s.maxRetrans = max(s.maxRetrans, a.retrans)
		switch {
		case a.err != nil:
			s.failed++
			if s.firstErr == "" {
				s.firstErr = a.err.Error()
			}
		case a.connect > e.cfg.legitOK:
			s.slow++
		default:
			s.ok++
		}
		if a.err == nil || a.connect < e.cfg.legitTimeout {
			times = append(times, a.connect)
		}
	}
	if len(times) > 0 {
		slices.Sort(times)
		s.p50, s.max = times[len(times)/2], times[len(times)-1]
	}
	return s
}
