package stack

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// recordDispatcher keeps a copy of each packet delivered to it.
type recordDispatcher struct{ pkts [][]byte }

func (d *recordDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.pkts = append(d.pkts, pkt.ToView().ToSlice())
}
func (*recordDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// virtioPacket puts a virtio-net header in front of pkt.
func virtioPacket(flags, gsoType uint8, gsoSize, csumStart, csumOffset uint16, pkt []byte) []byte {
	b := make([]byte, virtioNetHdrLen, virtioNetHdrLen+len(pkt))
	b[0], b[1] = flags, gsoType
	binary.LittleEndian.PutUint16(b[4:], gsoSize)
	binary.LittleEndian.PutUint16(b[6:], csumStart)
	binary.LittleEndian.PutUint16(b[8:], csumOffset)
	return append(b, pkt...)
}

// withTCPChecksum sets the TCP checksum of the IPv6 packet b: the full one,
// or (partial) only the pseudo-header sum, as the kernel leaves it for
// NEEDS_CSUM.
func withTCPChecksum(b []byte, partial bool) []byte {
	ip := header.IPv6(b)
	l4 := b[header.IPv6MinimumSize:]
	tcp := header.TCP(l4)
	tcp.SetChecksum(0)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(l4)))
	if partial {
		tcp.SetChecksum(xsum)
	} else {
		tcp.SetChecksum(^checksum.Checksum(l4, xsum))
	}
	return b
}

func tcpChecksumOK(b []byte) bool {
	ip := header.IPv6(b)
	l4 := b[header.IPv6MinimumSize:]
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(l4)))
	return checksum.Checksum(l4, xsum) == 0xffff
}

func newVirtioEndpoint(t testing.TB) (*LinkEndpoint, *recordDispatcher) {
	e := newLinkEndpoint(fileDevice{batch: 128}, 1500)
	if !e.gso {
		t.Fatal("endpoint without GSO")
	}
	e.SetCapture(true)
	d := &recordDispatcher{}
	e.Attach(d)
	return e, d
}

func TestDeliverVirtioSuperPacketWhole(t *testing.T) {
	e, d := newVirtioEndpoint(t)
	const mss, n = 1440, 45 // 64,800 bytes of payload
	pkt := withTCPChecksum(ipv6Packet(client, faith, 6, append(tcpSegment(40000, 80, header.TCPFlagAck), make([]byte, mss*n)...)), true)
	binary.BigEndian.PutUint16(pkt[4:], header.TCPMinimumSize+mss) // the first segment's, as the kernel may leave it
	e.deliverVirtio(virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSOTCPv6, mss, 40, 16, pkt))
	if len(d.pkts) != 1 {
		t.Fatalf("delivered %d packets; want the super-packet whole", len(d.pkts))
	}
	got := d.pkts[0]
	if len(got) != len(pkt) || int(header.IPv6(got).PayloadLength()) != len(pkt)-header.IPv6MinimumSize {
		t.Fatalf("delivered %d bytes, payload length %d; want %d, %d", len(got), header.IPv6(got).PayloadLength(), len(pkt), len(pkt)-40)
	}
	if got := e.stats.PacketsIn.Load(); got != n {
		t.Errorf("packets in = %d; want %d (one per segment)", got, n)
	}
	if e.Capabilities()&stack.CapabilityRXChecksumOffload == 0 {
		t.Error("a partial checksum is delivered but gVisor is not told to skip checking it")
	}

	// With keepfaith=0 each segment counts as a discarded packet.
	e.SetCapture(false)
	e.deliverVirtio(virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSOTCPv6, mss, 40, 16, pkt))
	if got := e.stats.Discarded[DiscardKeepFaith].Load(); got != n {
		t.Errorf("discarded[keepfaith] = %d; want %d", got, n)
	}
}

