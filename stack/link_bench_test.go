package stack

import (
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// nullDispatcher takes packets from the link endpoint and drops them, so
// that a benchmark measures the endpoint alone.
type nullDispatcher struct{ n int }

func (d *nullDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, _ *stack.PacketBuffer) {
	d.n++
}
func (*nullDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// fileDevice is a tun.Device whose writes go to a file (/dev/null).
type fileDevice struct {
	tun.Device
	f     *os.File
	batch int
}

func (d fileDevice) File() *os.File                         { return d.f }
func (d fileDevice) BatchSize() int                         { return d.batch }
func (d fileDevice) Write(b [][]byte, off int) (int, error) { return d.f.Write(b[0][off:]) }

// BenchmarkDeliver measures the inbound packet path of the link endpoint:
// filter, SYN check, send-window update, packet buffer, hand-off. It must
// not allocate. untracked: no flow's send window is kept (the ACK costs a
// load); tracked: the segment's flow and 10,000 others are (the ACK is
// looked up and recorded).
func BenchmarkDeliver(b *testing.B) {
	for _, tracked := range []bool{false, true} {
		b.Run(map[bool]string{false: "untracked", true: "tracked"}[tracked], func(b *testing.B) {
			e := newLinkEndpoint(nil, 1500)
			e.SetCapture(true)
			if tracked {
				trackFlows(e, 10000)
			}
			var d nullDispatcher
			e.Attach(&d)
			pkt := ipv6Packet(client, faith, 6, append(tcpSegment(40000, 80, header.TCPFlagAck), make([]byte, 1400)...))
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				e.deliver(pkt)
			}
			if d.n == 0 {
				b.Fatal("nothing delivered")
			}
		})
	}
}

// BenchmarkWritePacket measures the outbound path as gVisor's NIC takes it
// (linkQDisc): one 64 KiB GSO segment written with its virtio-net header,
// or one 1500-byte packet, each recorded in its flow's send window (kept
// for 10,001 flows). It must not allocate.
func BenchmarkWritePacket(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for _, tc := range []struct {
		name  string
		batch int
		size  int
	}{{"gso-64KiB", 128, 65000}, {"plain-1500", 1, 1440}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newLinkEndpoint(fileDevice{f: null, batch: tc.batch}, 1500)
			trackFlows(e, 10000)
			hdr := ipv6Packet(faith, client, 6, tcpSegment(80, 40000, header.TCPFlagAck))
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				ReserveHeaderBytes: len(hdr),
				Payload:            buffer.MakeWithData(make([]byte, tc.size)),
			})
			defer pkt.DecRef()
			// As gVisor builds one: TCP in the transport header.
			copy(pkt.TransportHeader().Push(header.TCPMinimumSize), hdr[header.IPv6MinimumSize:])
			copy(pkt.NetworkHeader().Push(header.IPv6MinimumSize), hdr)
			pkt.TransportProtocolNumber = header.TCPProtocolNumber
			pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv6, NeedsCsum: true, CsumOffset: 16, MSS: 1440, L3HdrLen: 40}
			q := linkQDisc{e}
			b.SetBytes(int64(len(hdr) + tc.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := q.WritePacket(pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChallenge measures one challenge under a SYN flood: the rate
// limit, the cookie, the SYN-ACK and its write (to /dev/null), plain or
// behind a virtio-net header. It must not allocate.
func BenchmarkChallenge(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for _, tc := range []struct {
		name  string
		batch int
	}{{"plain", 1}, {"virtio", 128}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newLinkEndpoint(fileDevice{f: null, batch: tc.batch}, 1500)
			e.chal.bucket.rate, e.chal.bucket.burst = 1e12, 1e12
			syn := ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagSyn))
			b.ReportAllocs()
			for b.Loop() {
				e.challenge(syn, time.Now())
			}
			if e.chal.sent.Load() == 0 {
				b.Fatal("no challenge sent")
			}
		})
	}
}

// BenchmarkDeliverRST measures the inbound path of a RST without ACK that
// answers no challenge: two cookies are computed before it goes to gVisor.
func BenchmarkDeliverRST(b *testing.B) {
	e := newLinkEndpoint(nil, 1500)
	e.SetCapture(true)
	e.noFlow = func(stack.TransportEndpointID) bool { return true }
	var d nullDispatcher
	e.Attach(&d)
	pkt := ipv6Packet(client, faith, 6, tcpSegment(40000, 80, header.TCPFlagRst))
	b.ReportAllocs()
	for b.Loop() {
		e.deliver(pkt)
	}
	if d.n == 0 {
		b.Fatal("nothing delivered")
	}
}
