package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Row 1: forged ICMPv6 Packet Too Big against running downloads.
//
// The router's client-facing link has its offloads off (as in the issue,
// like a real NIC: faithif's super-packets are segmented in software at
// the size faithif's TCP chose). ptbDownloads downloads run from the
// server at ptbMBps each. Throughput is measured over ptbWindow before the
// attack; then six PTBs (MTU 68 three times, MTU 1 three times) quoting
// the first download's 4-tuple with random sequence numbers, a window;
// then a spray of PTBs (MTU 68, random sequence numbers) over ptbSpray
// client ports from 32768 (Linux's ephemeral range), a window. During each
// window the client's link is captured (offloads off at both ends, so each
// segment the client receives has the payload size faithif's TCP chose)
// and the downloads' most common segment size is taken. Holds if the
// segments stay at the full size of the window before the attack (at
// least 1280 bytes) after the six and after the spray (the PTBs quote
// random sequence numbers, outside the send window: ignored, not clamped
// to 1280), at least 95% of the PTBs reached faithif
// (icmp6_in.packet_too_big), the first download keeps at least half its
// throughput after the six, and all of them together at least half after
// the spray.
func rowPTB(ctx context.Context, p *netlab.Program, cfg *config, r *result) {
	e := newEnv(ctx, p, cfg, func(lab *netlab.Lab) {
		for _, end := range []struct {
			ns  *netlab.Namespace
			dev string
		}{{lab.Router, netlab.RouterClientLink}, {lab.Client, netlab.ClientLink}} {
			if err := end.ns.SetOffloads(end.dev, netlab.Offloads{}); err != nil {
				p.Fatalf("%v", err)
			}
		}
	})
	rate := cfg.ptbMBps * 1e6
	port := e.serve(e.lab.Server, netlab.ServerAddr+":0", func(c net.Conn) { pacedSend(ctx, c, rate) })
	n := cfg.ptbDownloads
	got := make([]atomic.Int64, n)
	ports := make([]int, n)
	for i := range n {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := e.lab.Client.Dial(dctx, "tcp6", netlab.FaithHostPort(netlab.ServerAddr, port))
		cancel()
		if err != nil {
			p.Fatalf("download %d: connect: %v", i+1, err)
		}
		p.Cleanup(func() { c.Close() })
		ports[i] = c.LocalAddr().(*net.TCPAddr).Port
		go func() {
			buf := make([]byte, 256<<10)
			for {
				k, err := c.Read(buf)
				got[i].Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	faith := netip.MustParseAddr(netlab.ServerFaithAddr)
	client := netip.MustParseAddr(netlab.ClientAddr)
	// window returns each download's MB/s over one ptbWindow, and the most
	// common payload size of the downloads' segments reaching the client
	// meanwhile (captured on its link; 0 if none was seen).
	window := func() ([]float64, int) {
		capt, err := e.lab.Client.Capture(netlab.ClientLink, 128)
		if err != nil {
			p.Fatalf("%v", err)
		}
		defer capt.Close()
		sizes := map[int]int{}
		stop, done := make(chan struct{}), make(chan error, 1)
		go func() {
			done <- capt.Each(stop, func(pk []byte) bool {
				if pl := netlab.TCPPayload(pk, faith, client, port, -1); pl > 0 {
					sizes[pl]++
				}
				return true
			})
		}()
		b0 := make([]int64, n)
		for i := range n {
			b0[i] = got[i].Load()
		}
		start := time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(cfg.ptbWindow):
		}
		d := time.Since(start).Seconds()
		close(stop)
		if err := <-done; err != nil {
			p.Fatalf("%v", err)
		}
		if ctx.Err() != nil {
			p.Fatalf("interrupted")
		}
		out := make([]float64, n)
		for i := range n {
			out[i] = float64(got[i].Load()-b0[i]) / 1e6 / d
		}
		mode := 0
		for sz, k := range sizes {
			if k > sizes[mode] || k == sizes[mode] && sz > mode {
				mode = sz
			}
		}
		return out, mode
	}
	time.Sleep(500 * time.Millisecond) // past slow start
	base, fullSeg := window()
	if fullSeg < 1280 {
		p.Fatalf("segments of %d bytes before any PTB; want full-size ones for MTU 1500: the row would prove nothing", fullSeg)
	}
	st0 := e.mustShow()
	r.before, _ = e.metrics()
	s := e.sample(250 * time.Millisecond)
	lg := e.startLegit(nil)

	attacker := netip.MustParseAddr(netlab.AttackerAddr)
	rng := rand.New(rand.NewPCG(1, 12))
	ptb := func(mtu uint32, dport int) []byte {
		seg := netlab.TCPHeader(uint16(port), uint16(dport), rng.Uint32(), rng.Uint32(), netlab.FlagACK|netlab.FlagPSH, 502, nil)
		inner := netlab.BuildIPv6(faith, client, syscall.IPPROTO_TCP, append(seg, make([]byte, 1400)...))
		return netlab.BuildIPv6(attacker, faith, syscall.IPPROTO_ICMPV6, netlab.PacketTooBig(mtu, inner))
	}
	var forged [][]byte
	for _, mtu := range []uint32{68, 68, 68, 1, 1, 1} {
		forged = append(forged, ptb(mtu, ports[0]))
	}
	if err := e.atk.SendIPv6(forged...); err != nil {
		p.Fatalf("%v", err)
	}
	after6, seg6 := window()
	spray, err := e.atk.Flood(ctx, cfg.ptbSpray, 0, 30*time.Second, func(i int) []byte { return ptb(68, 32768+i%28232) })
	if err != nil {
		p.Fatalf("%v", err)
	}
	afterSpray, segSpray := window()
	r.legit = ptr(lg.summary(e))
	r.peak = s.stop()
	st := e.mustShow()
	settle(ctx, cfg.settle)
	r.after, _ = e.metrics()

	ptbs, _ := delta(st0, st, "icmp6_received_total", "packet_too_big")
	r.sent = fmt.Sprintf("%d PTBs (6 at one flow, %d sprayed in %v)", len(forged)+spray.Sent, spray.Sent, spray.Elapsed.Round(time.Millisecond))
	r.note("faithif counted icmp6_in.packet_too_big +%.0f", ptbs)
	if v, ok := delta(st0, st, "icmp6_ptb_mtu_raised_total"); ok {
		r.note("icmp6_ptb_mtu_raised +%.0f", v)
	}
	r.note("MB/s per download: before %s; after the 6 forged %s; after the spray %s", mbps(base), mbps(after6), mbps(afterSpray))
	r.note("segments the client received (most common payload): %d bytes before, %d after the 6 forged, %d after the spray", fullSeg, seg6, segSpray)
	sent := float64(len(forged) + spray.Sent)
	held := seg6 == fullSeg && segSpray == fullSeg && ptbs >= 0.95*sent &&
		after6[0] >= base[0]/2 && sum(afterSpray) >= sum(base)/2
	r.verdict(held, "segments %d → %d → %d bytes (must stay %d); PTBs counted %.0f of %.0f; download 1: %.1f → %.1f MB/s after 6 forged PTBs; all %d: %.1f → %.1f MB/s after the spray",
		fullSeg, seg6, segSpray, fullSeg, ptbs, sent, base[0], after6[0], n, sum(base), sum(afterSpray))
}

// pacedSend writes to c at rate bytes a second until c or ctx ends.
func pacedSend(ctx context.Context, c net.Conn, rate float64) {
	buf := make([]byte, 64<<10)
	start := time.Now()
	var sent float64
	for ctx.Err() == nil {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		k, err := c.Write(buf)
		sent += float64(k)
		if err != nil {
			return
		}
		if d := time.Until(start.Add(time.Duration(sent / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
	}
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

func mbps(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(parts, " ")
}

func ptr[T any](v T) *T { return &v }

// settle waits d, or less if ctx ends.
func settle(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
