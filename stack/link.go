// Package stack is faithif's gVisor half: the link endpoint between a TUN
// device and a gVisor netstack, the NIC that accepts every destination, the
// TCP forwarder that turns each captured SYN into a Request, and the Conn that
// carries an accepted flow. It knows nothing of IPv4 sockets or rules.
package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DiscardReason says why an inbound packet was not handed to gVisor.
type DiscardReason int

// The reasons a packet is discarded; LinkStats.Discarded is indexed by them.
const (
	DiscardKeepFaith DiscardReason = iota // net.inet6.ip6.keepfaith is 0
	DiscardMalformed                      // too short, bad length, not parseable
	DiscardNotIPv6                        // IPv4 or another version
	DiscardNotTCP                         // UDP, extension headers, anything but TCP and ICMPv6
	DiscardICMPv6                         // an ICMPv6 message other than DU, PTB, TE
	DiscardBadSource                      // unspecified, loopback, multicast or IPv4-mapped source
	numDiscardReasons

	// taken is not a discard: a hook took the packet to deliver it later.
	taken DiscardReason = -1
)

var discardNames = [numDiscardReasons]string{"keepfaith", "malformed", "not_ipv6", "not_tcp", "icmpv6_other", "bad_source"}

// String returns the reason's name as used in status output.
func (r DiscardReason) String() string { return discardNames[r] }

// LinkStats counts packets crossing the link endpoint. All fields are safe
// for concurrent use.
type LinkStats struct {
	PacketsIn  atomic.Uint64
	PacketsOut atomic.Uint64
	Discarded  [numDiscardReasons]atomic.Uint64
	// ICMPv6In counts inbound ICMPv6 messages by type, delivered (errors
	// for FAITH flows) or discarded (everything else).
	ICMPv6In [256]atomic.Uint64
}

var icmpv6Names = map[header.ICMPv6Type]string{
	header.ICMPv6DstUnreachable:  "dst_unreachable",
	header.ICMPv6PacketTooBig:    "packet_too_big",
	header.ICMPv6TimeExceeded:    "time_exceeded",
	header.ICMPv6ParamProblem:    "param_problem",
	header.ICMPv6EchoRequest:     "echo_request",
	header.ICMPv6EchoReply:       "echo_reply",
	header.ICMPv6RouterSolicit:   "router_solicit",
	header.ICMPv6NeighborSolicit: "neighbor_solicit",
	header.ICMPv6NeighborAdvert:  "neighbor_advert",
	header.ICMPv6RedirectMsg:     "redirect",
}

// ICMPv6ByType returns the non-zero inbound ICMPv6 counters by type name.
func (s *LinkStats) ICMPv6ByType() map[string]uint64 {
	m := make(map[string]uint64)
	for t := range s.ICMPv6In {
		if n := s.ICMPv6In[t].Load(); n > 0 {
			name, ok := icmpv6Names[header.ICMPv6Type(t)]
			if !ok {
				name = fmt.Sprintf("type_%d", t)
			}
			m[name] = n
		}
	}
	return m
}

// DiscardedByReason returns the discard counters by reason name.
func (s *LinkStats) DiscardedByReason() map[string]uint64 {
	m := make(map[string]uint64, numDiscardReasons)
	for i := range s.Discarded {
		m[DiscardReason(i).String()] = s.Discarded[i].Load()
	}
	return m
}

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
	stats   LinkStats

	// synHook, if set, sees every inbound SYN (without ACK) before gVisor;
	// if it returns true it has taken the packet.
	synHook func(id stack.TransportEndpointID, pkt []byte) bool

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
}

// virtio-net header (linux/virtio_net.h) values.
const (
	virtioNetHdrLen       = 10
	virtioNetHdrNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	virtioNetHdrDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	virtioNetHdrGSONone   = 0 // VIRTIO_NET_HDR_GSO_NONE
	virtioNetHdrGSOTCPv6  = 4 // VIRTIO_NET_HDR_GSO_TCPV6
	gsoMaxSize            = 1<<16 - 1
)

var _ stack.LinkEndpoint = (*LinkEndpoint)(nil)

