package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

func isErrno(err error, e syscall.Errno) bool { return errors.Is(err, e) }

// probe connects from the client to addr n times (1 s apart at most) and
// counts the outcomes by errno ("ok" for a connection).
func (e *env) probe(addr string, n int) map[string]int {
	out := map[string]int{}
	for range n {
		dctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		c, err := e.lab.Client.Dial(dctx, "tcp6", addr)
		cancel()
		if err != nil {
			out[errnoText(err)]++
			continue
		}
		out["ok"]++
		c.Close()
	}
	return out
}

// Row 5: the access file emptied while faithif runs, then "faithif
// reload". Holds if the reload succeeds and afterwards every flow is
// denied (EACCES: ICMPv6 administratively prohibited) and the server gets
// no connection.
func rowEmptyRules(ctx context.Context, p *netlab.Program, cfg *config, r *result) {
	dir := netlab.TempDir(p, "conf")
	conf := filepath.Join(dir, "faithd.conf")
	if err := os.WriteFile(conf, []byte("2001:db8:1::/64 permit 192.0.2.0/24\n"), 0o644); err != nil {
		p.Fatalf("%v", err)
	}
	e := newEnv(ctx, p, cfg, nil, "--access", conf)
	r.before, _ = e.metrics()
	s := e.sample(250 * time.Millisecond)
	lg := e.startLegit(nil)
	settle(ctx, 2*time.Second)
	before := lg.summary(e)

	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		p.Fatalf("%v", err)
	}
	// The warning of relay.Rules.Warning for a file without rules.
	const noRules = `level=WARN msg="access file has no rules: every flow is denied"`
	warns0 := strings.Count(e.f.Stderr(), noRules)
	res := e.lab.Faithif("reload", netlab.FaithIf)
	r.note("faithif reload: exit %d: %s", res.ExitCode, strings.TrimSpace(res.Stdout+" "+res.Stderr))
	if line := lastLine(e.f.Stderr(), "reload"); line != "" {
		r.note("log: %s", line)
	}
	warned := strings.Count(e.f.Stderr(), noRules) > warns0
	st0 := e.mustShow()
	served0 := e.echoConn.Load()
	lg2 := e.startLegit(nil)
	settle(ctx, 2*time.Second)
	after := lg2.summary(e)
	outcomes := e.probe(netlab.FaithHostPort(netlab.ServerAddr, e.echoPort), 5)
	st := e.mustShow()
	r.peak = s.stop()
	settle(ctx, cfg.settle)
	r.after, _ = e.metrics()
	served := e.echoConn.Load() - served0
	denied, _ := delta(st0, st, "flows_denied")
	r.sent = "1 reload of an empty access file"
	r.legit = &before
	r.legitText = fmt.Sprintf("before %d/%d, after %d/%d", before.ok, before.attempts, after.ok, after.attempts)
	r.note("after the reload: legitimate connects %d/%d succeeded; 5 probes: %v; rule_count %.0f; flows_denied +%.0f; access file has no rules logged: %v",
		after.ok, after.attempts, outcomes, st.n("rules"), denied, warned)
	held := res.ExitCode == 0 && after.ok == 0 && outcomes["EACCES"] == 5 && served == 0
	r.verdict(held, "after the reload: %d of %d flows connected, probes %v, server got %d", after.ok, after.attempts+5, outcomes, served)
}

// lastLine returns the last line of log holding sub, or "".
func lastLine(log, sub string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}

// Row 6: "ip route add local 198.51.100.128/25 dev lo" on the router (the
// router's kernel accepts any address of it), and a server listening on
// the router's 0.0.0.0:8080. Holds if flows to 198.51.100.129:8080 are
// refused and the router's server gets nothing.
func rowLocalRoute(ctx context.Context, p *netlab.Program, cfg *config, r *result) {
	e := newEnv(ctx, p, cfg, nil)
	var got atomic.Int64
	e.serve(e.lab.Router, "0.0.0.0:8080", func(net.Conn) { got.Add(1) })
	if _, err := e.lab.Router.IP("-4", "route", "add", "local", "198.51.100.128/25", "dev", "lo"); err != nil {
		p.Fatalf("%v", err)
	}
	r.before, _ = e.metrics()
	s := e.sample(250 * time.Millisecond)
	lg := e.startLegit(nil)
	st0 := e.mustShow()
	outcomes := e.probe(netlab.FaithHostPort("198.51.100.129", 8080), 5)
	settle(ctx, time.Second)
	st := e.mustShow()
	r.legit = ptr(lg.summary(e))
	r.peak = s.stop()
	settle(ctx, cfg.settle)
	r.after, _ = e.metrics()
	denied, _ := delta(st0, st, "flows_denied")
	r.sent = "5 connects to 198.51.100.129:8080"
	r.note("outcomes %v; flows_denied +%.0f", outcomes, denied)
	if line := lastLine(e.f.Stderr(), "198.51.100.129"); line != "" {
		r.note("log: %s", line)
	}
	r.verdict(outcomes["ok"] == 0 && got.Load() == 0, "probes %v; the router's server got %d", outcomes, got.Load())
}

