package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// ecmpRelay is one relay box of TestECMP: a namespace running
// "faithif run" with its own run directory.
type ecmpRelay struct {
	name   string // "a" or "b"
	ns     *netlab.Namespace
	runDir string
	up6    string // its address toward the router
	router string // the router's address on that link
	dn4    string // its IPv4 address toward the server
	srv4   string // the server's address on that link
	f      *netlab.Faithif
}

// TestECMP scales faithif past one box: the router spreads the FAITH
// prefix over two relay namespaces with an equal-cost multipath route,
// hashing on ports (fib_multipath_hash_policy 1); each relay runs
// "faithif run" with the same prefix, and both reach the one IPv4 server.
// 100 flows from distinct client ports all succeed byte for byte, both
// relays carry some, and their accepted counts (metrics, and show --json
// with each relay's own FAITHIF_RUN_DIR) add up to 100.
//
//	client --- router ==(2001:db8:a::/64)== relay a --(198.51.100.0/24)-- server
//	                  ==(2001:db8:b::/64)== relay b --(203.0.113.0/24)---  192.0.2.2
func TestECMP(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	r, s := lab.Router, lab.Server

	relays := []*ecmpRelay{
		{name: "a", up6: "2001:db8:a::2", router: "2001:db8:a::1", dn4: "198.51.100.1", srv4: "198.51.100.2"},
		{name: "b", up6: "2001:db8:b::2", router: "2001:db8:b::1", dn4: "203.0.113.1", srv4: "203.0.113.2"},
	}
	conf := filepath.Join(netlab.TempDir(t, "conf"), "relay.conf")
	writeFile(t, conf, `# one relay of two behind an ECMP route
keepfaith = true
metrics = "`+metricsAddr+`"
[sysctl]
# the relay forwards what the router sends it to faith0
"net.ipv6.conf.all.forwarding" = 1
[[interface]]
name = "faith0"
prefixes = ["`+netlab.FaithPrefix+`"]
grace = "1s"
  [[interface.route]]
  prefix = "`+netlab.FaithPrefix+`"
`)
	must := func(_ string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, rl := range relays {
		ns, err := lab.AddNamespace(rl.name)
		if err != nil {
			t.Fatal(err)
		}
		rl.ns = ns
		rl.runDir = netlab.TempDir(t, "run"+rl.name)
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := ns.Sysctl(k, "0"); err != nil {
				t.Fatal(err)
			}
		}
		rlink, slink := "r"+rl.name+"0", "s"+rl.name+"0" // router's and server's ends
		must(r.IP("link", "add", rlink, "type", "veth", "peer", "name", "up0", "netns", ns.Name))
		must(s.IP("link", "add", slink, "type", "veth", "peer", "name", "dn0", "netns", ns.Name))
		must(r.IP("addr", "add", rl.router+"/64", "dev", rlink, "nodad"))
		must(ns.IP("addr", "add", rl.up6+"/64", "dev", "up0", "nodad"))
		must(ns.IP("addr", "add", rl.dn4+"/24", "dev", "dn0"))
		must(s.IP("addr", "add", rl.srv4+"/24", "dev", slink))
		for _, l := range []struct {
			ns  *netlab.Namespace
			dev string
		}{{r, rlink}, {ns, "up0"}, {ns, "dn0"}, {s, slink}} {
			must(l.ns.IP("link", "set", l.dev, "up"))
		}
		// Back to the client through the router; to the server's
		// 192.0.2.2 over the relay's own link.
		must(ns.IP("-6", "route", "add", "default", "via", rl.router, "dev", "up0"))
		must(ns.IP("-4", "route", "add", netlab.ServerAddr+"/32", "via", rl.srv4, "dev", "dn0"))
		for _, l := range []struct {
			ns  *netlab.Namespace
			dev string
		}{{r, rlink}, {ns, "up0"}, {ns, "dn0"}, {s, slink}} {
			if err := l.ns.WaitLinkUp(l.dev, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Sysctl("net.ipv6.fib_multipath_hash_policy", "1"); err != nil {
		t.Fatal(err)
	}
	must(r.IP("-6", "route", "add", netlab.FaithPrefix,
		"nexthop", "via", relays[0].up6, "dev", "ra0",
		"nexthop", "via", relays[1].up6, "dev", "rb0"))
	rt, _ := r.IP("-6", "route", "show", netlab.FaithPrefix)
	t.Logf("router: %s", strings.Join(strings.Fields(rt), " "))

	for _, rl := range relays {
		rl.f = lab.Start(t, netlab.StartSpec{
			NS:    rl.ns,
			Env:   []string{"FAITHIF_RUN_DIR=" + rl.runDir},
			Argv:  []string{netlab.Binary(t), "run", "--config", conf},
			Ready: netlab.IsApplianceReady,
		})
	}

	// 100 flows from distinct client ports, 10 at a time, each a
	// byte-exact echo of its own data.
	const flows, parallel, size = 100, 10, 8 << 10
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	sem := make(chan struct{}, parallel)
	for i := range flows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := ecmpFlow(ctx, lab, 31000+i, port, uint64(1000+i), size); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("flow %d (port %d): %v", i, 31000+i, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Errorf("%d of %d flows failed:\n%s", len(errs), flows, strings.Join(errs, "\n"))
	}

	// Each relay's own count, from its metrics and from its show.
	total := 0
	for _, rl := range relays {
		var mfsAccepted, ended float64
		deadline := time.Now().Add(5 * time.Second)
		for {
			mfs := scrape(t, ctx, rl.ns, metricsAddr)
			mfsAccepted = metricValue(t, mfs, "faithif_flows_total", "interface", "faith0", "outcome", "accepted")
			ended = metricSum(mfs, "faithif_flows_ended_total", "interface", "faith0")
			if ended >= mfsAccepted || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		sr := faithifIn(t, rl.ns, rl.runDir, "show", "faith0", "--json")
		var st netlab.Status
		if sr.ExitCode != 0 {
			t.Fatalf("relay %s: show: %s", rl.name, sr)
		}
		if err := json.Unmarshal([]byte(sr.Stdout), &st); err != nil {
			t.Fatalf("relay %s: show --json: %v", rl.name, err)
		}
		t.Logf("relay %s: %v flows accepted (show: %d, total %d), %v ended, %d bytes in", rl.name, mfsAccepted, st.FlowsAccepted, st.FlowsTotal, ended, st.BytesIn)
		if st.PID != rl.f.Pid() || float64(st.FlowsAccepted) != mfsAccepted || st.FlowsTotal != st.FlowsAccepted {
			t.Errorf("relay %s: show %s disagrees with its metrics (accepted %v) or its pid %d", rl.name, sr.Stdout, mfsAccepted, rl.f.Pid())
		}
		if ended != mfsAccepted {
			t.Errorf("relay %s: %v flows ended of %v accepted", rl.name, ended, mfsAccepted)
		}
		if st.BytesIn != st.FlowsAccepted*size || st.BytesOut != st.FlowsAccepted*size {
			t.Errorf("relay %s: bytes %d/%d for %d flows of %d bytes", rl.name, st.BytesIn, st.BytesOut, st.FlowsAccepted, size)
		}
		if mfsAccepted == 0 {
			t.Errorf("relay %s carried no flow: the multipath route did not spread the flows", rl.name)
		}
		total += int(mfsAccepted)
	}
	if total != flows {
		t.Errorf("the relays accepted %d flows between them, want %d", total, flows)
	}

	for _, rl := range relays {
		stopRun(t, rl.f, 5*time.Second)
		if links, _ := rl.ns.LinkNames(); strings.Contains(strings.Join(links, " "), "faith") {
			t.Errorf("relay %s: links left %v", rl.name, links)
		}
		if v, _ := rl.ns.ReadSysctl("net.ipv6.conf.all.forwarding"); v != "0" {
			t.Errorf("relay %s: forwarding %s after stop, want 0 as found", rl.name, v)
		}
	}
}

// ecmpFlow connects from the client's port lport to the server's echo
// port through the FAITH prefix and checks an echo of size bytes.
func ecmpFlow(ctx context.Context, lab *netlab.Lab, lport, port int, seed uint64, size int) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := lab.Client.DialFrom(dctx, "tcp6", fmt.Sprintf("[%s]:%d", netlab.ClientAddr, lport), serverAddr(port))
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	data := randBytes(seed, size)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if rerr != nil {
		return fmt.Errorf("read the echo after %d bytes: %w", len(got), rerr)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("echo of %d bytes: got %d bytes, not byte for byte the same", size, len(got))
	}
	return nil
}
