package stack

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// router is the address a Packet Too Big comes from.
const router = "2001:db8:1::1"

// testKey is the key of the flow client:40000 <-> faith:80.
func testKey() flowKey {
	c, f := netip.MustParseAddr(client).As16(), netip.MustParseAddr(faith).As16()
	return makeKey(c[:], f[:], 40000, 80)
}

// trackFlows makes e keep the send window of client:40000 <-> faith:80,
// [1, 1<<20], and of n other flows.
func trackFlows(e *LinkEndpoint, n int) {
	k := testKey()
	e.wins.sent(&k, 1, 1<<20)
	c, f := netip.MustParseAddr(client).As16(), netip.MustParseAddr(faith).As16()
	for i := range n {
		c[14], c[15] = byte(i>>8), byte(i)
		k := makeKey(c[:], f[:], uint16(1024+i), 443)
		e.wins.sent(&k, uint32(i), 1000)
	}
}

// outSegment returns a TCP segment from faith:80 to client:40000 as gVisor
// hands it to WritePackets: IPv6 and TCP headers apart, n bytes of payload.
func outSegment(seq uint32, flags header.TCPFlags, n int) *stack.PacketBuffer {
	hdr := ipv6Packet(faith, client, 6, make([]byte, header.TCPMinimumSize))
	header.TCP(hdr[header.IPv6MinimumSize:]).Encode(&header.TCPFields{SrcPort: 80, DstPort: 40000, SeqNum: seq, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	binary.BigEndian.PutUint16(hdr[4:], uint16(header.TCPMinimumSize+n))
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: len(hdr),
		Payload:            buffer.MakeWithData(make([]byte, n)),
	})
	copy(pkt.TransportHeader().Push(header.TCPMinimumSize), hdr[header.IPv6MinimumSize:])
	copy(pkt.NetworkHeader().Push(header.IPv6MinimumSize), hdr)
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	return pkt
}

// packetTooBig returns an ICMPv6 Packet Too Big from router to faith with a
// correct checksum, quoting a segment from faith:80 to client:port with
// sequence number seq.
func packetTooBig(mtu, seq uint32, port uint16) []byte {
	quoted := ipv6Packet(faith, client, 6, make([]byte, header.TCPMinimumSize+100))
	header.TCP(quoted[header.IPv6MinimumSize:]).Encode(&header.TCPFields{SrcPort: 80, DstPort: port, SeqNum: seq, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck})
	icmp := make(header.ICMPv6, header.ICMPv6PacketTooBigMinimumSize, header.ICMPv6PacketTooBigMinimumSize+len(quoted))
	icmp.SetType(header.ICMPv6PacketTooBig)
	icmp.SetMTU(mtu)
	icmp = append(icmp, quoted...)
	pkt := ipv6Packet(router, faith, 58, icmp)
	icmp = header.ICMPv6(pkt[header.IPv6MinimumSize:])
	icmp.SetChecksum(icmpv6Checksum(pkt))
	return pkt
}

// icmpv6Checksum returns the checksum the ICMPv6 message of pkt should carry.
func icmpv6Checksum(pkt []byte) uint16 {
	ip, icmp := header.IPv6(pkt), header.ICMPv6(pkt[header.IPv6MinimumSize:])
	return header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header:      icmp[:header.ICMPv6MinimumSize],
		Src:         ip.SourceAddress(),
		Dst:         ip.DestinationAddress(),
		PayloadCsum: checksum.Checksum(icmp[header.ICMPv6MinimumSize:], 0),
		PayloadLen:  len(icmp) - header.ICMPv6MinimumSize,
	})
}

