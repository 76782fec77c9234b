package stack

import (
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// synID returns the 4-tuple of a SYN from client port i (over 16 bits: the
// client address varies too).
func synID(i int) stack.TransportEndpointID {
	c := [16]byte{0x20, 0x01, 0x0d, 0xb8, 1}
	c[12], c[13] = byte(i>>24), byte(i>>16)
	return stack.TransportEndpointID{LocalPort: 80, LocalAddress: tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x46}), RemotePort: uint16(i), RemoteAddress: tcpip.AddrFrom16(c)}
}

// TestFlowTableCap: beyond maxHeld entries without a connection, a new SYN
// is still delivered (not taken, and fresh: it goes to the forwarder) but
// not held, and counted; a flow decided without its SYN then has none to
// quote.
func TestFlowTableCap(t *testing.T) {
	ft := &flowTable{maxHeld: 4, inject: func([]byte) {}}
	syn := ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn))
	for i := range 6 {
		if taken, fresh := ft.syn(synID(i), syn); taken || !fresh {
			t.Fatalf("SYN %d: taken %v, fresh %v; want delivered to the forwarder", i, taken, fresh)
		}
	}
	if n, not := ft.held(), ft.notHeld.Load(); n != 4 || not != 2 {
		t.Fatalf("held %d, not held %d; want 4, 2", n, not)
	}
	// Not held: decided with no SYN to quote (a refusal is a RST).
	e := ft.decide(synID(5))
	if got := ft.decided(synID(5), e, nil); got != nil {
		t.Errorf("a SYN beyond the cap was held")
	}
	// A held one: its SYN is there to quote, and its room is free after.
	e = ft.decide(synID(0))
	if got := ft.decided(synID(0), e, nil); got == nil {
		t.Errorf("a held SYN was lost")
	}
	if n := ft.held(); n != 3 {
		t.Errorf("held %d after a refusal; want 3", n)
	}
	if ft.syn(synID(6), syn); ft.held() != 4 {
		t.Errorf("held %d; want a new SYN held again, 4", ft.held())
	}
	// A SYN for a 4-tuple being decided is not fresh: the forwarder
	// swallows it.
	ft.decide(synID(1))
	if _, fresh := ft.syn(synID(1), syn); fresh {
		t.Error("a retransmitted SYN of a flow being decided is fresh")
	}
	// Undecided SYNs go after synHoldAge; the one being decided stays.
	ft.mu.Lock()
	for _, e := range ft.m {
		e.at = e.at.Add(-synHoldAge - time.Second)
	}
	ft.mu.Unlock()
	ft.sweep(false)
	if n := ft.held(); n != 1 {
		t.Errorf("held %d after the sweep; want the one being decided", n)
	}
}

// TestFlowTableShrinks fills the table with 100,000 SYNs, as a flood
// does, and checks that once the sweep has forgotten them the map is
// remade and the heap returns.
func TestFlowTableShrinks(t *testing.T) {
	const n = 100_000
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	ft := &flowTable{maxHeld: n + 1, inject: func([]byte) {}}
	syn := ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn))
	before := heap()
	for i := range n {
		ft.syn(synID(i), syn)
	}
	flood := heap()
	ft.mu.Lock()
	for _, e := range ft.m {
		e.at = e.at.Add(-synHoldAge - time.Second)
	}
	ft.mu.Unlock()
	ft.syn(synID(n), syn) // one young SYN stays
	ft.sweep(false)
	after := heap()
	t.Logf("heap: %d KiB before, %d KiB with %d SYNs held, %d KiB after the sweep", before>>10, flood>>10, n, after>>10)
	if flood < before+n*100 {
		t.Fatalf("the flood grew the heap by %d bytes only", flood-before)
	}
	ft.mu.Lock()
	l, peak := len(ft.m), ft.peak
	ft.mu.Unlock()
	if l != 1 || peak != 1 {
		t.Errorf("after the sweep: %d entries, peak %d; want 1, 1 (the map remade)", l, peak)
	}
	if after > before+(flood-before)/10 {
		t.Errorf("heap %d bytes over its size before the flood; want most of the flood's %d returned", after-before, flood-before)
	}
	runtime.KeepAlive(ft)
}