func TestDeliverVirtioChecksums(t *testing.T) {
	seg := append(tcpSegment(40000, 80, header.TCPFlagAck|header.TCPFlagPsh), []byte("hello")...)
	good := func() []byte { return withTCPChecksum(ipv6Packet(client, faith, 6, seg), false) }
	partial := func() []byte { return withTCPChecksum(ipv6Packet(client, faith, 6, seg), true) }
	bad := func() []byte { b := good(); b[len(b)-1] ^= 1; return b }
	tests := []struct {
		name      string
		flags     uint8
		pkt       []byte
		delivered bool
	}{
		{"good checksum", 0, good(), true},
		{"bad checksum", 0, bad(), false},
		{"bad checksum, kernel says data valid", virtioNetHdrDataValid, bad(), true},
		{"partial checksum completed", virtioNetHdrNeedsCsum, partial(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, d := newVirtioEndpoint(t)
			e.deliverVirtio(virtioPacket(tt.flags, virtioNetHdrGSONone, 0, 40, 16, tt.pkt))
			if got := len(d.pkts) == 1; got != tt.delivered {
				t.Fatalf("delivered = %v; want %v", got, tt.delivered)
			}
			if !tt.delivered {
				if got := e.stats.Discarded[DiscardMalformed].Load(); got != 1 {
					t.Errorf("discarded[malformed] = %d; want 1", got)
				}
				return
			}
			if tt.flags&virtioNetHdrDataValid == 0 && !tcpChecksumOK(d.pkts[0]) {
				t.Errorf("delivered packet's checksum is wrong")
			}
		})
	}
}

func TestDeliverVirtioSynHookSeesCompletedChecksum(t *testing.T) {
	e, _ := newVirtioEndpoint(t)
	var held []byte
	e.synHook = func(_ stack.TransportEndpointID, b []byte) bool { held = append([]byte(nil), b...); return true }
	syn := withTCPChecksum(ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn)), true)
	e.deliverVirtio(virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSONone, 0, 40, 16, syn))
	if held == nil {
		t.Fatal("SYN hook not called")
	}
	if !tcpChecksumOK(held) {
		t.Error("SYN hook got a partial checksum: a held SYN delivered later would fail gVisor's check")
	}
}

func TestDeliverVirtioMalformed(t *testing.T) {
	tcp := ipv6Packet(client, faith, 6, append(tcpSegment(40000, 80, header.TCPFlagAck), make([]byte, 3000)...))
	udp := ipv6Packet(client, faith, 17, make([]byte, 3000))
	tests := []struct {
		name   string
		b      []byte
		reason DiscardReason
	}{
		{"short header", []byte{1, 2, 3}, DiscardMalformed},
		{"checksum offset beyond packet", virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSONone, 0, 40, 5000, tcp), DiscardMalformed},
		{"gso without tcp header", virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSOTCPv6, 1440, 40, 16, tcp[:50]), DiscardMalformed},
		{"gso tcp with extension header offset", virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSOTCPv6, 1440, 48, 16, tcp), DiscardMalformed},
		{"gso zero size", virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSOTCPv6, 0, 40, 16, tcp), DiscardMalformed},
		{"udp gso", virtioPacket(virtioNetHdrNeedsCsum, 5, 1440, 40, 6, udp), DiscardNotTCP},
		{"ipv4 gso", virtioPacket(virtioNetHdrNeedsCsum, 1, 1440, 20, 16, append([]byte{0x45}, make([]byte, 3000)...)), DiscardNotIPv6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, d := newVirtioEndpoint(t)
			e.deliverVirtio(tt.b)
			if len(d.pkts) != 0 {
				t.Fatal("delivered")
			}
			if got := e.stats.Discarded[tt.reason].Load(); got == 0 {
				t.Errorf("discarded[%s] = 0", tt.reason)
			}
		})
	}
}

// BenchmarkDeliverVirtio measures the inbound path for one 64 KiB TSO
// super-packet read with its virtio-net header. It must not allocate.
func BenchmarkDeliverVirtio(b *testing.B) {
	e := newLinkEndpoint(fileDevice{batch: 128}, 1500)
	e.SetCapture(true)
	var d nullDispatcher
	e.Attach(&d)
	pkt := withTCPChecksum(ipv6Packet(client, faith, 6, append(tcpSegment(40000, 80, header.TCPFlagAck), make([]byte, 1440*45)...)), true)
	v := virtioPacket(virtioNetHdrNeedsCsum, virtioNetHdrGSOTCPv6, 1440, 40, 16, pkt)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		e.deliverVirtio(v)
	}
	if d.n == 0 {
		b.Fatal("nothing delivered")
	}
}