// TestPacketTooBigWindow sends segments out through WritePackets and ACKs in
// through the filter, across the sequence-number wrap, and checks which
// Packets Too Big reach gVisor: only those quoting a sequence number within
// [SND.UNA, SND.NXT], with an MTU below 1280 raised to 1280 and the checksum
// still right.
func TestPacketTooBigWindow(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	e := newLinkEndpoint(fileDevice{f: null, batch: 1}, 1500)
	e.SetCapture(true)
	var d recordDispatcher
	e.Attach(&d)
	write := func(seq uint32, flags header.TCPFlags, n int) {
		t.Helper()
		pkt := outSegment(seq, flags, n)
		defer pkt.DecRef()
		var l stack.PacketBufferList
		l.PushBack(pkt)
		if _, err := e.WritePackets(l); err != nil {
			t.Fatal(err)
		}
	}
	ack := func(a uint32) {
		seg := make([]byte, header.TCPMinimumSize)
		header.TCP(seg).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: 1, AckNum: a, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 65535})
		e.deliver(withTCPChecksum(ipv6Packet(client, faith, 6, seg), false))
		d.pkts = nil
	}
	// delivered sends a Packet Too Big and reports whether it reached
	// gVisor, checking that what reached it has a right checksum.
	delivered := func(p []byte) ([]byte, bool) {
		t.Helper()
		d.pkts = nil
		e.deliver(p)
		if len(d.pkts) == 0 {
			return nil, false
		}
		got := d.pkts[0]
		if sum := header.ICMPv6(got[header.IPv6MinimumSize:]).Checksum(); sum != icmpv6Checksum(got) {
			t.Errorf("delivered checksum %#04x; want %#04x", sum, icmpv6Checksum(got))
		}
		return got, true
	}

	var iss uint32 = 0xffffff00 // the window wraps past 0
	write(iss, header.TCPFlagSyn|header.TCPFlagAck, 0)
	if _, ok := delivered(packetTooBig(1280, iss, 40000)); ok {
		t.Error("a Packet Too Big quoting the SYN-ACK reached gVisor (no flow is tracked during the handshake)")
	}
	write(iss+1, header.TCPFlagAck, 1000)                   // [iss+1, iss+1001)
	write(iss+1001, header.TCPFlagAck|header.TCPFlagFin, 0) // the FIN counts one: SND.NXT = iss+1002
	ack(iss + 501)                                          // SND.UNA = iss+501
	ack(iss + 5000)                                         // acknowledges nothing sent: ignored
	ack(iss + 100)                                          // old: ignored

	for _, tc := range []struct {
		name string
		seq  uint32
		port uint16
		want bool
	}{
		{"acknowledged", iss + 1, 40000, false},
		{"SND.UNA-1", iss + 500, 40000, false},
		{"SND.UNA", iss + 501, 40000, true},
		{"past the wrap", iss + 0x200, 40000, true},
		{"SND.NXT", iss + 1002, 40000, true},
		{"SND.NXT+1", iss + 1003, 40000, false},
		{"far away", 0x12345678, 40000, false},
		{"another flow", iss + 600, 40001, false},
	} {
		if _, got := delivered(packetTooBig(1400, tc.seq, tc.port)); got != tc.want {
			t.Errorf("%s: delivered = %v; want %v", tc.name, got, tc.want)
		}
	}
	if got := e.stats.Discarded[DiscardICMPv6Invalid].Load(); got != 6 {
		t.Errorf("discarded[icmpv6_invalid] = %d; want 6", got)
	}

	for _, mtu := range []uint32{68, 1, 0, 1279} {
		got, ok := delivered(packetTooBig(mtu, iss+600, 40000))
		if !ok {
			t.Fatalf("MTU %d in window: not delivered", mtu)
		}
		if m := header.ICMPv6(got[header.IPv6MinimumSize:]).MTU(); m != 1280 {
			t.Errorf("MTU %d delivered as %d; want 1280", mtu, m)
		}
	}
	if got, _ := delivered(packetTooBig(1400, iss+600, 40000)); got == nil || header.ICMPv6(got[header.IPv6MinimumSize:]).MTU() != 1400 {
		t.Error("MTU 1400 not delivered unchanged")
	}
	if got := e.stats.PTBRaised.Load(); got != 4 {
		t.Errorf("PTBs raised = %d; want 4", got)
	}
	// A wrong checksum stays wrong: gVisor drops it as it would have.
	bad := packetTooBig(68, iss+600, 40000)
	bad[len(bad)-1] ^= 0xff
	e.deliver(bad)
	if got := d.pkts[len(d.pkts)-1]; header.ICMPv6(got[header.IPv6MinimumSize:]).Checksum() == icmpv6Checksum(got) {
		t.Error("a Packet Too Big with a wrong checksum was delivered with a right one")
	}

	// A new connection on the 4-tuple: the old window is forgotten.
	write(7, header.TCPFlagSyn|header.TCPFlagAck, 0)
	if _, ok := delivered(packetTooBig(1400, iss+600, 40000)); ok {
		t.Error("the old connection's window survived a new SYN-ACK")
	}
}

// TestSndWindowsSweep: the sweep forgets the flows without an endpoint but
// not one made while it runs, and remakes a shard's map once it has shrunk.
func TestSndWindowsSweep(t *testing.T) {
	var w sndWindows
	c, f := netip.MustParseAddr(client).As16(), netip.MustParseAddr(faith).As16()
	key := func(i int) flowKey {
		c[14], c[15] = byte(i>>8), byte(i)
		return makeKey(c[:], f[:], uint16(i), 80)
	}
	const n = 16 * 400 // over shrinkMin in every shard
	for i := range n {
		k := key(i)
		w.sent(&k, 1, 10)
	}
	late := key(n)
	alive := func(id stack.TransportEndpointID) bool {
		if id.RemotePort == 0 {
			// Made while the sweep runs, as by a new connection.
			w.sent(&late, 1, 10)
		}
		return id.RemotePort < 10
	}
	w.sweep(alive)
	if got := w.n.Load(); got != 10+1 {
		t.Errorf("%d flows left; want the 10 alive and the one made during the sweep", got)
	}
	for i := range 10 {
		if k := key(i); w.lookup(&k) == nil {
			t.Errorf("flow %d, alive, was swept", i)
		}
	}
	if w.lookup(&late) == nil {
		t.Error("the flow made during the sweep was swept")
	}
	for i := range w.shards {
		if s := &w.shards[i]; s.peak != len(s.m) {
			t.Errorf("shard %d: peak %d with %d flows; want the map remade", i, s.peak, len(s.m))
		}
	}
	w.sweep(func(stack.TransportEndpointID) bool { return false })
	if got := w.n.Load(); got != 0 {
		t.Errorf("%d flows left after a sweep with no endpoints", got)
	}
}

