package stack

import (
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// writeOffset is the headroom left in front of each outbound packet for the
// TUN's virtio-net header.
const writeOffset = 16

// LinkEndpoint connects a TUN device to a gVisor NIC: it reads packet
// batches from the device, filters them as faith(4) does, and delivers them
// to gVisor; it writes gVisor's outbound packets to the device. It implements
// gVisor's stack.LinkEndpoint.
type LinkEndpoint struct {
	dev     tun.Device
	mtu     atomic.Uint32
	capture atomic.Bool // net.inet6.ip6.keepfaith
	stats   linkStats

	// synHook, if set, sees every inbound SYN (without ACK) that passed the
	// capture filter, before gVisor: the IPv6 header and its payload, valid
	// only during the call. If it returns true it has taken the packet.
	synHook func(id stack.TransportEndpointID, pkt []byte) bool

	// wins is each flow's send window, for checking Packets Too Big.
	wins sndWindows

	dispatcher atomic.Pointer[stack.NetworkDispatcher]
	done       chan struct{}
	closeOnce  sync.Once

	// gso is set when the TUN carries a virtio-net header (wireguard's TUN
	// enables it when the kernel supports offloads): gVisor then hands over
	// TCP segments of up to 64 KiB, written with a virtio header for the
	// kernel to segment, instead of one write per MTU-sized packet.
	gso bool

	writeMu  sync.Mutex
	writeBuf [][]byte // one buffer with room for a 64 KiB packet and headroom

	// noFlow, if set, reports whether the Stack has no flow for id: a RST
	// answering a challenge (challenge.go) is recognised only then.
	noFlow func(id stack.TransportEndpointID) bool
	// chal is the SYN challenge's state (challenge.go), last: the fields
	// above are the ones every packet reads.
	chal synChallenge
}

// gsoMaxSize is the largest packet, IPv6 payload, that the endpoint takes
// from the TUN or gVisor with the virtio-net header: 64 KiB.
const gsoMaxSize = 1<<16 - 1

var _ stack.LinkEndpoint = (*LinkEndpoint)(nil)

// newLinkEndpoint returns a LinkEndpoint for dev with the given MTU.
func newLinkEndpoint(dev tun.Device, mtu int) *LinkEndpoint {
	e := &LinkEndpoint{
		dev:      dev,
		done:     make(chan struct{}),
		writeBuf: [][]byte{make([]byte, writeOffset+gsoMaxSize+1024)},
		gso:      dev != nil && dev.BatchSize() > 1,
	}
	e.mtu.Store(uint32(mtu))
	e.initChallenge()
	return e
}

// SetCapture turns capturing on or off (net.inet6.ip6.keepfaith). While off,
// every inbound packet is discarded and counted.
func (e *LinkEndpoint) SetCapture(on bool) { e.capture.Store(on) }

// Capture reports whether packets are being captured.
func (e *LinkEndpoint) Capture() bool { return e.capture.Load() }

// inject hands an IPv6 packet to gVisor.
func (e *LinkEndpoint) inject(b []byte) {
	d := e.dispatcher.Load()
	if d == nil {
		return
	}
	var payload buffer.Buffer
	if n := tcpHeadersLen(b); n > 0 && n < len(b) {
		// Headers and data in chunks of their own: gVisor's IPv6 layer
		// parses headers from a clone of the packet, and pulling a header
		// out of a shared chunk copies the whole chunk (64 KiB for a
		// super-packet); a small header chunk keeps that copy small.
		payload = buffer.MakeWithView(buffer.NewViewWithData(b[:n]))
		payload.Append(buffer.NewViewWithData(b[n:]))
	} else {
		payload = buffer.MakeWithData(b)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	(*d).DeliverNetworkPacket(header.IPv6ProtocolNumber, pkt)
	pkt.DecRef()
}

// tcpHeadersLen returns the length of the IPv6 and TCP headers of b, or 0 if
// b is not an IPv6 TCP segment with a sane header.
func tcpHeadersLen(b []byte) int {
	const min = header.IPv6MinimumSize + header.TCPMinimumSize
	if len(b) < min || b[6] != uint8(header.TCPProtocolNumber) {
		return 0
	}
	n := header.IPv6MinimumSize + int(header.TCP(b[header.IPv6MinimumSize:]).DataOffset())
	if n < min || n > len(b) {
		return 0
	}
	return n
}

// WritePackets writes gVisor's outbound packets to the device. It blocks
// rather than drops when the device is busy.
func (e *LinkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.write(pkt); err != nil {
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			break
		}
		n++
	}
	e.stats.PacketsOut.Add(uint64(n))
	return n, nil
}

// writePacket writes one packet, as the NIC's queueing discipline
// (linkQDisc): gVisor's default one wraps every packet in a list of its
// own, an allocation per packet.
func (e *LinkEndpoint) writePacket(pkt *stack.PacketBuffer) tcpip.Error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	if err := e.write(pkt); err != nil {
		return &tcpip.ErrClosedForSend{}
	}
	e.stats.PacketsOut.Add(1)
	return nil
}