// NewLinkEndpoint returns a LinkEndpoint for dev with the given MTU.
func NewLinkEndpoint(dev tun.Device, mtu int) *LinkEndpoint {
	e := &LinkEndpoint{
		dev:      dev,
		done:     make(chan struct{}),
		writeBuf: [][]byte{make([]byte, writeOffset+gsoMaxSize+1024)},
		gso:      dev != nil && dev.BatchSize() > 1,
	}
	e.mtu.Store(uint32(mtu))
	return e
}

// SetCapture turns capturing on or off (net.inet6.ip6.keepfaith). While off,
// every inbound packet is discarded and counted.
func (e *LinkEndpoint) SetCapture(on bool) { e.capture.Store(on) }

// Capture reports whether packets are being captured.
func (e *LinkEndpoint) Capture() bool { return e.capture.Load() }

// Stats returns the endpoint's counters.
func (e *LinkEndpoint) Stats() *LinkStats { return &e.stats }

// ReadLoop reads packets from the device and delivers them until the device
// fails or is closed. ready, if not nil, is called once before the first
// read. A closed device ends the loop with a nil error.
func (e *LinkEndpoint) ReadLoop(ready func()) error {
	if e.gso {
		return e.readVirtio(ready)
	}
	batch := e.dev.BatchSize()
	bufs := make([][]byte, batch)
	sizes := make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	if ready != nil {
		ready()
	}
	for {
		n, err := e.dev.Read(bufs, sizes, 0)
		for i := 0; i < n; i++ {
			e.deliver(bufs[i][:sizes[i]])
		}
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				e.stats.Discarded[DiscardMalformed].Add(1)
				continue
			}
			if err := e.readError(err); err != nil {
				return err
			}
			return nil
		}
	}
}

// readError turns a read error into ReadLoop's result: nil for a closed
// device (or a closed endpoint), else the error.
func (e *LinkEndpoint) readError(err error) error {
	if errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EBADFD) {
		return nil
	}
	select {
	case <-e.done:
		return nil
	default:
	}
	return fmt.Errorf("read from TUN: %w", err)
}

// readVirtio is ReadLoop for a TUN with the virtio-net header: it reads the
// device's file itself, one packet (a TSO/GRO super-packet of up to 64 KiB,
// or a plain one) behind its virtio-net header per read, and hands a TCP
// super-packet to gVisor whole, as one segment, instead of splitting it into
// MTU-sized packets as wireguard's Read does. The file is the device's own
// non-blocking one, registered with the Go runtime's poller: Read parks the
// goroutine while the device is empty. (wireguard's Read also returns the
// errors of its netlink listener; those are not seen here.)
func (e *LinkEndpoint) readVirtio(ready func()) error {
	f := e.dev.File()
	buf := make([]byte, virtioNetHdrLen+gsoMaxSize+1)
	if ready != nil {
		ready()
	}
	for {
		n, err := f.Read(buf)
		if err != nil {
			return e.readError(err)
		}
		e.deliverVirtio(buf[:n])
	}
}