// TestSetMTUChecksum: the incremental checksum update agrees with a full
// computation for many MTUs and payloads.
func TestSetMTUChecksum(t *testing.T) {
	for i := range uint32(2000) {
		p := packetTooBig(i*7919, i*2654435761, uint16(i))
		setMTU(header.ICMPv6(p[header.IPv6MinimumSize:]), 1280+i%3)
		if got, want := header.ICMPv6(p[header.IPv6MinimumSize:]).Checksum(), icmpv6Checksum(p); got != want {
			t.Fatalf("MTU %d: checksum %#04x; want %#04x", i*7919, got, want)
		}
	}
}

// TestPacketTooBigThroughGVisor opens a flow on a Stack, has it send, and
// forges Packets Too Big at it: one quoting a sequence number outside the
// send window is dropped and counted, and the flow's segments keep their
// size; one with MTU 68 quoting an unacknowledged byte reaches the flow as
// 1280, so that its segments shrink to 1280 bytes and no further.
func TestPacketTooBigThroughGVisor(t *testing.T) {
	accepted := make(chan flow.Conn, 1)
	s, dev := newTestStack(t, func(r flow.Request) {
		c, err := r.Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		accepted <- c
	})
	const isn = 1000
	dev.in <- clientSegment(isn, 0, header.TCPFlagSyn, mssOption...)
	synAck := dev.expect(t, "SYN-ACK", toClient(header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn|header.TCPFlagAck))
	iss := header.TCP(synAck[header.IPv6MinimumSize:]).SequenceNumber()
	dev.in <- clientSegment(isn+1, iss+1, header.TCPFlagAck)
	var c flow.Conn
	select {
	case c = <-accepted:
	case <-time.After(hangGuard):
		t.Fatal("handshake did not complete")
	}
	defer c.Abort()
	go c.Write(make([]byte, 1<<20))

	data := toClient(header.TCPFlagSyn|header.TCPFlagRst, 0)
	segment := func() (seq uint32, size int) {
		t.Helper()
		p := dev.expect(t, "data segment", func(p []byte) bool { return data(p) && len(p) > 100 })
		return header.TCP(p[header.IPv6MinimumSize:]).SequenceNumber(), len(p)
	}
	seq, size := segment()
	if size != 1500 {
		t.Fatalf("first segment %d bytes; want 1500 (MSS 1440)", size)
	}
	// The rest of the initial window, until gVisor waits for an ACK.
	last := seq
	for quiet := false; !quiet; {
		select {
		case p := <-dev.out:
			if data(p) && len(p) > 100 {
				last = max(last, header.TCP(p[header.IPv6MinimumSize:]).SequenceNumber())
			}
		case <-time.After(50 * time.Millisecond): // less than gVisor's RTO (200 ms at least)
			quiet = true
		}
	}
	// Out of the window: dropped, and the flow goes on at 1500 bytes.
	dev.in <- packetTooBig(1280, seq+10_000_000, 40000)
	if !settles(func() bool { return s.Counters().PacketsDiscarded["icmpv6_invalid"] == 1 }) {
		t.Fatalf("discarded = %v; want icmpv6_invalid 1", s.Counters().PacketsDiscarded)
	}
	dev.in <- clientSegment(isn+1, seq+1440, header.TCPFlagAck) // acknowledge the first segment
	next, size := segment()
	for next <= last { // a retransmission
		next, size = segment()
	}
	if size != 1500 {
		t.Fatalf("after a forged Packet Too Big, a new %d-byte segment; want 1500", size)
	}
	// In the window, MTU 68: taken as 1280.
	dev.in <- packetTooBig(68, seq+1440, 40000)
	if !settles(func() bool { return s.Counters().PTBMTURaised == 1 }) {
		t.Fatalf("MTU raised %d times; want 1", s.Counters().PTBMTURaised)
	}
	dev.in <- clientSegment(isn+1, seq+2*1440, header.TCPFlagAck)
	// Segments written before the Packet Too Big may still be queued.
	var sizes []int
	for len(sizes) < 100 {
		_, size := segment()
		sizes = append(sizes, size)
		if size <= 1280 {
			break
		}
	}
	if last := sizes[len(sizes)-1]; last > 1280 || last < 1200 {
		t.Errorf("segments after Packet Too Big 68: %v bytes; want them down to 1280, no smaller than 1200", sizes)
	}
}
