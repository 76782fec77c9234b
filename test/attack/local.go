package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// nobody is the user id the planted run directories belong to.
const nobody = 65534

// Row 8: run directories an attacker could have prepared: one writable by
// everyone (mode 0777), one owned by another user with the background
// log planted as a symlink to a file of root's, one owned by another user
// holding a planted control socket. faithif must refuse each: "create"
// exits with an error (no interface, the symlink's target untouched),
// "destroy" talks to no planted socket. The interface of the lab keeps
// relaying meanwhile (the legitimate trickle).
func rowRunDir(ctx context.Context, p *netlab.Program, cfg *config, r *result) {
	e := newEnv(ctx, p, cfg, nil)
	bin := netlab.Binary(p)
	top := netlab.TempDir(p, "rundirs")
	r.before, _ = e.metrics()
	s := e.sample(250 * time.Millisecond)
	lg := e.startLegit(nil)

	mkdir := func(name string, mode os.FileMode, uid int) string {
		d := filepath.Join(top, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			p.Fatalf("%v", err)
		}
		if err := os.Chmod(d, mode); err != nil {
			p.Fatalf("%v", err)
		}
		if err := os.Chown(d, uid, uid); err != nil {
			p.Fatalf("%v", err)
		}
		return d
	}
	// faithif runs a command with FAITHIF_RUN_DIR=dir in the router,
	// bounded by limit; whatever it started for dir is killed afterwards.
	faithif := func(dir string, limit time.Duration, args ...string) netlab.Result {
		cctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		res := netlab.RunCommand(e.lab.Router.Command(cctx, []string{"FAITHIF_RUN_DIR=" + dir}, bin, args...))
		for _, pid := range netlab.RunDirPids(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
			r.note("killed faithif (pid %d) left running for %s", pid, dir)
		}
		return res
	}
	hasFaith1 := func() bool {
		names, _ := e.lab.Router.LinkNames()
		for _, n := range names {
			if n == "faith1" {
				e.lab.Router.IP("link", "del", "faith1")
				return true
			}
		}
		return false
	}
	create := []string{"create", "faith1", "--prefix", "2001:db8:47::/96"}
	var refused, cases int
	check := func(what string, ok bool, res netlab.Result) {
		cases++
		if ok {
			refused++
		}
		r.note("%s: %s (exit %d: %s)", what, map[bool]string{true: "refused", false: "NOT refused"}[ok], res.ExitCode, oneLine(res.Stderr+res.Stdout, 160))
	}

	// a) Writable by everyone.
	w := mkdir("w", 0o777, 0)
	res := faithif(w, 5*time.Second, append(create, "-f")...)
	made := hasFaith1()
	check("run dir mode 0777, create -f", res.ExitCode > 0 && !made, res)

	// b) Owned by nobody, the background log planted as a symlink.
	n := mkdir("n", 0o755, nobody)
	target := filepath.Join(top, "target")
	if err := os.WriteFile(target, []byte("root's file\n"), 0o644); err != nil {
		p.Fatalf("%v", err)
	}
	if err := os.Symlink(target, filepath.Join(n, "faith1.log")); err != nil {
		p.Fatalf("%v", err)
	}
	os.Lchown(filepath.Join(n, "faith1.log"), nobody, nobody)
	res = faithif(n, 15*time.Second, create...)
	made = hasFaith1()
	b, _ := os.ReadFile(target)
	check("run dir owned by nobody with a planted log symlink, create", res.ExitCode > 0 && !made && string(b) == "root's file\n", res)
	if string(b) != "root's file\n" {
		r.note("the symlink's target was written: %q", oneLine(string(b), 120))
	}

	// c) Owned by nobody, a planted control socket.
	sd := mkdir("s", 0o755, nobody)
	sock := filepath.Join(sd, "faith1.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		p.Fatalf("%v", err)
	}
	p.Cleanup(func() { l.Close() })
	os.Chown(sock, nobody, nobody)
	var planted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			planted.Add(1)
			io.WriteString(c, `{"status":{"name":"faith1"}}`+"\n")
			c.Close()
		}
	}()
	res = faithif(sd, 10*time.Second, "destroy", "faith1")
	check("run dir owned by nobody with a planted control socket, destroy", res.ExitCode > 0 && planted.Load() == 0, res)
	if planted.Load() > 0 {
		r.note("faithif destroy connected %d time(s) to the planted socket", planted.Load())
	}

	r.legit = ptr(lg.summary(e))
	r.peak = s.stop()
	settle(ctx, cfg.settle)
	r.after, _ = e.metrics()
	r.sent = fmt.Sprintf("%d prepared run directories", cases)
	r.verdict(refused == cases, "%d of %d refused", refused, cases)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// Row 9: one request of ctlMB MB on the control socket (as root). Holds if