// deliverVirtio filters and delivers one packet read with its virtio-net
// header (linux/virtio_net.h: flags, gso_type, hdr_len, gso_size,
// csum_start, csum_offset, little-endian).
//
// A TCPv6 GSO packet goes to gVisor whole, with its IPv6 payload length set
// to the whole payload; its checksum is partial (the kernel would fill it in
// per segment), so it is delivered as validated, and so is a packet the
// kernel marks DATA_VALID. A plain packet with a partial checksum has it
// completed here first. The counters count the packets the super-packet
// stands for, as if it had been split.
func (e *LinkEndpoint) deliverVirtio(b []byte) {
	if len(b) < virtioNetHdrLen {
		e.stats.PacketsIn.Add(1)
		e.stats.Discarded[DiscardMalformed].Add(1)
		return
	}
	flags, gsoType := b[0], b[1]
	gsoSize := int(binary.LittleEndian.Uint16(b[4:]))
	csumStart := int(binary.LittleEndian.Uint16(b[6:]))
	csumOffset := int(binary.LittleEndian.Uint16(b[8:]))
	pkt := b[virtioNetHdrLen:]
	switch gsoType {
	case virtioNetHdrGSONone:
		validated := flags&virtioNetHdrDataValid != 0
		if flags&virtioNetHdrNeedsCsum != 0 {
			at := csumStart + csumOffset
			if at+2 > len(pkt) || csumStart > at {
				e.stats.PacketsIn.Add(1)
				e.stats.Discarded[DiscardMalformed].Add(1)
				return
			}
			// The field holds the pseudo-header sum; fold the rest in.
			initial := binary.BigEndian.Uint16(pkt[at:])
			pkt[at], pkt[at+1] = 0, 0
			binary.BigEndian.PutUint16(pkt[at:], ^checksum.Checksum(pkt[csumStart:], initial))
			validated = true
		}
		e.deliverSegs(pkt, 1, validated)
	case virtioNetHdrGSOTCPv6:
		segs, ok := gsoSegments(pkt, gsoSize, csumStart)
		if !ok {
			e.stats.PacketsIn.Add(segs)
			e.stats.Discarded[DiscardMalformed].Add(segs)
			return
		}
		// The kernel's payload length may be that of the first segment
		// or of the whole; gVisor needs the whole.
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-header.IPv6MinimumSize))
		e.deliverSegs(pkt, segs, true)
	default:
		// IPv4 or UDP segmentation: nothing faith(4) captures, but the
		// packet's version and protocol say why.
		segs, _ := gsoSegments(pkt, gsoSize, csumStart)
		e.stats.PacketsIn.Add(segs)
		if !e.capture.Load() {
			e.stats.Discarded[DiscardKeepFaith].Add(segs)
			return
		}
		reason := DiscardNotTCP
		if len(pkt) < 1 || pkt[0]>>4 != 6 {
			reason = DiscardNotIPv6
		}
		e.stats.Discarded[reason].Add(segs)
	}
}

// gsoSegments returns how many packets the GSO packet pkt stands for, and
// whether it is a well-formed IPv6 TCP super-packet: an IPv6 header without
// extension headers, a TCP header, at most 64 KiB of payload.
func gsoSegments(pkt []byte, gsoSize, csumStart int) (uint64, bool) {
	hdrLen := header.IPv6MinimumSize + header.TCPMinimumSize
	ok := csumStart == header.IPv6MinimumSize && len(pkt) >= hdrLen && gsoSize > 0 &&
		len(pkt)-header.IPv6MinimumSize <= gsoMaxSize && pkt[0]>>4 == 6 &&
		pkt[6] == uint8(header.TCPProtocolNumber)
	if ok {
		hdrLen = header.IPv6MinimumSize + int(header.TCP(pkt[header.IPv6MinimumSize:]).DataOffset())
		ok = hdrLen >= header.IPv6MinimumSize+header.TCPMinimumSize && hdrLen <= len(pkt)
	}
	if !ok || len(pkt) <= hdrLen {
		return 1, ok
	}
	return uint64((len(pkt) - hdrLen + gsoSize - 1) / gsoSize), true
}

// deliver filters one inbound packet and hands it to gVisor.
func (e *LinkEndpoint) deliver(b []byte) { e.deliverSegs(b, 1, false) }

// deliverSegs filters one inbound packet that stands for segs packets on the
// wire and hands it to gVisor. validated says its checksum is known good.
func (e *LinkEndpoint) deliverSegs(b []byte, segs uint64, validated bool) {
	e.stats.PacketsIn.Add(segs)
	if !e.capture.Load() {
		e.stats.Discarded[DiscardKeepFaith].Add(segs)
		return
	}
	reason, ok := e.classify(b, validated)
	if !ok {
		if reason != taken {
			e.stats.Discarded[reason].Add(segs)
		}
		return
	}
	e.inject(b)
}

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