// linkQDisc is the NIC's queueing discipline: no queue, each packet written
// to the TUN at once by the goroutine that sends it (a full TUN queue
// blocks the writer rather than drop).
type linkQDisc struct{ e *LinkEndpoint }

var _ stack.QueueingDiscipline = linkQDisc{}

// WritePacket implements stack.QueueingDiscipline.
func (q linkQDisc) WritePacket(pkt *stack.PacketBuffer) tcpip.Error { return q.e.writePacket(pkt) }

// Close implements stack.QueueingDiscipline; there is nothing to release.
func (linkQDisc) Close() {}

// write writes one packet; e.writeMu is held.
func (e *LinkEndpoint) write(pkt *stack.PacketBuffer) error {
	// Each packet is recorded in its flow's send window (window.go) from
	// the bytes just copied, before the write: a Packet Too Big for it may
	// come back at once.
	if !e.gso {
		buf := appendPacket(e.writeBuf[0][:writeOffset], pkt)
		e.trackSent(buf[writeOffset:])
		e.writeBuf[0] = buf
		_, err := e.dev.Write(e.writeBuf, writeOffset)
		e.writeBuf[0] = buf[:cap(buf)]
		return err
	}
	// With the virtio-net header, write straight to the TUN: wireguard's
	// Write would build a header of its own and cannot carry gVisor's GSO.
	buf := e.writeBuf[0][:virtioNetHdrLen]
	h := virtioHdrFor(pkt)
	h.encode(buf)
	buf = appendPacket(buf, pkt)
	e.trackSent(buf[virtioNetHdrLen:])
	_, err := e.dev.File().Write(buf)
	e.writeBuf[0] = buf[:cap(buf)]
	return err
}

// writeRaw writes pkt, a whole IPv6 packet the link endpoint made itself
// (a challenge SYN-ACK), through the same path as gVisor's: behind a zero
// virtio-net header (no offload: the checksum is complete) when the device
// has one. It is not recorded in any send window.
func (e *LinkEndpoint) writeRaw(pkt []byte) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	var err error
	if !e.gso {
		buf := append(e.writeBuf[0][:writeOffset], pkt...)
		e.writeBuf[0] = buf
		_, err = e.dev.Write(e.writeBuf, writeOffset)
		e.writeBuf[0] = buf[:cap(buf)]
	} else {
		buf := e.writeBuf[0][:virtioNetHdrLen]
		clear(buf)
		buf = append(buf, pkt...)
		_, err = e.dev.File().Write(buf)
		e.writeBuf[0] = buf[:cap(buf)]
	}
	if err == nil {
		e.stats.PacketsOut.Add(1)
	}
	return err
}

// appendPacket appends the bytes of pkt (headers and payload) to buf,
// without the allocation of pkt.AsSlices.
func appendPacket(buf []byte, pkt *stack.PacketBuffer) []byte {
	views, skip := pkt.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		buf = append(buf, b[skip:]...)
		skip = 0
	}
	return buf
}

// SupportedGSO implements stack.GSOEndpoint.
func (e *LinkEndpoint) SupportedGSO() stack.SupportedGSO {
	if e.gso {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *LinkEndpoint) GSOMaxSize() uint32 {
	if e.gso {
		return gsoMaxSize
	}
	return 0
}

// MTU implements stack.LinkEndpoint.
func (e *LinkEndpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.
func (e *LinkEndpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint: a TUN has no link header.
func (*LinkEndpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: a TUN has no link address.
func (*LinkEndpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint; it does nothing.
func (*LinkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. gVisor computes every checksum
// itself. With the virtio-net header it checks none: the read path delivers
// only packets whose checksum the kernel vouched for, that it completed, or
// (TCP) that it checked (gVisor's flag is per NIC, not per packet). ICMPv6
// checksums gVisor checks in any case.
func (e *LinkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	if e.gso {
		return stack.CapabilityRXChecksumOffload
	}
	return stack.CapabilityNone
}

// Attach implements stack.LinkEndpoint.
func (e *LinkEndpoint) Attach(d stack.NetworkDispatcher) {
	if d == nil {
		e.dispatcher.Store(nil)
		return
	}
	e.dispatcher.Store(&d)
}

// IsAttached implements stack.LinkEndpoint.
func (e *LinkEndpoint) IsAttached() bool { return e.dispatcher.Load() != nil }

// Wait implements stack.LinkEndpoint. The read loop belongs to the caller of
// Stack.Run, so there is nothing to wait for.
func (*LinkEndpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*LinkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint: there is no link header.
func (*LinkEndpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint: there is no link header.
func (*LinkEndpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint. It marks the endpoint closed so that
// the read loop treats the device's closing as a normal end.
func (e *LinkEndpoint) Close() {
	e.closeOnce.Do(func() { close(e.done) })
}

// SetOnCloseAction implements stack.LinkEndpoint; it is not used.
func (*LinkEndpoint) SetOnCloseAction(func()) {}
