package netlab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Addresses and names used by every lab.
const (
	// ClientAddr is the client's IPv6 address (on ClientLink).
	ClientAddr = "2001:db8:1::2"
	// RouterAddr6 is the router's IPv6 address toward the client; it is the
	// client's default gateway.
	RouterAddr6 = "2001:db8:1::1"
	// RouterAddr4 is the router's IPv4 address toward the server; it is the
	// server's default gateway.
	RouterAddr4 = "192.0.2.1"
	// ServerAddr is the server's IPv4 address (on ServerLink).
	ServerAddr = "192.0.2.2"
	// FaithPrefix is the prefix faithif is created with and routed to faith0.
	FaithPrefix = "2001:db8:46::/96"
	// ServerFaithAddr is ServerAddr embedded in FaithPrefix: connecting to it
	// from the client reaches the server through faithif.
	ServerFaithAddr = "2001:db8:46::c000:202"
	// FaithIf is the name of the faith interface created in the router.
	FaithIf = "faith0"

	// ClientLink is the client's end of the client-router veth pair.
	ClientLink = "c0"
	// RouterClientLink is the router's end of the client-router veth pair.
	RouterClientLink = "rc0"
	// RouterServerLink is the router's end of the router-server veth pair.
	RouterServerLink = "rs0"
	// ServerLink is the server's end of the router-server veth pair.
	ServerLink = "s0"

	// lockDir holds one lock file per live test process (see sweep).
	lockDir = "/run/faithif-netlab"
)

// FaithAddr returns the address in FaithPrefix that embeds the IPv4 address
// ip4 in its last 32 bits, e.g. 192.0.2.2 -> 2001:db8:46::c000:202.
func FaithAddr(ip4 string) string {
	a := netip.MustParseAddr(ip4).As4()
	p := netip.MustParsePrefix(FaithPrefix).Addr().As16()
	copy(p[12:], a[:])
	return netip.AddrFrom16(p).String()
}

// FaithHostPort returns "[FaithAddr(ip4)]:port".
func FaithHostPort(ip4 string, port int) string {
	return fmt.Sprintf("[%s]:%d", FaithAddr(ip4), port)
}

// Lab is one three-namespace lab. Build it with New.
type Lab struct {
	// ID is the common prefix of the lab's namespace names.
	ID string
	// Client is the IPv6-only client namespace.
	Client *Namespace
	// Router is the namespace in which faithif runs.
	Router *Namespace
	// Server is the IPv4-only server namespace.
	Server *Namespace
	// RunDir is this lab's FAITHIF_RUN_DIR, passed to every faithif
	// invocation made through the lab.
	RunDir string

	t     testing.TB
	nss   []*Namespace
	mu    sync.Mutex
	procs []*Faithif
	cur   *Faithif
}

var (
	procOnce   sync.Once
	procErr    error
	procPrefix string // "fi<N>", unique among live test processes
	procLock   *os.File
	labMu      sync.Mutex
	labSeq     int
	ours       = map[string]bool{} // namespaces created by this process
)

var nsNameRE = regexp.MustCompile(`^(fi[0-9]+)x[0-9]+[a-z]$`)

// New builds a lab and registers its teardown with t.Cleanup. It fails the
// test (never skips) if the lab cannot be built, e.g. when not running as
// root or when ip(8) is missing.
func New(t testing.TB) *Lab {
	t.Helper()
	checkPrereqs(t)
	if err := initOnce(); err != nil {
		t.Fatalf("netlab: %v", err)
	}

	labMu.Lock()
	labSeq++
	id := fmt.Sprintf("%sx%d", procPrefix, labSeq)
	labMu.Unlock()

	l := &Lab{ID: id, t: t}
	t.Cleanup(l.teardown)

	runDir, err := mkdirTemp("run")
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	l.RunDir = runDir

	if err := l.build(); err != nil {
		t.Fatalf("netlab: build lab %s: %v", id, err)
	}
	return l
}