// classify decides whether b is something faith(4) captures: an IPv6 TCP
// segment, or an ICMPv6 Destination Unreachable, Packet Too Big or Time
// Exceeded error. It also shows SYNs to the synHook. validated says the
// packet's checksum is known good; if it is not and gVisor is told to trust
// every checksum (see Capabilities), a TCP checksum is checked here.
func (e *LinkEndpoint) classify(b []byte, validated bool) (DiscardReason, bool) {
	if len(b) < 1 {
		return DiscardMalformed, false
	}
	if b[0]>>4 != 6 {
		return DiscardNotIPv6, false
	}
	if len(b) < header.IPv6MinimumSize {
		return DiscardMalformed, false
	}
	ip := header.IPv6(b)
	payload := int(ip.PayloadLength())
	if header.IPv6MinimumSize+payload > len(b) {
		return DiscardMalformed, false
	}
	src := ip.SourceAddress()
	if src == header.IPv6Any || src == header.IPv6Loopback || header.IsV6MulticastAddress(src) || isV4Mapped(src) || isV4Compatible(src) {
		return DiscardBadSource, false
	}
	l4 := b[header.IPv6MinimumSize : header.IPv6MinimumSize+payload]
	switch tcpip.TransportProtocolNumber(ip.NextHeader()) {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return DiscardMalformed, false
		}
		tcp := header.TCP(l4)
		if e.gso && !validated {
			xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, ip.DestinationAddress(), uint16(len(l4)))
			if checksum.Checksum(l4, xsum) != 0xffff {
				return DiscardMalformed, false
			}
		}
		if e.synHook != nil && tcp.Flags()&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn {
			id := stack.TransportEndpointID{
				LocalPort:     tcp.DestinationPort(),
				LocalAddress:  ip.DestinationAddress(),
				RemotePort:    tcp.SourcePort(),
				RemoteAddress: src,
			}
			if e.synHook(id, b) {
				return taken, false
			}
		}
		return 0, true
	case header.ICMPv6ProtocolNumber:
		if len(l4) < header.ICMPv6MinimumSize {
			return DiscardMalformed, false
		}
		typ := header.ICMPv6(l4).Type()
		e.stats.ICMPv6In[typ].Add(1)
		switch typ {
		case header.ICMPv6DstUnreachable, header.ICMPv6PacketTooBig, header.ICMPv6TimeExceeded:
			return 0, true
		}
		return DiscardICMPv6, false
	default:
		return DiscardNotTCP, false
	}
}

// isV4Compatible reports an IPv4-compatible address, ::a.b.c.d (RFC 4291
// 2.5.5.1, deprecated); :: and ::1 are checked separately.
func isV4Compatible(a tcpip.Address) bool {
	b := a.As16()
	return [12]byte(b[:12]) == [12]byte{}
}

// isV4Mapped reports an IPv4-mapped address, ::ffff:a.b.c.d.
func isV4Mapped(a tcpip.Address) bool {
	b := a.As16()
	return [12]byte(b[:12]) == [12]byte{10: 0xff, 11: 0xff}
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

// write writes one packet; e.writeMu is held.
func (e *LinkEndpoint) write(pkt *stack.PacketBuffer) error {
	if !e.gso {
		buf := appendPacket(e.writeBuf[0][:writeOffset], pkt)
		e.writeBuf[0] = buf
		_, err := e.dev.Write(e.writeBuf, writeOffset)
		e.writeBuf[0] = buf[:cap(buf)]
		return err
	}
	// With the virtio-net header, write straight to the TUN: wireguard's
	// Write would build a header of its own and cannot carry gVisor's GSO.
	buf := e.writeBuf[0][:virtioNetHdrLen]
	clear(buf)
	if g := pkt.GSOOptions; g.Type == stack.GSOTCPv6 {
		binary.LittleEndian.PutUint16(buf[2:], uint16(pkt.HeaderSize())) // hdr_len
		if g.NeedsCsum {
			buf[0] = virtioNetHdrNeedsCsum
			binary.LittleEndian.PutUint16(buf[6:], g.L3HdrLen)   // csum_start
			binary.LittleEndian.PutUint16(buf[8:], g.CsumOffset) // csum_offset
		}
		if pkt.Data().Size() > int(g.MSS) {
			buf[1] = virtioNetHdrGSOTCPv6
			binary.LittleEndian.PutUint16(buf[4:], g.MSS) // gso_size
		}
	}
	buf = appendPacket(buf, pkt)
	_, err := e.dev.File().Write(buf)
	e.writeBuf[0] = buf[:cap(buf)]
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
// ReadLoop, so there is nothing to wait for.
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
