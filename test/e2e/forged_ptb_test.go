package e2e

import (
	be "encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Issue 12, row 1: forged ICMPv6 Packet Too Big. faithif's TCP must treat
// an MTU below 1280 as 1280 (RFC 8201) and ignore a PTB whose quoted
// sequence number is not inside the flow's unacknowledged send window, as
// Linux does. The test watches the size of the segments the client
// receives: with the offloads of the client's link off (TSO, GSO and GRO,
// as "ethtool -K" would; the attack was seen with them off, as a
// real NIC segments), the router segments in software what faithif sends
// and the client merges nothing, so every segment the client counts has
// the payload size faithif's TCP chose.
//
// Nothing in it depends on timing: the download is never lossy (the
// client's receive buffer caps what is in flight below the queue of the
// router's link), so its pace does not depend on how a loaded machine
// schedules loss recovery; and the in-window PTBs quote segments the
// client cannot acknowledge while they are sent (its route back to the
// FAITH address is a blackhole meanwhile), so they are in the window
// however long they take to arrive.

// ptbLinkRate is the tbf rate on the router's client-facing veth, and
// ptbLinkQueue its queue: larger than the most the client's receive buffer
// (ptbClientBuffer) lets be in flight, so that it never drops.
const (
	ptbLinkRate     = "100mbit"
	ptbLinkQueue    = "2mb"
	ptbClientBuffer = 256 << 10 // SO_RCVBUF asked: the kernel doubles it
)

func TestForgedPacketTooBig(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	atk := lab.AddAttacker(t)
	ctx := testCtx(t, 50*time.Second)
	// Offloads off on both ends of the client's link: the router segments
	// in software what faithif sends, and the client merges nothing.
	for _, end := range []struct {
		ns  *netlab.Namespace
		dev string
	}{{lab.Router, netlab.RouterClientLink}, {lab.Client, netlab.ClientLink}} {
		if err := end.ns.SetOffloads(end.dev, netlab.Offloads{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lab.Router.Run(ctx, "tc", "qdisc", "add", "dev", netlab.RouterClientLink, "root", "tbf",
		"rate", ptbLinkRate, "burst", "64kb", "limit", ptbLinkQueue); err != nil {
		t.Fatal(err)
	}

	l, port := listenServer(t, lab)
	serve(t, l, streamHandler)
	c := mustDialServer(t, ctx, lab, port)
	if err := c.SetReadBuffer(ptbClientBuffer); err != nil {
		t.Fatal(err)
	}
	cport := c.LocalAddr().(*net.TCPAddr).Port
	var got atomic.Int64
	countReads(c, &got)
	// segmentSize waits until the client has read n more bytes (at most
	// 10 s) and returns the most common payload size of the download's
	// segments reaching the client meanwhile (captured on its link).
	faith := netip.MustParseAddr(netlab.ServerFaithAddr)
	client := netip.MustParseAddr(netlab.ClientAddr)
	segmentSize := func(what string, n int64) int {
		t.Helper()
		capt, err := lab.Client.Capture(netlab.ClientLink, 128)
		if err != nil {
			t.Fatal(err)
		}
		defer capt.Close()
		sizes := map[int]int{}
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- capt.Each(stop, func(p []byte) bool {
				if pl := netlab.TCPPayload(p, faith, client, port, cport); pl > 0 {
					sizes[pl]++
				}
				return true
			})
		}()
		b0 := got.Load()
		deadline := time.Now().Add(10 * time.Second)
		for got.Load()-b0 < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		b := got.Load() - b0
		mode, segs := 0, 0
		for sz, k := range sizes {
			segs += k
			if k > sizes[mode] {
				mode = sz
			}
		}
		t.Logf("%s: %d bytes read; %d segments seen, most of them (%d) of %d bytes", what, b, segs, sizes[mode], mode)
		if b < n {
			t.Errorf("%s: the download moved only %d of %d bytes in 10 s (segments of %d bytes)", what, b, n, mode)
		}
		return mode
	}
	// Full-size segments at MTU 1500: 1500 less the headers and options
	// faithif's TCP puts in each (1400 bytes with gVisor's).
	full := segmentSize("before any PTB", 4<<20)
	if full < 1280 {
		t.Fatalf("segments of %d bytes before any PTB; want full-size ones for MTU 1500: the test would prove nothing", full)
	}

	attacker := netip.MustParseAddr(netlab.AttackerAddr)
	// ptb forges a PTB announcing mtu for the segment faithif would send
	// from the server's port to dport with sequence number seq.
	ptb := func(mtu uint32, dport uint16, seq uint32) []byte {
		seg := netlab.TCPHeader(uint16(port), dport, seq, 1, netlab.FlagACK|netlab.FlagPSH, 502, nil)
		inner := netlab.BuildIPv6(faith, client, syscall.IPPROTO_TCP, append(seg, make([]byte, 1400)...))
		return netlab.BuildIPv6(attacker, faith, syscall.IPPROTO_ICMPV6, netlab.PacketTooBig(mtu, inner))
	}
	rng := rand.New(rand.NewPCG(12, 1))
	st0 := mustShow(t, lab)
	var forged [][]byte
	for _, mtu := range []uint32{68, 68, 68, 1, 1, 1} {
		forged = append(forged, ptb(mtu, uint16(cport), rng.Uint32()))
	}
	if err := atk.SendIPv6(forged...); err != nil {
		t.Fatal(err)
	}
	waitPTBs(t, lab, st0, len(forged))
	if m := segmentSize("after 6 PTBs (MTU 68 and 1) with random sequence numbers", 4<<20); m != full {
		t.Errorf("segments of %d bytes after PTBs quoting random sequence numbers; want them ignored (%d)", m, full)
	}

	// The spray: every port of Linux's ephemeral range, as an attacker who
	// does not know the client's port would.
	const lo, hi = 32768, 60999
	st0 = mustShow(t, lab)
	drop0 := faithTxDropped(t, lab)
	fs, err := atk.Flood(ctx, hi-lo+1, 50000, 10*time.Second, func(i int) []byte {
		return ptb(68, uint16(lo+i), rng.Uint32())
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spray: %d PTBs sent in %v (%d failed)", fs.Sent, fs.Elapsed.Round(time.Millisecond), fs.Failed)
	// Some may be dropped by the kernel on the way into faith0 when its
	// queue (500 packets) is full, more so for a slow (-race) faithif: every
	// PTB sent either reached faithif or is counted in faith0's tx_dropped.
	// How many arrive is load; that none is lost unaccounted is the point.
	var d, dropped uint64
	waitStatus(t, lab, 20*time.Second, func(s *netlab.Status) bool {
		d = s.ICMPv6In["packet_too_big"] - st0.ICMPv6In["packet_too_big"]
		dropped = faithTxDropped(t, lab) - drop0
		return d+dropped >= uint64(fs.Sent)
	})
	t.Logf("icmp6_in.packet_too_big +%d, faith0 tx_dropped +%d", d, dropped)
	if d+dropped < uint64(fs.Sent) || d == 0 {
		t.Fatalf("of the %d sprayed PTBs %d reached faithif and %d were dropped at faith0's queue: %d unaccounted for", fs.Sent, d, dropped, uint64(fs.Sent)-min(uint64(fs.Sent), d+dropped))
	}
	if m := segmentSize("after the spray", 4<<20); m != full {
		t.Errorf("segments of %d bytes after a spray of PTBs with random sequence numbers; want them ignored (%d)", m, full)
	}

	// The positive control: a PTB quoting a segment faithif has sent and
	// the client has not acknowledged is in the window: its MTU of 68
	// counts as 1280. The client's route back to the FAITH address is a
	// blackhole meanwhile, so that it acknowledges nothing: one PTB for each
	// of the next 3 data segments seen on faith0 (all at or above the
	// unacknowledged sequence number; once the window is full they are
	// retransmissions, the RTO doubling each time: 3 take at most 1.4 s
	// after the RTO's first 200 ms).
	blackhole := []string{"-6", "route", "add", "blackhole", netlab.ServerFaithAddr + "/128"}
	if _, err := lab.Client.Run(ctx, "ip", blackhole...); err != nil {
		t.Fatal(err)
	}
	raw, err := atk.RawIPv6()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	capt, err := lab.Router.Capture(netlab.FaithIf, 128)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	st0 = mustShow(t, lab)
	const inWindow = 3
	for range inWindow {
		p, err := capt.Next(10*time.Second, func(p []byte) bool { return netlab.TCPPayload(p, faith, client, port, cport) > 0 })
		if err != nil {
			t.Fatalf("no data segment of the download seen on %s: %v", netlab.FaithIf, err)
		}
		if err := raw.Send(ptb(68, uint16(cport), be.BigEndian.Uint32(p[44:]))); err != nil {
			t.Fatal(err)
		}
	}
	capt.Close()
	waitPTBs(t, lab, st0, inWindow)
	blackhole[2] = "del"
	if _, err := lab.Client.Run(ctx, "ip", blackhole...); err != nil {
		t.Fatal(err)
	}
	// MTU 1280: 220 bytes less than at 1500.
	if m := segmentSize("after PTBs (MTU 68) quoting segments in flight", 4<<20); m != full-220 {
		t.Errorf("segments of %d bytes after an in-window PTB with MTU 68; want %d (the MTU taken as 1280)", m, full-220)
	}
}

// streamHandler sends data until the client goes away.
func streamHandler(c *net.TCPConn) {
	buf := randBytes(7, 256<<10)
	c.SetDeadline(time.Now().Add(time.Minute))
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// waitPTBs waits until faithif has counted n more Packet Too Big messages
// than in st0, and fails the test if it does not within 3 s.
func waitPTBs(t *testing.T, lab *netlab.Lab, st0 *netlab.Status, n int) {
	t.Helper()
	st := waitStatus(t, lab, 3*time.Second, func(s *netlab.Status) bool {
		return s.ICMPv6In["packet_too_big"]-st0.ICMPv6In["packet_too_big"] >= uint64(n)
	})
	if d := st.ICMPv6In["packet_too_big"] - st0.ICMPv6In["packet_too_big"]; d < uint64(n) {
		t.Fatalf("icmp6_in.packet_too_big +%d; want +%d: the forged PTBs did not reach faithif: %s", d, n, st.Raw)
	}
}

// faithTxDropped returns faith0's tx_dropped: packets the router's kernel
// dropped on their way into faithif because the TUN queue was full.
func faithTxDropped(t *testing.T, lab *netlab.Lab) uint64 {
	t.Helper()
	out, err := lab.Router.IP("-s", "-j", "link", "show", "dev", "faith0")
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Stats64 struct {
			TX struct {
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show dev faith0: %v: %s", err, out)
	}
	return links[0].Stats64.TX.Dropped
}