func checkPrereqs(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("netlab: must run as root (euid is %d): network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("netlab: ip(8) not found (install iproute2, e.g. with 'make deps'): %v", err)
	}
}

func (l *Lab) addNS(suffix string) (*Namespace, error) {
	name := l.ID + suffix
	labMu.Lock()
	ours[name] = true
	labMu.Unlock()
	ns := &Namespace{Name: name, h: netns.None()}
	if _, err := ipCmd("netns", "add", name); err != nil {
		labMu.Lock()
		delete(ours, name)
		labMu.Unlock()
		return nil, err
	}
	l.nss = append(l.nss, ns)
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	ns.h = h
	if _, err := ns.IP("link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return ns, nil
}

func (l *Lab) build() error {
	var err error
	if l.Client, err = l.addNS("c"); err != nil {
		return err
	}
	if l.Router, err = l.addNS("r"); err != nil {
		return err
	}
	if l.Server, err = l.addNS("s"); err != nil {
		return err
	}
	c, r, s := l.Client, l.Router, l.Server

	sysctls := []struct {
		ns       *Namespace
		key, val string
	}{
		{c, "net.ipv6.conf.all.accept_dad", "0"},
		{c, "net.ipv6.conf.default.accept_dad", "0"},
		{r, "net.ipv6.conf.all.accept_dad", "0"},
		{r, "net.ipv6.conf.default.accept_dad", "0"},
		{r, "net.ipv6.conf.all.forwarding", "1"},
		{s, "net.ipv6.conf.all.disable_ipv6", "1"},
		{s, "net.ipv6.conf.default.disable_ipv6", "1"},
	}
	for _, sc := range sysctls {
		if err := sc.ns.Sysctl(sc.key, sc.val); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", sc.key, sc.val, sc.ns.Name, err)
		}
	}

	cmds := [][]string{
		// veth pairs are created inside the router and their peers moved
		// straight into client and server: nothing touches the caller's netns.
		{"-n", r.Name, "link", "add", RouterClientLink, "type", "veth", "peer", "name", ClientLink, "netns", c.Name},
		{"-n", r.Name, "link", "add", RouterServerLink, "type", "veth", "peer", "name", ServerLink, "netns", s.Name},
		{"-n", c.Name, "addr", "add", ClientAddr + "/64", "dev", ClientLink, "nodad"},
		{"-n", r.Name, "addr", "add", RouterAddr6 + "/64", "dev", RouterClientLink, "nodad"},
		{"-n", r.Name, "addr", "add", RouterAddr4 + "/24", "dev", RouterServerLink},
		{"-n", s.Name, "addr", "add", ServerAddr + "/24", "dev", ServerLink},
		{"-n", c.Name, "link", "set", ClientLink, "up"},
		{"-n", r.Name, "link", "set", RouterClientLink, "up"},
		{"-n", r.Name, "link", "set", RouterServerLink, "up"},
		{"-n", s.Name, "link", "set", ServerLink, "up"},
		{"-n", c.Name, "-6", "route", "add", "default", "via", RouterAddr6, "dev", ClientLink},
		{"-n", s.Name, "-4", "route", "add", "default", "via", RouterAddr4, "dev", ServerLink},
	}
	for _, args := range cmds {
		if _, err := ipCmd(args...); err != nil {
			return err
		}
	}
	return l.waitLinks()
}

