package stack

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := virtioNetHdr{flags: virtioNetHdrNeedsCsum, gsoType: virtioNetHdrGSOTCPv6, hdrLen: 60, gsoSize: 1440, csumStart: 40, csumOffset: 16}
	b := make([]byte, virtioNetHdrLen+3)
	h.encode(b)
	// linux/virtio_net.h: u8 flags, u8 gso_type, then little-endian
	// hdr_len, gso_size, csum_start, csum_offset.
	want := []byte{1, 4, 60, 0, 0xa0, 0x05, 40, 0, 16, 0}
	if !bytes.Equal(b[:virtioNetHdrLen], want) {
		t.Fatalf("encoded % x; want % x", b[:virtioNetHdrLen], want)
	}
	var got virtioNetHdr
	if !got.decode(b) { // from the front of a longer buffer
		t.Fatal("decode failed")
	}
	if got != h {
		t.Fatalf("decoded %+v; want %+v", got, h)
	}
}

func TestVirtioNetHdrShortBuffer(t *testing.T) {
	var h virtioNetHdr
	for n := 0; n < virtioNetHdrLen; n++ {
		if h.decode(make([]byte, n)) {
			t.Errorf("decode of %d bytes succeeded", n)
		}
	}
}

// gsoPacket returns an outbound packet as gVisor hands it to the link
// endpoint: IPv6 and TCP headers, size bytes of payload, GSO options g.
func gsoPacket(size int, g stack.GSO) *stack.PacketBuffer {
	hdr := ipv6Packet(faith, client, 6, tcpSegment(80, 40000, header.TCPFlagAck))
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: len(hdr),
		Payload:            buffer.MakeWithData(make([]byte, size)),
	})
	copy(pkt.NetworkHeader().Push(len(hdr)), hdr)
	pkt.GSOOptions = g
	return pkt
}

func TestVirtioHdrForWritePath(t *testing.T) {
	gso := stack.GSO{Type: stack.GSOTCPv6, NeedsCsum: true, CsumOffset: 16, MSS: 1440, L3HdrLen: 40}
	tests := []struct {
		name string
		size int
		g    stack.GSO
		want virtioNetHdr
	}{
		{"gso segment", 65000, gso, virtioNetHdr{flags: virtioNetHdrNeedsCsum, gsoType: virtioNetHdrGSOTCPv6, hdrLen: 60, gsoSize: 1440, csumStart: 40, csumOffset: 16}},
		{"gso segment of one mss", 1440, gso, virtioNetHdr{flags: virtioNetHdrNeedsCsum, hdrLen: 60, csumStart: 40, csumOffset: 16}},
		{"plain packet", 1000, stack.GSO{}, virtioNetHdr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := gsoPacket(tt.size, tt.g)
			defer pkt.DecRef()
			if got := virtioHdrFor(pkt); got != tt.want {
				t.Errorf("virtioHdrFor = %+v; want %+v", got, tt.want)
			}

			// What WritePackets writes to the device: the header, then
			// the packet.
			f, err := os.Create(filepath.Join(t.TempDir(), "tun"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			e := newLinkEndpoint(fileDevice{f: f, batch: 128}, 1500)
			var list stack.PacketBufferList
			list.PushBack(pkt)
			if n, err := e.WritePackets(list); n != 1 || err != nil {
				t.Fatalf("WritePackets = %d, %v", n, err)
			}
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			var got virtioNetHdr
			if !got.decode(b) || got != tt.want {
				t.Errorf("written header %+v; want %+v", got, tt.want)
			}
			if len(b) != virtioNetHdrLen+60+tt.size {
				t.Errorf("wrote %d bytes; want %d", len(b), virtioNetHdrLen+60+tt.size)
			}
		})
	}
}
