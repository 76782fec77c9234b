package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/faithif/faithif/test/netlab"
)

// sizedHandler reads what the client sends until it half-closes, then
// answers replySize(n) bytes of randBytes(n, ...) and closes: both
// directions carry a known number of bytes.
func sizedHandler(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return
	}
	c.Write(randBytes(uint64(n), replySize(int(n))))
}

func replySize(n int) int { return 3*n + 7 }

// sizedFlow sends size bytes to addr from the client, half-closes, and
// checks the reply byte for byte.
func sizedFlow(ctx context.Context, lab *netlab.Lab, addr string, size int) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := lab.Client.Dial(dctx, "tcp6", addr)
	cancel()
	if err != nil {
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(randBytes(uint64(size)+1, size))
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("send %d bytes: %w", size, err)
	}
	if rerr != nil {
		return fmt.Errorf("read the reply to %d bytes: %w", size, rerr)
	}
	if want := randBytes(uint64(size), replySize(size)); !bytes.Equal(got, want) {
		return fmt.Errorf("reply to %d bytes: got %d bytes, want %d, not byte for byte the same", size, len(got), len(want))
	}
	return nil
}

// familyNames returns the sorted names of the faithif_ metric families.
func familyNames(mfs map[string]*dto.MetricFamily) []string {
	var names []string
	for n := range mfs {
		if strings.HasPrefix(n, "faithif_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// TestMetrics drives known traffic through faith0 and checks what the
// Prometheus endpoint says about it, for "faithif run" (metrics key of the
// file) and for "faithif create --metrics": 7 accepted flows with known
// byte counts each way (flows_total{outcome="accepted"}, bytes_total exact,
// flows_ended_total, the dial histogram's count), 3 flows denied by the
// access file (outcome="denied"), one refused by a closed port on the IPv4
// server (outcome="refused"), every other outcome 0; /healthz 200; /readyz
// 200, then 503 naming keepfaith with faithif_keepfaith 0 once
// "faithif sysctl -w net.inet6.ip6.keepfaith=0", and 200 again at 1. Both
// commands serve the same metric families.
func TestMetrics(t *testing.T) {
	var families []string // of the first mode, to compare with the second
	for _, mode := range []string{"Run", "Create"} {
		t.Run(mode, func(t *testing.T) {
			lab := netlab.New(t)
			ctx := testCtx(t, time.Minute)
			l, port := listenServer(t, lab)
			serve(t, l, sizedHandler)
			dir := netlab.TempDir(t, "conf")
			rules := filepath.Join(dir, "faithd.conf")
			const deniedIP = "192.0.2.99"
			writeFile(t, rules, "# metrics e2e test\n"+
				"2001:db8:1::/64 deny "+deniedIP+"\n"+
				"2001:db8:1::/64 permit 192.0.2.0/24\n")

			var f *netlab.Faithif
			if mode == "Run" {
				conf := filepath.Join(dir, "faithif.conf")
				writeFile(t, conf, `keepfaith = true
metrics = "`+metricsAddr+`"
[[interface]]
name = "faith0"
prefixes = ["`+netlab.FaithPrefix+`"]
rules = "`+rules+`"
grace = "1s"
  [[interface.route]]
  prefix = "`+netlab.FaithPrefix+`"
`)
				f = lab.StartRun(t, "--config", conf)
			} else {
				f = lab.StartFaithif(t, "--keepfaith", "--access", rules, "--metrics", metricsAddr, "--grace", "1s")
			}
			get := func(path string) (int, string) {
				t.Helper()
				code, body, err := lab.Router.HTTPGet(ctx, "http://"+metricsAddr+path)
				if err != nil {
					t.Fatal(err)
				}
				return code, body
			}
			if code, body := get("/healthz"); code != 200 {
				t.Errorf("/healthz: %d %q, want 200", code, body)
			}
			if code, body := get("/readyz"); code != 200 {
				t.Errorf("/readyz while running: %d %q, want 200", code, body)
			}
			// Before any flow: every outcome is there, at 0.
			mfs := scrape(t, ctx, lab.Router, metricsAddr)
			outcomes := []string{"accepted", "refused", "denied", "unreachable", "timed_out", "limited", "error"}
			for _, o := range outcomes {
				if v := metricValue(t, mfs, "faithif_flows_total", "interface", "faith0", "outcome", o); v != 0 {
					t.Errorf("faithif_flows_total{outcome=%q} = %v before any flow, want 0", o, v)
				}
			}

			// 7 accepted flows of known sizes.
			const accepted = 7
			var sent, received int
			for i := range accepted {
				size := 1000 + 4099*i
				if err := sizedFlow(ctx, lab, serverAddr(port), size); err != nil {
					t.Fatalf("flow %d: %v", i, err)
				}
				sent += size
				received += replySize(size)
			}
			// 3 denied by line 2 of the access file.
			const denied = 3
			for i := range denied {
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				c, err := lab.Client.Dial(dctx, "tcp6", faithTo(netlab.FaithPrefix, deniedIP, 80))
				cancel()
				if err == nil {
					c.Close()
					t.Fatalf("denied flow %d: connected", i)
				}
				if !errors.Is(err, syscall.EACCES) {
					t.Errorf("denied flow %d: %v, want EACCES", i, err)
				}
			}
			// One refused by the IPv4 server: a port nobody listens on.
			closed, closedPort := listenServer(t, lab)
			closed.Close()
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := lab.Client.Dial(dctx, "tcp6", serverAddr(closedPort))
			cancel()
			if err == nil {
				c.Close()
				t.Fatalf("flow to the closed port %d: connected", closedPort)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("flow to the closed port: %v, want ECONNREFUSED", err)
			}

			// The relayed flows end on their own after the client's close;
			// wait for the last one to be counted.
			deadline := time.Now().Add(5 * time.Second)
			for {
				mfs = scrape(t, ctx, lab.Router, metricsAddr)
				if metricSum(mfs, "faithif_flows_ended_total", "interface", "faith0") >= accepted || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			want := map[string]float64{"accepted": accepted, "denied": denied, "refused": 1}
			for _, o := range outcomes {
				if v := metricValue(t, mfs, "faithif_flows_total", "interface", "faith0", "outcome", o); v != want[o] {
					t.Errorf("faithif_flows_total{outcome=%q} = %v, want %v", o, v, want[o])
				}
			}
			if mfs["faithif_flows_total"].GetType() != dto.MetricType_COUNTER {
				t.Errorf("faithif_flows_total is a %v, want a counter", mfs["faithif_flows_total"].GetType())
			}
			if v := metricValue(t, mfs, "faithif_bytes_total", "interface", "faith0", "direction", "client_to_server"); v != float64(sent) {
				t.Errorf("faithif_bytes_total{direction=client_to_server} = %v, want %d (sent)", v, sent)
			}
			if v := metricValue(t, mfs, "faithif_bytes_total", "interface", "faith0", "direction", "server_to_client"); v != float64(received) {
				t.Errorf("faithif_bytes_total{direction=server_to_client} = %v, want %d (received)", v, received)
			}
			if v := metricSum(mfs, "faithif_flows_ended_total", "interface", "faith0"); v != accepted {
				t.Errorf("faithif_flows_ended_total sums to %v, want %d", v, accepted)
			}
			if v := metricValue(t, mfs, "faithif_flows_ended_total", "interface", "faith0", "end", "closed"); v != accepted {
				t.Errorf("faithif_flows_ended_total{end=closed} = %v, want %d", v, accepted)
			}
			if v := metricValue(t, mfs, "faithif_flows_open", "interface", "faith0"); v != 0 {
				t.Errorf("faithif_flows_open = %v, want 0", v)
			}
			if v := metricValue(t, mfs, "faithif_rules", "interface", "faith0"); v != 2 {
				t.Errorf("faithif_rules = %v, want 2", v)
			}
			if v := metricValue(t, mfs, "faithif_interface_up", "interface", "faith0"); v != 1 {
				t.Errorf("faithif_interface_up = %v, want 1", v)
			}
			if _, ok := mfs["faithif_icmp6_sent_total"]; !ok {
				t.Errorf("no metric family faithif_icmp6_sent_total")
			} else if v := metricSum(mfs, "faithif_icmp6_sent_total", "interface", "faith0"); v != denied {
				t.Errorf("faithif_icmp6_sent_total sums to %v, want %d (one Destination Unreachable per denied flow; the refused flow got a RST)", v, denied)
			}
			hist := func(result string) (uint64, float64) {
				m := oneMetric(t, mfs, "faithif_dial_duration_seconds", "interface", "faith0", "result", result)
				if m == nil || m.Histogram == nil {
					t.Errorf("faithif_dial_duration_seconds{result=%q} is not a histogram", result)
					return 0, 0
				}
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
			if n, sum := hist("ok"); n != accepted || sum <= 0 || sum > 5 {
				t.Errorf("dial histogram {result=ok}: count %d, sum %vs; want count %d and a plausible sum", n, sum, accepted)
			}
			if n, _ := hist("failed"); n != 1 {
				t.Errorf("dial histogram {result=failed}: count %d, want 1 (the refused flow; denied flows are not dialled)", n)
			}
			if _, ok := mfs["go_goroutines"]; !ok {
				t.Errorf("no Go runtime metrics (go_goroutines)")
			}
			if _, ok := mfs["process_open_fds"]; !ok {
				t.Errorf("no process metrics (process_open_fds)")
			}
			// The same counts as show.
			st := mustShow(t, lab)
			if st.FlowsAccepted != accepted || st.FlowsDenied != denied || st.FlowsRefused != 1 || st.BytesIn != uint64(sent) || st.BytesOut != uint64(received) {
				t.Errorf("show disagrees with the metrics: %s", st.Raw)
			}

			// Readiness follows keepfaith.
			if r := lab.Faithif("sysctl", "-w", "net.inet6.ip6.keepfaith=0"); r.ExitCode != 0 {
				t.Fatalf("sysctl -w keepfaith=0: %s", r)
			}
			code, body := get("/readyz")
			if code != 503 || !strings.Contains(body, "keepfaith") || !strings.Contains(body, "faith0") {
				t.Errorf("/readyz with keepfaith 0: %d %q, want 503 naming faith0 and keepfaith", code, body)
			} else {
				t.Logf("/readyz with keepfaith 0: %d %s", code, strings.TrimSpace(body))
			}
			if code, _ := get("/healthz"); code != 200 {
				t.Errorf("/healthz with keepfaith 0: %d, want 200 (alive, just not ready)", code)
			}
			mfs = scrape(t, ctx, lab.Router, metricsAddr)
			if v := metricValue(t, mfs, "faithif_keepfaith", "interface", "faith0"); v != 0 {
				t.Errorf("faithif_keepfaith = %v with keepfaith 0, want 0", v)
			}
			if r := lab.Faithif("sysctl", "-w", "net.inet6.ip6.keepfaith=1"); r.ExitCode != 0 {
				t.Fatalf("sysctl -w keepfaith=1: %s", r)
			}
			if code, body := get("/readyz"); code != 200 {
				t.Errorf("/readyz with keepfaith back at 1: %d %q, want 200", code, body)
			}
			mfs = scrape(t, ctx, lab.Router, metricsAddr)
			if v := metricValue(t, mfs, "faithif_keepfaith", "interface", "faith0"); v != 1 {
				t.Errorf("faithif_keepfaith = %v with keepfaith 1, want 1", v)
			}

			// What a dashboard needs from the start: the build, every named
			// ICMPv6 type at zero, the reload state.
			if v := metricValue(t, mfs, "faithif_icmp6_received_total", "interface", "faith0", "type", "time_exceeded"); v != 0 {
				t.Errorf("faithif_icmp6_received_total{type=time_exceeded} = %v, want 0 (present from the start)", v)
			}
			if v := metricValue(t, mfs, "faithif_last_reload_successful", "interface", "faith0"); v != 1 {
				t.Errorf("faithif_last_reload_successful = %v before any reload, want 1", v)
			}
			if mf := mfs["faithif_build_info"]; mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
				t.Errorf("faithif_build_info: %v, want one series at 1", mf)
			}
			// The exposition as promtool checks it (install-deps.sh installs it).
			_, text := get("/metrics")
			lint := exec.CommandContext(ctx, "promtool", "check", "metrics")
			lint.Stdin = strings.NewReader(text)
			if out, err := lint.CombinedOutput(); err != nil {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}

			names := familyNames(mfs)
			if families == nil {
				families = names
			} else if !slices.Equal(names, families) {
				t.Errorf("create --metrics serves the families\n%v\nrun serves\n%v", names, families)
			}

			if mode == "Run" {
				stopRun(t, f, 5*time.Second)
			} else if err := f.Stop(); err != nil {
				t.Errorf("create: exit after SIGTERM: %v", err)
			}
			if _, err := tryScrape(ctx, lab.Router, metricsAddr); err == nil {
				t.Errorf("metrics still served after the process exited")
			}
		})
	}
}