// it is refused (an error answer, or the socket closed before all of it
// was written) and faithif's RSS grows by less than 32 MiB.
func rowControl(ctx context.Context, p *netlab.Program, cfg *config, r *result) {
	e := newEnv(ctx, p, cfg, nil)
	sock := filepath.Join(e.lab.RunDir, netlab.FaithIf+".sock")
	r.before, _ = e.metrics()
	s := e.sample(100 * time.Millisecond)
	lg := e.startLegit(nil)
	c, err := net.Dial("unix", sock)
	if err != nil {
		p.Fatalf("control socket: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	total := int64(cfg.ctlMB) << 20
	var written atomic.Int64
	werr := make(chan error, 1)
	go func() {
		if _, err := io.WriteString(c, `{"op":"status","pad":"`); err != nil {
			werr <- err
			return
		}
		chunk := []byte(strings.Repeat("a", 1<<20))
		for written.Load() < total {
			k, err := c.Write(chunk)
			written.Add(int64(k))
			if err != nil {
				werr <- err
				return
			}
		}
		_, err := io.WriteString(c, `"}`+"\n")
		werr <- err
	}()
	answer, rerr := io.ReadAll(io.LimitReader(c, 4096))
	var wres error
	select {
	case wres = <-werr:
	case <-time.After(30 * time.Second):
		wres = errors.New("still writing 30 s after the answer")
	}
	r.legit = ptr(lg.summary(e))
	r.peak = s.stop()
	settle(ctx, cfg.settle)
	r.after, _ = e.metrics()
	w := written.Load()
	r.sent = fmt.Sprintf("a %d MB request", cfg.ctlMB)
	r.note("written %.1f MB of %d; write ended with %v; answer %q (read: %v)", float64(w)/(1<<20), cfg.ctlMB, wres, oneLine(string(answer), 200), rerr)
	refused := w < total || strings.Contains(string(answer), "error")
	growth := (r.peak.rss - r.before.rss) / (1 << 20)
	if !r.before.ok || !r.peak.ok {
		p.Fatalf("no RSS reading")
	}
	r.verdict(refused && growth < 32, "refused: %v after %.1f MB; RSS +%.0f MiB (bound 32)", refused, float64(w)/(1<<20), growth)
}

// Row 11: "ip link del faith0" with flows open. Holds if the server sees
// every one of them reset (ECONNRESET) within a second.
func rowLinkDel(ctx context.Context, p *netlab.Program, cfg *config, r *result) {
	e := newEnv(ctx, p, cfg, nil)
	type end struct {
		err error
		at  time.Time
	}
	var mu sync.Mutex
	var ends []end
	var held atomic.Int64
	port := e.serve(e.lab.Server, netlab.ServerAddr+":0", func(c net.Conn) {
		held.Add(1)
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if err == nil {
			err = io.EOF
		}
		mu.Lock()
		ends = append(ends, end{err, time.Now()})
		mu.Unlock()
	})
	r.before, _ = e.metrics()
	s := e.sample(250 * time.Millisecond)
	lg := e.startLegit(nil)
	var conns []net.Conn
	for i := range cfg.flows {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := e.lab.Client.Dial(dctx, "tcp6", netlab.FaithHostPort(netlab.ServerAddr, port))
		cancel()
		if err != nil {
			p.Fatalf("flow %d: %v", i+1, err)
		}
		conns = append(conns, c)
		p.Cleanup(func() { c.Close() })
	}
	for deadline := time.Now().Add(5 * time.Second); held.Load() < int64(cfg.flows) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	r.legit = ptr(lg.summary(e))
	r.peak = s.stop()
	e.f.ExpectExit()
	t0 := time.Now()
	if _, err := e.lab.Router.IP("link", "del", netlab.FaithIf); err != nil {
		p.Fatalf("%v", err)
	}
	for deadline := t0.Add(5 * time.Second); time.Now().Before(deadline); {
		mu.Lock()
		k := len(ends)
		mu.Unlock()
		if k >= cfg.flows {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	exited := e.f.Wait(15 * time.Second)
	mu.Lock()
	var resets, eofs, other int
	var slowest time.Duration
	for _, x := range ends {
		switch {
		case errors.Is(x.err, syscall.ECONNRESET):
			resets++
			slowest = max(slowest, x.at.Sub(t0))
		case x.err == io.EOF:
			eofs++
		default:
			other++
		}
	}
	open := cfg.flows - len(ends)
	mu.Unlock()
	// What the clients see.
	clientErrs := map[string]int{}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		switch {
		case err == nil:
			clientErrs["data"]++
		case isTimeout(err):
			clientErrs["nothing yet"]++
		default:
			clientErrs[errnoText(err)]++
		}
	}
	r.sent = fmt.Sprintf("ip link del faith0, %d flows open", cfg.flows)
	exit := "still running 15 s later"
	if exited {
		exit = fmt.Sprintf("exited (%v)", e.f.ExitErr())
	}
	r.note("server side: %d reset, %d closed with FIN, %d other errors, %d still open 5 s later; faithif %s; the clients: %v",
		resets, eofs, other, open, exit, clientErrs)
	r.verdict(resets == cfg.flows && slowest <= time.Second, "%d of %d IPv4 sides reset, the last after %s", resets, cfg.flows, ms(slowest))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