// Row 7: lanConns concurrent connections from lanAddrs addresses of the
// client's /64 (added to the client), held open together. Holds if every
// one is accepted.
func rowLAN(ctx context.Context, p *netlab.Program, cfg *config, r *result) {
	e := newEnv(ctx, p, cfg, nil)
	addrs, err := e.lab.AddClientAddrs(netip.MustParseAddr("2001:db8:1::1:1"), cfg.lanAddrs)
	if err != nil {
		p.Fatalf("%v", err)
	}
	// The server holds the connections in its accept queue, unaccepted:
	// established at both ends, and no descriptor of this process each (its
	// open-files limit may not be raised here).
	if err := e.lab.Server.Sysctl("net.core.somaxconn", "65535"); err != nil {
		p.Fatalf("%v", err)
	}
	ln, port := listenBacklog(p, e.lab.Server, netlab.ServerAddr, cfg.lanConns+1024)
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if need := uint64(cfg.lanConns + 1024); lim.Cur < need {
		p.Fatalf("the open-files limit is %d; %d client connections need about %d (lower ATTACK_LAN_CONNS)", lim.Cur, cfg.lanConns, need)
	}
	r.before, _ = e.metrics()
	s := e.sample(500 * time.Millisecond)
	lg := e.startLegit(nil)
	start := time.Now()
	dst := netlab.FaithHostPort(netlab.ServerAddr, port)
	var mu sync.Mutex
	var conns []net.Conn
	errs := map[string]int{}
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.lanConns || ctx.Err() != nil {
					return
				}
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				c, err := e.lab.Client.DialFrom(dctx, "tcp6", netip.AddrPortFrom(addrs[i%len(addrs)], 0).String(), dst)
				cancel()
				mu.Lock()
				if err != nil {
					errs[errnoText(err)]++
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	opened := time.Since(start)
	p.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	time.Sleep(500 * time.Millisecond) // the last dials complete
	st := e.mustShow()
	r.legit = ptr(lg.summary(e))
	r.peak = s.stop()
	// Count what the server held: accept the queue.
	var held int64
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	for held < int64(cfg.lanConns) {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Second))
		c, err := ln.Accept()
		if err != nil {
			break
		}
		held++
		c.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	settle(ctx, cfg.settle)
	r.after, _ = e.metrics()
	r.sent = fmt.Sprintf("%d connects from %d addresses in %.1f s", cfg.lanConns, len(addrs), opened.Seconds())
	r.note("connected %d, failed %v; the server held %d; faithif flows_open %.0f (with the legitimate ones), flows_limited %.0f, max_flows_per_client %.0f, max_flows_per_address %.0f",
		len(conns), errs, held, st.n("flows_open"), st.n("flows_limited"), st.n("max_flows_per_client"), st.n("max_flows_per_address"))
	r.verdict(len(conns) == cfg.lanConns && held == int64(cfg.lanConns),
		"%d of %d accepted, %d held at the server", len(conns), cfg.lanConns, held)
}

// listenBacklog listens on addr:0 in ns with the given accept backlog
// (net.Listen's is the system's somaxconn as read at start), and returns
// the listener (closed by the row's cleanup) and its port.
func listenBacklog(p *netlab.Program, ns *netlab.Namespace, addr string, backlog int) (net.Listener, int) {
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		sa := &syscall.SockaddrInet4{Addr: netip.MustParseAddr(addr).As4()}
		if err := syscall.Bind(fd, sa); err != nil {
			syscall.Close(fd)
			return err
		}
		if err := syscall.Listen(fd, backlog); err != nil {
			syscall.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		p.Fatalf("listen on %s in %s: %v", addr, ns.Name, err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		p.Fatalf("%v", err)
	}
	p.Cleanup(func() { l.Close() })
	return l, l.Addr().(*net.TCPAddr).Port
}
