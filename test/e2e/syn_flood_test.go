package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faithif/faithif/test/netlab"
)

// Issue 12, row 2: a flood of SYNs from spoofed sources. The attacker
// beside the client forges SYNs from random /64s of a /36 that the router
// routes into a blackhole, as a real attacker's range is routed and
// silently dropped beyond the router: the handshakes they start are never
// completed.

// TestSYNFloodSpoofed floods faithif (--max-handshakes 256, so that a
// small flood fills the table) with 4,000 SYNs at 2,000/s from random
// spoofed /64s to an open port of the IPv4 server, while the legitimate
// client connects eight times to another port:
//   - every legitimate connect succeeds and relays data, and its socket
//     needed at most one SYN retransmission (TCP_INFO; SYN retransmissions
//     at 1 s and 3 s, so at most one means connected within 3 s);
//   - the server's flooded port does not see a connection per spoofed
//     SYN: at most half of max_handshakes (a quarter may dial first before
//     their handshake, the rest of the SYNs complete their handshake
//     first, which a spoofed source never does);
//   - the flood did fill the table: handshakes evicted, expired or dropped
//     (show --json: handshakes_evicted, handshakes_expired,
//     handshakes_dropped).
func TestSYNFloodSpoofed(t *testing.T) {
	const (
		maxHandshakes = 256
		floodSYNs     = 4000
		floodRate     = 2000
		legitConnects = 8
	)
	lab, _ := startLab(t, "--keepfaith", "--max-handshakes", strconv.Itoa(maxHandshakes))
	atk := lab.AddAttacker(t)
	ctx := testCtx(t, 50*time.Second)
	setSynBackoff(t, lab, 0) // SYN retransmissions at 1 s, 3 s, 7 s...
	floodPort, floodAccepted := countingListener(t, lab.Server, "tcp4", netlab.ServerAddr+":0")
	echoPort := echoServer(t, lab)
	st0 := mustShow(t, lab)

	spoof := netip.MustParsePrefix(netlab.SpoofPrefix)
	dst := netip.MustParseAddr(netlab.ServerFaithAddr)
	rng := rand.New(rand.NewPCG(2, 12))
	var flood netlab.FloodStats
	var floodErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		flood, floodErr = atk.Flood(ctx, floodSYNs, floodRate, 10*time.Second, func(int) []byte {
			syn := netlab.TCPHeader(uint16(1024+rng.IntN(64512)), uint16(floodPort), rng.Uint32(), 0,
				netlab.FlagSYN, 64800, netlab.MSSOption(1440))
			return netlab.BuildIPv6(netlab.RandomAddr(spoof, rng), dst, syscall.IPPROTO_TCP, syn)
		})
	}()

	// The legitimate client, once the flood has filled the table.
	time.Sleep(500 * time.Millisecond)
	for i := range legitConnects {
		start := time.Now()
		c, err := dialServer(ctx, lab, echoPort)
		d := time.Since(start)
		if err != nil {
			t.Errorf("legitimate connect %d during the flood: %v after %v", i, err, d.Round(time.Millisecond))
			continue
		}
		retrans, err := synRetransmits(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("legitimate connect %d: %v, %d SYN retransmission(s)", i, d.Round(time.Millisecond), retrans)
		if retrans > 1 {
			t.Errorf("legitimate connect %d needed %d SYN retransmissions (%v); want at most 1 (connected within 3 s)", i, retrans, d.Round(time.Millisecond))
		}
		echoExchange(t, c, uint64(1200+i), 4<<10)
		c.Close()
		time.Sleep(250 * time.Millisecond)
	}
	wg.Wait()
	if floodErr != nil {
		t.Fatal(floodErr)
	}
	t.Logf("flood: %d SYNs in %v (%.0f/s), %d failed", flood.Sent, flood.Elapsed.Round(time.Millisecond), flood.Rate(), flood.Failed)
	if flood.Sent < floodSYNs*9/10 {
		t.Fatalf("the attacker sent only %d of %d SYNs: the test proves little", flood.Sent, floodSYNs)
	}

	time.Sleep(500 * time.Millisecond) // dials of the last SYNs arrive now
	st := mustShow(t, lab)
	evicted := jsonCounter(t, st, "handshakes_evicted") - jsonCounter(t, st0, "handshakes_evicted")
	expired := jsonCounter(t, st, "handshakes_expired") - jsonCounter(t, st0, "handshakes_expired")
	dropped := jsonCounter(t, st, "handshakes_dropped") - jsonCounter(t, st0, "handshakes_dropped")
	n := floodAccepted.Load()
	t.Logf("the flooded port accepted %d connections; handshakes evicted %d, expired %d, dropped %d; packets_in +%d; in flight now %d",
		n, evicted, expired, dropped, st.PacketsIn-st0.PacketsIn, st.HandshakesInFlight)
	if n > maxHandshakes/2 {
		t.Errorf("the flooded port accepted %d connections for %d spoofed SYNs; want at most %d (half of max_handshakes): a spoofed SYN must cost no IPv4 connection under pressure",
			n, flood.Sent, maxHandshakes/2)
	}
	if evicted+expired+dropped == 0 {
		t.Errorf("no handshake evicted, expired or dropped during a flood of %d SYNs with max_handshakes %d: the table never filled, the test proves nothing: %s",
			flood.Sent, maxHandshakes, st.Raw)
	}
	// faithif goes on relaying.
	if err := echoRoundTrip(ctx, lab, serverAddr(echoPort), "after the flood"); err != nil {
		t.Error(err)
	}
}

// synRetransmits returns how many times the connected socket c
// retransmitted its SYN: TCP_INFO's total retransmissions, which are
// only SYNs before any data is sent.
func synRetransmits(c *net.TCPConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, gerr
	}
	return info.Total_retrans, nil
}

// jsonCounter returns the counter key of `faithif show --json` (a number
// at the top level), failing the test if it is not there: counters the
// attack tests read by name, so that they state the key they depend on.
func jsonCounter(t *testing.T, st *netlab.Status, key string) uint64 {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(st.Raw), &raw); err != nil {
		t.Fatal(err)
	}
	v, ok := raw[key]
	if !ok {
		t.Fatalf("show --json has no %s: %s", key, st.Raw)
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		t.Fatalf("show --json %s is %s, not a count", key, v)
	}
	return n
}
