package netlab

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestFaithAddr(t *testing.T) {
	if got := FaithAddr(ServerAddr); got != ServerFaithAddr {
		t.Fatalf("FaithAddr(%s) = %s, want %s", ServerAddr, got, ServerFaithAddr)
	}
	if got := FaithHostPort("127.0.0.1", 80); got != "[2001:db8:46::7f00:1]:80" {
		t.Fatalf("FaithHostPort = %s", got)
	}
}

// echoOnce accepts one connection on l, echoes one line and closes.
func echoOnce(l net.Listener) <-chan error {
	ch := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(c, c)
		ch <- err
	}()
	return ch
}

func roundTrip(t *testing.T, ctx context.Context, ns *Namespace, network, addr string) {
	t.Helper()
	c, err := ns.Dial(ctx, network, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "ping" {
		t.Fatalf("echo from %s: %q, %v", addr, b, err)
	}
}

func TestLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Registered first, so it runs after the lab's own teardown.
	var names []string
	var runDir string
	t.Cleanup(func() {
		out, _ := ipCmd("netns", "list")
		for _, n := range names {
			if strings.Contains(out, n) {
				t.Errorf("namespace %s left after teardown", n)
			}
		}
		if _, err := os.Stat(runDir); !os.IsNotExist(err) {
			t.Errorf("run dir %s left after teardown", runDir)
		}
	})
	lab := New(t)
	names = []string{lab.Client.Name, lab.Router.Name, lab.Server.Name}
	runDir = lab.RunDir

	// Client -> router over IPv6.
	l6 := lab.Router.ListenTCP(t, "tcp6", "["+RouterAddr6+"]:0")
	done := echoOnce(l6)
	roundTrip(t, ctx, lab.Client, "tcp6", l6.Addr().String())
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Server -> router over IPv4, and the server's kernel socket really
	// lives in the server namespace (it uses the server's source address).
	l4 := lab.Router.ListenTCP(t, "tcp4", RouterAddr4+":0")
	acc := make(chan net.Addr, 1)
	go func() {
		c, err := l4.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c.RemoteAddr()
		c.Close()
	}()
	c, err := lab.Server.Dial(ctx, "tcp4", l4.Addr().String())
	if err != nil {
		t.Fatalf("server -> router: %v", err)
	}
	c.Close()
	if a := <-acc; a == nil || !strings.HasPrefix(a.String(), ServerAddr+":") {
		t.Fatalf("router saw server connection from %v, want %s", a, ServerAddr)
	}

	// The server has no IPv6 and the client no IPv4.
	if v, err := lab.Server.ReadSysctl("net.ipv6.conf.all.disable_ipv6"); err != nil || v != "1" {
		t.Fatalf("server disable_ipv6 = %q, %v", v, err)
	}
	if _, err := lab.Server.Dial(ctx, "tcp6", "["+RouterAddr6+"]:1"); err == nil {
		t.Fatal("server could dial IPv6")
	}
	if _, err := lab.Client.Dial(ctx, "tcp4", RouterAddr4+":1"); err == nil {
		t.Fatal("client could dial IPv4")
	}
	if v, err := lab.Router.ReadSysctl("net.ipv6.conf.all.forwarding"); err != nil || v != "1" {
		t.Fatalf("router forwarding = %q, %v", v, err)
	}
	links, err := lab.Router.LinkNames()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(links, " ") != "lo rc0 rs0" {
		t.Fatalf("router links = %v", links)
	}

	// Fixed source port, reused at once.
	l6b := lab.Router.ListenTCP(t, "tcp6", "["+RouterAddr6+"]:0")
	for i := 0; i < 3; i++ {
		done := make(chan error, 1)
		go func() {
			c, err := l6b.Accept()
			if err == nil {
				if !strings.HasSuffix(c.RemoteAddr().String(), ":40000") {
					t.Errorf("remote %v, want port 40000", c.RemoteAddr())
				}
				c.Close() // server closes first
			}
			done <- err
		}()
		c, err := lab.Client.DialFrom(ctx, "tcp6", "["+ClientAddr+"]:40000", l6b.Addr().String())
		if err != nil {
			t.Fatalf("DialFrom #%d: %v", i, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, c)
		c.Close()
	}

	// Our own namespace is untouched by the lab's sockets: the test
	// process's namespace has no lab addresses.
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if strings.HasPrefix(a.String(), "2001:db8:1::") {
				t.Fatalf("lab address %v leaked into the test's namespace", a)
			}
		}
	}
}

func TestSweep(t *testing.T) {
	New(t) // makes sure this process has its prefix
	// A namespace from a "dead" process: a prefix nobody has locked.
	stale := "fi99999x1c"
	if _, err := ipCmd("netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteNS(stale) })
	staleDir, err := os.MkdirTemp("", "fi-fi99999-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(staleDir) })
	liveDir := TempDir(t, "live")
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(staleDir); !os.IsNotExist(err) {
		t.Errorf("stale temp dir %s survived Sweep", staleDir)
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("live temp dir removed by Sweep: %v", err)
	}
	out, _ := ipCmd("netns", "list")
	if strings.Contains(out, stale) {
		t.Fatalf("stale namespace %s survived Sweep", stale)
	}
	// Our live namespaces survive.
	lab := New(t)
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	out, _ = ipCmd("netns", "list")
	if !strings.Contains(out, lab.Router.Name) {
		t.Fatalf("live namespace %s removed by Sweep", lab.Router.Name)
	}
}

func TestCounters(t *testing.T) {
	lab := New(t)
	before, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := before["TcpExtTCPSynRetrans"]; !ok {
		t.Fatalf("no TcpExtTCPSynRetrans in %d counters", len(before))
	}
	l := lab.Router.ListenTCP(t, "tcp6", "["+RouterAddr6+"]:0")
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := lab.Client.Dial(context.Background(), "tcp6", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	after, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := after["TcpActiveOpens"] - before["TcpActiveOpens"]; d != 1 {
		t.Fatalf("client TcpActiveOpens went up by %d, want 1 (counters not per namespace?)", d)
	}
}
