package instance

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/dns64"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

const leakTestEnv = "FAITHIF_LEAKTEST_IN_NETNS"

// TestCreateDestroyLeavesNothing creates and destroys an interface 50 times
// in one process, with its DNS64 responder asked once each time, and checks
// that goroutines, file descriptors, links and routes come back to where
// they started. It needs root: it re-runs itself
// in a new network namespace (unshare -n) so that the whole process, every
// thread, sees only its own links.
func TestCreateDestroyLeavesNothing(t *testing.T) {
	if os.Getenv(leakTestEnv) == "" {
		cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run=^TestCreateDestroyLeavesNothing$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), leakTestEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a new network namespace:\n%s", out)
		if err != nil {
			t.Fatalf("leak test in a new network namespace: %v (needs root and unshare)", err)
		}
		return
	}
	exec.Command("ip", "link", "set", "lo", "up").Run()

	cfg := config.Interface{
		Name:        "faith0",
		Prefixes:    []netip.Prefix{netip.MustParsePrefix("2001:db8:46::/96"), netip.MustParsePrefix("2001:db8:64::/64")},
		MTU:         1500,
		IdleTimeout: time.Minute,
		DialTimeout: time.Second,
		Grace:       time.Second,
		Routes: []faithif.Route{{Prefix: netip.MustParsePrefix("2001:db8:46::/96")},
			{Prefix: netip.MustParsePrefix("2001:db8:64::/64"), Metric: 50, Table: 100}},
		// Nothing answers upstream: each query ends in SERVFAIL at once
		// (port unreachable).
		DNS64: &dns64.Config{
			Listen:    []netip.AddrPort{netip.MustParseAddrPort("[::1]:5353"), netip.MustParseAddrPort("127.0.0.1:5353")},
			Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5354")},
			Prefix:    netip.MustParsePrefix("2001:db8:46::/96"), AllowLocalNets: true,
			RateLimit: dns64.DefaultRateLimit, CacheSize: dns64.DefaultCacheSize, Timeout: time.Second,
		},
	}
	runDir := faithif.RunDir(t.TempDir())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	cycle := func(i int) {
		in, err := New(cfg, Options{RunDir: runDir, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- in.Run(func() { close(ready) }) }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("cycle %d: run ended before ready: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("cycle %d: not ready after 10s", i)
		}
		if n := countRoutes(t); n != 2 {
			t.Fatalf("cycle %d: %d routes via faith0 while running; want 2", i, n)
		}
		q := new(dns.Msg)
		q.SetQuestion("faithif.example.", dns.TypeAAAA)
		m, _, err := (&dns.Client{Timeout: 10 * time.Second}).Exchange(q, "[::1]:5353")
		if err != nil || m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("cycle %d: DNS64: %v %v; want SERVFAIL (no upstream)", i, m, err)
		}
		if st := in.Status(); st.DNS64Results["servfail"] != 1 || len(st.DNS64Listen) != 2 {
			t.Fatalf("cycle %d: status dns64 %v %v", i, st.DNS64Listen, st.DNS64Results)
		}
		in.Destroy(time.Second)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("cycle %d: run: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("cycle %d: not stopped 10s after Destroy", i)
		}
		if _, err := netlink.LinkByName("faith0"); err == nil {
			t.Fatalf("cycle %d: faith0 still exists after destroy", i)
		}
		if _, err := os.Stat(runDir.SocketPath("faith0")); !os.IsNotExist(err) {
			t.Fatalf("cycle %d: control socket left behind: %v", i, err)
		}
	}

	cycle(0) // warm up what the runtime and libraries start once
	g0, fd0 := settle(0, 0)
	for i := 1; i <= 50; i++ {
		cycle(i)
	}
	g1, fd1 := settle(g0, fd0)
	t.Logf("after 50 cycles: goroutines %d -> %d, fds %d -> %d", g0, g1, fd0, fd1)
	if g1 > g0 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines grew from %d to %d:\n%s", g0, g1, buf[:runtime.Stack(buf, true)])
	}
	if fd1 > fd0 {
		t.Errorf("file descriptors grew from %d to %d: %s", fd0, fd1, listFDs())
	}
	if links, _ := netlink.LinkList(); len(links) != 1 {
		t.Errorf("links left: %v; want only lo", links)
	}
}

// settle waits up to 5 s for the goroutine and fd counts to drop to the
// given targets (0: just let things settle) and returns them.
func settle(g, fd int) (int, int) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		ng, nfd := runtime.NumGoroutine(), countFDs()
		if (g == 0 && time.Until(deadline) < 4*time.Second) || (g != 0 && ng <= g && nfd <= fd) || time.Now().After(deadline) {
			return ng, nfd
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

func listFDs() string {
	entries, _ := os.ReadDir("/proc/self/fd")
	var s []string
	for _, e := range entries {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		s = append(s, e.Name()+"->"+target)
	}
	return strings.Join(s, " ")
}

func countRoutes(t *testing.T) int {
	l, err := netlink.LinkByName("faith0")
	if err != nil {
		t.Fatal(err)
	}
	// Every table: one of the routes is in table 100.
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: l.Attrs().Index, Table: syscall.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range routes {
		if r.Dst != nil && !r.Dst.IP.IsLinkLocalUnicast() && r.Table != syscall.RT_TABLE_LOCAL {
			n++
		}
	}
	return n
}
