package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/vishvananda/netns"
)

// Namespace is one named network namespace of a lab (see ip-netns(8)).
// Its methods run commands in it and open kernel sockets in it.
type Namespace struct {
	// Name is the namespace name as listed by "ip netns list".
	Name string

	h netns.NsHandle
}

// Do runs fn on an OS thread that has been switched into the namespace, and
// returns fn's error. Sockets created by fn belong to the namespace for their
// whole life and may be used from any goroutine afterwards. fn must not start
// goroutines that expect to be in the namespace: only the calling thread is.
//
// If the thread cannot be switched back to its original namespace it is
// thrown away (the goroutine exits while still locked), so no other goroutine
// ever runs in the wrong namespace.
func (n *Namespace) Do(fn func() error) error {
	type result struct{ err error }
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{fmt.Errorf("netlab: get current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			ch <- result{fmt.Errorf("netlab: enter netns %s: %w", n.Name, err)}
			return
		}
		var ferr error
		func() {
			defer func() {
				if r := recover(); r != nil {
					ferr = fmt.Errorf("netlab: panic in netns %s: %v", n.Name, r)
				}
			}()
			ferr = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			ch <- result{fmt.Errorf("netlab: leave netns %s: %w (after: %v)", n.Name, err, ferr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ferr}
	}()
	return (<-ch).err
}

// Listen opens a listening socket in the namespace, like net.Listen.
func (n *Namespace) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// ListenTCP opens a TCP listener in the namespace and registers its Close with
// t.Cleanup. It fails the test if the listener cannot be opened.
func (n *Namespace) ListenTCP(t testing.TB, network, address string) *net.TCPListener {
	t.Helper()
	l, err := n.Listen(network, address)
	if err != nil {
		t.Fatalf("netlab: listen %s %s in %s: %v", network, address, n.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// DialWith dials address from the namespace with the given dialer.
func (n *Namespace) DialWith(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Dial connects to address from the namespace, like net.Dialer.DialContext.
func (n *Namespace) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return n.DialWith(ctx, &net.Dialer{}, network, address)
}

// DialFrom connects from the fixed local address laddr (host:port) to raddr,
// setting SO_REUSEADDR on the socket before it is bound, so the same local
// port can be used again as soon as the previous connection on it is closed.
func (n *Namespace) DialFrom(ctx context.Context, network, laddr, raddr string) (net.Conn, error) {
	la, err := net.ResolveTCPAddr(network, laddr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{
		LocalAddr: la,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return n.DialWith(ctx, d, network, raddr)
}

// Command returns an exec.Cmd that runs name with args inside the namespace
// through "ip netns exec". extraEnv entries (KEY=VALUE) are added to the
// test process's environment.
func (n *Namespace) Command(ctx context.Context, extraEnv []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs name with args in the namespace and returns its combined output.
func (n *Namespace) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, nil, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// IP runs "ip -n NAME args..." and returns its standard output.
func (n *Namespace) IP(args ...string) (string, error) {
	return ipCmd(append([]string{"-n", n.Name}, args...)...)
}

// Sysctl writes value to the sysctl key (dotted form, e.g.
// "net.ipv6.conf.all.forwarding") of the namespace.
func (n *Namespace) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return n.Do(func() error {
		return os.WriteFile(path, []byte(value), 0o644)
	})
}

// ReadSysctl reads the sysctl key (dotted form) of the namespace.
func (n *Namespace) ReadSysctl(key string) (string, error) {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// LinkNames lists the names of the network interfaces in the namespace.
func (n *Namespace) LinkNames() ([]string, error) {
	out, err := n.IP("-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// "3: rc0@if2: <BROADCAST,...> mtu ..."
		f := strings.Fields(line)
		if len(f) < 2 || !linkLineRE.MatchString(line) {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if i := strings.IndexByte(name, '@'); i >= 0 {
			name = name[:i]
		}
		names = append(names, name)
	}
	return names, nil
}

// ipCmd runs ip(8) and returns its stdout. Its stderr goes into the error
// only: ip sometimes warns on stderr (e.g. "Peer netns reference is
// invalid" while another namespace is being deleted) and such lines must not
// be parsed as output.
var linkLineRE = regexp.MustCompile(`^[0-9]+: `)

func ipCmd(args ...string) (string, error) {
	var stdout, stderr strings.Builder
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Counters returns the namespace's SNMP and extended network counters from
// /proc/net/snmp, /proc/net/snmp6 and /proc/net/netstat, keyed as nstat(8)
// names them: "TcpExtTCPSynRetrans", "TcpRetransSegs", "Ip6OutNoRoutes"...
func (n *Namespace) Counters() (map[string]uint64, error) {
	m := map[string]uint64{}
	err := n.Do(func() error {
		// thread-self: /proc/self/net would show the process's namespace,
		// not this thread's.
		for _, f := range []string{"snmp", "netstat"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			lines := strings.Split(string(b), "\n")
			for i := 0; i+1 < len(lines); i += 2 {
				keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				if len(keys) == 0 || len(keys) != len(vals) || keys[0] != vals[0] {
					continue
				}
				group := strings.TrimSuffix(keys[0], ":")
				for j := 1; j < len(keys); j++ {
					if v, err := strconv.ParseUint(vals[j], 10, 64); err == nil {
						m[group+keys[j]] = v
					}
				}
			}
		}
		b, err := os.ReadFile("/proc/thread-self/net/snmp6")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					m[f[0]] = v
				}
			}
		}
		return nil
	})
	return m, err
}

// FaithifRunDir returns the run directory faithif uses in the namespace
// when FAITHIF_RUN_DIR is not set: /run/faithif/netns/COOKIE
// (faithif.RunDirForNetns). The lab removes it with the namespace.
func (n *Namespace) FaithifRunDir() (string, error) {
	var d faithif.RunDir
	err := n.Do(func() error {
		var err error
		d, err = faithif.RunDirForNetns()
		return err
	})
	return string(d), err
}

// removeNetnsRunDir removes the run directory faithif keeps for the named
// namespace when FAITHIF_RUN_DIR is not set, if there is one. A namespace
// that is already gone has none left to find (a cookie names a namespace
// only while it lives).
func removeNetnsRunDir(name string) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil // gone already, or never made
	}
	n := &Namespace{Name: name, h: h}
	defer h.Close()
	d, err := n.FaithifRunDir()
	if err != nil {
		return fmt.Errorf("netlab: run directory of %s: %w", name, err)
	}
	if !strings.HasPrefix(d, faithif.NetnsRunDirs+"/") {
		return fmt.Errorf("netlab: namespace %s has run directory %s, not one of its own under %s", name, d, faithif.NetnsRunDirs)
	}
	if err := os.RemoveAll(d); err != nil {
		return fmt.Errorf("netlab: remove the run directory of %s: %w", name, err)
	}
	return nil
}
