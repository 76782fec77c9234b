package netlab

import (
	"context"
	be "encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRandomAddr(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ps := range []string{SpoofPrefix, "2001:db8:f000:1::/64", "2001:db8::/33", "2001:db8:1::5/128"} {
		p := netip.MustParsePrefix(ps)
		seen := map[netip.Addr]bool{}
		for range 1000 {
			a := RandomAddr(p, rng)
			if !p.Contains(a) {
				t.Fatalf("RandomAddr(%s) = %s, outside the prefix", p, a)
			}
			seen[a] = true
		}
		if p.Bits() < 120 && len(seen) < 990 {
			t.Errorf("RandomAddr(%s): only %d distinct addresses of 1000", p, len(seen))
		}
	}
}

func TestPacketBuilders(t *testing.T) {
	h := TCPHeader(1234, 80, 7, 9, FlagSYN|FlagACK, 1000, MSSOption(1440))
	if len(h) != 24 || h[12]>>4 != 6 || h[13] != FlagSYN|FlagACK || be.BigEndian.Uint32(h[4:]) != 7 || be.BigEndian.Uint32(h[8:]) != 9 {
		t.Fatalf("TCPHeader: % x", h)
	}
	if h := TCPHeader(1, 2, 3, 4, FlagRST, 0, []byte{1}); len(h) != 24 || h[20] != 1 {
		t.Fatalf("TCPHeader with a 1-byte option: % x, want it padded to 24 bytes", h)
	}
	src, dst := netip.MustParseAddr(AttackerAddr), netip.MustParseAddr(ServerFaithAddr)
	inner := BuildIPv6(dst, netip.MustParseAddr(ClientAddr), syscall.IPPROTO_TCP, append(h, make([]byte, 2000)...))
	ptb := PacketTooBig(68, inner)
	if ptb[0] != 2 || ptb[1] != 0 || be.BigEndian.Uint32(ptb[4:]) != 68 {
		t.Fatalf("PacketTooBig header: % x", ptb[:8])
	}
	p := BuildIPv6(src, dst, syscall.IPPROTO_ICMPV6, ptb)
	if len(p) != 1280 {
		t.Errorf("a Packet Too Big quoting a 2 KB packet is %d bytes; want the 1280 of the minimum MTU", len(p))
	}
	// The checksum BuildIPv6 wrote verifies: the sum over the
	// pseudo-header and the message, checksum included, is 0xffff.
	s, d := src.As16(), dst.As16()
	if got := fold(pseudoSum(s, d, syscall.IPPROTO_ICMPV6, len(p)-40) + onesSum(p[40:])); got != 0xffff {
		t.Errorf("ICMPv6 checksum does not verify: %#04x", got)
	}
}

// TestFloodAndCapture floods 200 packets from the client of a lab to an
// address of its router (paced at 2000 a second) and captures them on the
// router's end of the link.
func TestFloodAndCapture(t *testing.T) {
	lab := New(t)
	capt, err := lab.Router.Capture(RouterClientLink, 128)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	src, dst := netip.MustParseAddr(ClientAddr), netip.MustParseAddr(RouterAddr6)
	const n = 200
	st, err := lab.Client.Flood(context.Background(), n, 2000, 5*time.Second, func(i int) []byte {
		return BuildIPv6(src, dst, syscall.IPPROTO_TCP, TCPHeader(uint16(10000+i), 9, uint32(i), 0, FlagSYN, 1000, nil))
	})
	if err != nil || st.Sent != n || st.Failed != 0 {
		t.Fatalf("Flood: %+v, %v", st, err)
	}
	if st.Elapsed < 80*time.Millisecond || st.Rate() > 2500 {
		t.Errorf("Flood of %d at 2000/s took %v (%.0f/s): not paced", n, st.Elapsed, st.Rate())
	}
	got := 0
	for got < n {
		_, err := capt.Next(2*time.Second, func(p []byte) bool {
			return len(p) >= 60 && p[6] == syscall.IPPROTO_TCP && be.BigEndian.Uint16(p[42:]) == 9 && p[53] == FlagSYN
		})
		if err != nil {
			break
		}
		got++
	}
	if got != n {
		t.Errorf("captured %d of the %d SYNs on %s", got, n, RouterClientLink)
	}
	if err := lab.Router.SetOffloads(RouterClientLink, Offloads{}); err != nil {
		t.Errorf("SetOffloads: %v", err)
	}
	if err := lab.Router.SetOffloads("nosuchdev", Offloads{}); err == nil || !strings.Contains(err.Error(), "nosuchdev") {
		t.Errorf("SetOffloads on a missing device: %v", err)
	}
}

// TestProgram checks the testing.TB of programs: Fatal ends the step,
// cleanups run last first, errors are collected.
func TestProgram(t *testing.T) {
	p := NewProgram(context.Background(), "step", nil)
	var order []int
	err := p.Run(func(p *Program) {
		p.Cleanup(func() { order = append(order, 1) })
		p.Cleanup(func() { order = append(order, 2) })
		p.Errorf("first %d", 1)
		p.Fatalf("second")
		order = append(order, 99)
	})
	if err == nil || err.Error() != "first 1; second" {
		t.Errorf("Run: %v, want \"first 1; second\"", err)
	}
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanups ran %v, want [2 1] and nothing after Fatal", order)
	}
	if err := NewProgram(context.Background(), "ok", nil).Run(func(*Program) {}); err != nil {
		t.Errorf("a step without errors: %v", err)
	}
	if err := NewProgram(context.Background(), "panic", nil).Run(func(*Program) { panic("boom") }); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("a step that panics: %v", err)
	}
}