// waitLinks waits until every veth has carrier (operstate UP) and the IPv6
// ends have a usable link-local address. Without this the first neighbor
// solicitation can be lost to a link still without carrier, and the first
// connection then takes an extra second.
func (l *Lab) waitLinks() error {
	type link struct {
		ns   *Namespace
		dev  string
		ipv6 bool
	}
	links := []link{
		{l.Client, ClientLink, true},
		{l.Router, RouterClientLink, true},
		{l.Router, RouterServerLink, false},
		{l.Server, ServerLink, false},
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, lk := range links {
		for {
			out, err := lk.ns.IP("-o", "link", "show", "dev", lk.dev)
			ok := err == nil && strings.Contains(out, "state UP") && !strings.Contains(out, "NO-CARRIER")
			if ok && lk.ipv6 {
				out, err = lk.ns.IP("-o", "-6", "addr", "show", "dev", lk.dev, "scope", "link")
				ok = err == nil && strings.Contains(out, "fe80:") && !strings.Contains(out, "tentative")
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("link %s in %s not ready after 5 s: %s", lk.dev, lk.ns.Name, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// AddClientAddrs adds n more addresses of the client's /64 to ClientLink,
// first and the n-1 after it, nodad (usable at once), in one ip(8) batch,
// and returns them. A connection bound to one of them (Namespace.DialFrom)
// is a new host of the client's LAN to faithif: its SYN challenge under
// pressure, its limits per address. The router learns each address's
// link-layer address by neighbour discovery on its first packet to it (one
// round trip more on the client's link).
func (l *Lab) AddClientAddrs(first netip.Addr, n int) ([]netip.Addr, error) {
	p := netip.MustParsePrefix(ClientAddr + "/64")
	var batch strings.Builder
	addrs := make([]netip.Addr, 0, n)
	for a := first; len(addrs) < n; a = a.Next() {
		if !p.Contains(a) || a == netip.MustParseAddr(ClientAddr) || a == netip.MustParseAddr(RouterAddr6) {
			return nil, fmt.Errorf("netlab: add client addresses: %s is not a free address of %s", a, p)
		}
		addrs = append(addrs, a)
		fmt.Fprintf(&batch, "addr add %s/64 dev %s nodad\n", a, ClientLink)
	}
	cmd := exec.Command("ip", "-n", l.Client.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("netlab: add %d addresses to %s in %s: %w: %s", n, ClientLink, l.Client.Name, err, strings.TrimSpace(string(out)))
	}
	return addrs, nil
}

// Env returns the environment entries every faithif invocation of this lab
// gets (FAITHIF_RUN_DIR).
func (l *Lab) Env() []string {
	return []string{"FAITHIF_RUN_DIR=" + l.RunDir}
}

// teardown stops every faithif started through the lab, deletes the
// namespaces and removes the run directory. It runs from t.Cleanup.
func (l *Lab) teardown() {
	t := l.t
	l.mu.Lock()
	procs := l.procs
	l.mu.Unlock()
	for _, p := range procs {
		crashed := false
		select {
		case <-p.done:
			crashed = !p.expected.Load() // already reported with its log
		default:
		}
		if err := p.Stop(); err != nil {
			t.Logf("netlab: faithif (pid %d) exit: %v", p.Pid(), err)
		}
		if t.Failed() && !crashed {
			t.Logf("netlab: faithif (pid %d) stderr:\n%s", p.Pid(), tail(p.Stderr(), 200))
			if out := p.Stdout(); out != "" {
				t.Logf("netlab: faithif (pid %d) stdout:\n%s", p.Pid(), tail(out, 50))
			}
		}
	}
	// Background instances ("faithif create" without -f) are not children
	// of the test: find them by their run directory.
	if pids := killRunDirProcs(l.RunDir); len(pids) > 0 {
		t.Logf("netlab: stopped faithif process(es) %v still running for %s", pids, l.RunDir)
	}
	if t.Failed() && l.RunDir != "" {
		logs, _ := filepath.Glob(filepath.Join(l.RunDir, "*.log"))
		for _, lf := range logs {
			if b, err := os.ReadFile(lf); err == nil {
				t.Logf("netlab: %s:\n%s", lf, tail(string(b), 200))
			}
		}
	}
	for i := len(l.nss) - 1; i >= 0; i-- {
		ns := l.nss[i]
		ns.h.Close()
		if err := deleteNS(ns.Name); err != nil {
			t.Errorf("netlab: teardown: %v", err)
		}
		labMu.Lock()
		delete(ours, ns.Name)
		labMu.Unlock()
	}
	if l.RunDir != "" {
		if err := os.RemoveAll(l.RunDir); err != nil {
			t.Errorf("netlab: teardown: %v", err)
		}
	}
}

// deleteNS deletes the namespace name, and first the run directory
// faithif keeps for it when FAITHIF_RUN_DIR is not set
// (/run/faithif/netns/COOKIE), if there is one.
func deleteNS(name string) error {
	if err := removeNetnsRunDir(name); err != nil {
		return err
	}
	var err error
	for i := 0; i < 5; i++ {
		if _, err = ipCmd("netns", "del", name); err == nil {
			return nil
		}
		if _, serr := os.Stat(filepath.Join("/run/netns", name)); os.IsNotExist(serr) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func initOnce() error {
	procOnce.Do(func() { procErr = initProcess() })
	return procErr
}

// tempRE matches the temporary directories made by mkdirTemp.
var tempRE = regexp.MustCompile(`^fi-(fi[0-9]+)-`)

// mkdirTemp makes a temporary directory named fi-PREFIX-PURPOSE-*, so that
// Sweep can tell which test process it belongs to.
func mkdirTemp(purpose string) (string, error) {
	if err := initOnce(); err != nil {
		return "", err
	}
	return os.MkdirTemp("", "fi-"+procPrefix+"-"+purpose+"-")
}

// TempDir creates a temporary directory, mode 0755, removed when the test
// ends. The name is short (usable for Unix socket paths) and carries this
// process's lab prefix, so Sweep removes it if the process is killed before
// its cleanup runs.
func TempDir(t testing.TB, purpose string) string {
	t.Helper()
	checkPrereqs(t)
	dir, err := mkdirTemp(purpose)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	return dir
}

// initProcess picks this process's namespace prefix, locks it for the life of
// the process, and sweeps namespaces left behind by dead test processes.
func initProcess() error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return err
	}
	pid := os.Getpid()
	for k := 0; k < 10000; k++ {
		prefix := fmt.Sprintf("fi%d", (pid+k)%10000)
		f, err := os.OpenFile(filepath.Join(lockDir, prefix+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		procPrefix, procLock = prefix, f
		break
	}
	if procLock == nil {
		return fmt.Errorf("no free namespace prefix in %s", lockDir)
	}
	return Sweep()
}

// Sweep deletes namespaces that look like lab namespaces but belong to no
// live test process: their prefix's lock file in /run/faithif-netlab is not
// locked, or the prefix is this process's but the namespace was not created
// by it. It also removes the temporary directories (run directories, the
// built binary) of dead test processes. It is called automatically before
// the first lab of a process.
func Sweep() error {
	out, err := ipCmd("netns", "list")
	if err != nil {
		return err
	}
	live := map[string]bool{}
	var errs []string
	if ents, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range ents {
			m := tempRE.FindStringSubmatch(e.Name())
			if m == nil || !e.IsDir() || m[1] == procPrefix {
				continue
			}
			alive, ok := live[m[1]]
			if !ok {
				alive = prefixLocked(m[1])
				live[m[1]] = alive
			}
			if !alive {
				// Background faithif instances of a killed test process
				// still run with this run directory.
				killRunDirProcs(filepath.Join(os.TempDir(), e.Name()))
				if err := os.RemoveAll(filepath.Join(os.TempDir(), e.Name())); err != nil {
					errs = append(errs, err.Error())
				}
			}
		}
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name := f[0]
		m := nsNameRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		prefix := m[1]
		labMu.Lock()
		mine := ours[name]
		labMu.Unlock()
		if mine {
			continue
		}
		if prefix != procPrefix {
			alive, ok := live[prefix]
			if !ok {
				alive = prefixLocked(prefix)
				live[prefix] = alive
			}
			if alive {
				continue
			}
		}
		if err := deleteNS(name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sweep: %s", strings.Join(errs, "; "))
	}
	return nil
}

// prefixLocked reports whether a live process holds the lock of prefix.
func prefixLocked(prefix string) bool {
	f, err := os.Open(filepath.Join(lockDir, prefix+".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
