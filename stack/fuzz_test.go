package stack

import (
	"encoding/binary"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
	"go.uber.org/goleak"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FuzzLinkEndpoint feeds arbitrary packets into the link endpoint of a real
// Stack (gVisor's IPv6 and TCP behind the capture filter) over an in-memory
// device, and checks that nothing panics, that every packet is counted once
// (delivered to gVisor, taken by the flow table, or discarded under exactly
// one reason), that every flow handed to the handler is decided, and that
// closing the Stack leaves no goroutine behind.
//
// data is a sequence of frames, each a 2-byte big-endian length and that
// many bytes (a short last frame is taken as it is). mode's bits:
//
//	fuzzVirtio      each frame is a virtio-net header and a packet, read as
//	                from a TUN with offloads (deliverVirtio); else a plain
//	                IPv6 packet (deliver)
//	fuzzNoCapture   keepfaith is 0 while the frames are delivered
//	fuzzFixSums     the TCP or ICMPv6 checksum of each frame is made right
//	                first, so that mutated packets get past the checksum
//	                into gVisor's TCP
//	fuzzEstablished the harness first opens a flow from fuzzClient:40000 to
//	                fuzzFaith:443 (accepted; the handler writes 3,000 bytes
//	                that stay unacknowledged), and the frames' TCP sequence
//	                and acknowledgment numbers, and the sequence number an
//	                ICMPv6 error quotes, are relative to that flow: seq 0 is
//	                the client's next byte, ack 0 acknowledges the SYN-ACK
//	                only, a quoted seq 0 is the first unacknowledged byte
//	fuzzSettle      with fuzzEstablished, the harness waits fuzzSettleTime
//	                after each of the first fuzzSettleFrames frames, so that
//	                gVisor and the handler act on it before the next one
//	                (e.g. the handler closes the flow after the client's FIN
//	                before the client's next SYN arrives)
//
// The handler decides by destination port modulo 6: 0 RST, 1 ICMPv6
// prohibited, 2 ICMPv6 no route, 3 drop, 4 return without deciding, 5
// accept (then write, read until the end, close).
//
// `make fuzz` runs it for FUZZTIME; `go test` runs the seeds below.
func FuzzLinkEndpoint(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.mode, s.data)
	}
	f.Fuzz(func(t *testing.T, mode uint8, data []byte) {
		fuzzOne(t, mode, data)
	})
}

// The bits of FuzzLinkEndpoint's mode.
const (
	fuzzVirtio      = 1
	fuzzNoCapture   = 2
	fuzzFixSums     = 4
	fuzzEstablished = 8
	fuzzSettle      = 16
)

// Addresses and ports of the fuzzed packets.
const (
	fuzzClient = "2001:db8:1::2"
	fuzzFaith  = "2001:db8:46::c000:202"
	// fuzzMaxFrames bounds the packets of one input.
	fuzzMaxFrames = 64
	// fuzzClientISN is the established flow's initial sequence number.
	fuzzClientISN = 1000
	// fuzzUnacked is what the established flow's handler writes.
	fuzzUnacked = 3000
	// fuzzSettleTime is the pause after a frame with fuzzSettle, and
	// fuzzSettleFrames how many frames get one (inputs stay fast).
	fuzzSettleTime   = 2 * time.Millisecond
	fuzzSettleFrames = 8
	// fuzzLeakWait is how long goroutines may outlive Stack.Close.
	fuzzLeakWait = 5 * time.Second
)

func fuzzOne(t *testing.T, mode uint8, data []byte) {
	baseline := goleak.IgnoreCurrent()
	h := newFuzzHarness(t, mode&fuzzVirtio != 0)
	var est *fuzzFlow
	if mode&fuzzEstablished != 0 {
		est = h.establish(t)
	}
	h.s.link.SetCapture(mode&fuzzNoCapture == 0)
	for i, fr := range fuzzFrames(data) {
		pkt := append([]byte(nil), fr...)
		ip := pkt
		if h.virtio {
			if len(ip) < virtioNetHdrLen {
				ip = nil
			} else {
				ip = ip[virtioNetHdrLen:]
			}
		}
		if est != nil {
			est.relative(ip)
		}
		if mode&fuzzFixSums != 0 {
			fixChecksums(ip)
		}
		h.deliverChecked(t, i, pkt)
		if est != nil && mode&fuzzSettle != 0 && i < fuzzSettleFrames {
			time.Sleep(fuzzSettleTime)
		}
	}
	h.close(t)
	// Handlers still deciding when the Stack closed, and a SYN the flow
	// table was reopening, end shortly after; anything left fuzzLeakWait
	// after Close is a leak. (Find itself retries for about half a
	// second.)
	for deadline := time.Now().Add(fuzzLeakWait); ; {
		err := goleak.Find(baseline)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left %v after the stack closed: %v", fuzzLeakWait, err)
		}
	}
	if n := h.s.inFlight.Load(); n != 0 {
		t.Fatalf("handshakes in flight = %d after every handler returned; want 0", n)
	}
}

// fuzzFrames splits data into length-prefixed frames.
func fuzzFrames(data []byte) [][]byte {
	var frames [][]byte
	for len(data) >= 2 && len(frames) < fuzzMaxFrames {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		n = min(n, len(data))
		frames = append(frames, data[:n])
		data = data[n:]
	}
	return frames
}

// fuzzHarness is one Stack over a fuzzDevice, its handler, and the counters
// the checks read besides the Stack's own.
type fuzzHarness struct {
	s      *Stack
	dev    *fuzzDevice
	virtio bool

	disp     *countingDispatcher
	taken    atomic.Uint64 // SYNs the flow table took (synHook returned true)
	injected atomic.Uint64 // held SYNs the flow table delivered later
	accepted chan flow.Conn
}

func newFuzzHarness(t *testing.T, virtio bool) *fuzzHarness {
	t.Helper()
	dev, err := newFuzzDevice(virtio)
	if err != nil {
		t.Fatal(err)
	}
	h := &fuzzHarness{dev: dev, virtio: virtio, accepted: make(chan flow.Conn, 1)}
	s, err := New(dev, h.handle, Options{MTU: 1500})
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	h.s = s
	if s.link.gso != virtio {
		t.Fatalf("link endpoint gso = %v; want %v", s.link.gso, virtio)
	}
	d := s.link.dispatcher.Load()
	if d == nil {
		t.Fatal("link endpoint not attached to gVisor's NIC")
	}
	h.disp = &countingDispatcher{inner: *d}
	s.link.Attach(h.disp)
	hook := s.link.synHook
	s.link.synHook = func(id stack.TransportEndpointID, pkt []byte) bool {
		took := hook(id, pkt)
		if took {
			h.taken.Add(1)
		}
		return took
	}
	inject := s.flows.inject
	s.flows.inject = func(b []byte) {
		h.injected.Add(1)
		inject(b)
	}
	return h
}

// handle is the Stack's flow handler: it decides by destination port.
func (h *fuzzHarness) handle(r flow.Request) {
	switch r.Dest().Port() % 6 {
	case 0:
		r.Refuse(flow.RefuseReset)
	case 1:
		r.Refuse(flow.RefuseProhibited)
	case 2:
		r.Refuse(flow.RefuseNoRoute)
	case 3:
		r.Refuse(flow.RefuseDrop)
	case 4:
		// The stack refuses a flow its handler did not decide.
	default:
		c, err := r.Accept()
		if err != nil {
			return
		}
		select {
		case h.accepted <- c:
		default:
		}
		c.Write(make([]byte, fuzzUnacked))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
	}
}

// deliverChecked delivers one frame through the path under test and checks
// that the link endpoint counted it once.
func (h *fuzzHarness) deliverChecked(t *testing.T, i int, pkt []byte) {
	t.Helper()
	ls := &h.s.link.stats
	type snap struct {
		in, icmp, delivered, taken, injected uint64
		disc                                 [numDiscardReasons]uint64
	}
	read := func() (s snap) {
		s.in = ls.PacketsIn.Load()
		for r := range ls.Discarded {
			s.disc[r] = ls.Discarded[r].Load()
		}
		for typ := range ls.ICMPv6In {
			s.icmp += ls.ICMPv6In[typ].Load()
		}
		s.delivered, s.taken, s.injected = h.disp.n.Load(), h.taken.Load(), h.injected.Load()
		return s
	}
	a := read()
	if h.virtio {
		h.s.link.deliverVirtio(pkt)
	} else {
		h.s.link.deliver(pkt)
	}
	b := read()

	in := b.in - a.in
	var disc uint64
	var reasons []DiscardReason
	for r := range b.disc {
		if d := b.disc[r] - a.disc[r]; d > 0 {
			disc += d
			reasons = append(reasons, DiscardReason(r))
		}
	}
	took := b.taken - a.taken
	delivered := b.delivered - a.delivered
	if b.injected != a.injected {
		// A held SYN went to gVisor meanwhile, from another goroutine:
		// this packet's own delivery cannot be told apart from it.
		delivered = 0
		if disc == 0 && took == 0 {
			delivered = 1
		}
	}
	switch {
	case in == 0:
		t.Fatalf("frame %d (% x): packets_in did not move", i, pkt)
	case len(reasons) > 1:
		t.Fatalf("frame %d (% x): discarded under %d reasons %v", i, pkt, len(reasons), reasons)
	case disc > 0 && (disc != in || delivered != 0 || took != 0):
		t.Fatalf("frame %d (% x): packets_in +%d, discarded +%d (%v), delivered +%d, taken +%d; want the discards to equal packets_in and nothing delivered",
			i, pkt, in, disc, reasons, delivered, took)
	case disc == 0 && delivered+took != 1:
		t.Fatalf("frame %d (% x): packets_in +%d, not discarded, delivered +%d, taken +%d; want delivered or taken once",
			i, pkt, in, delivered, took)
	case b.icmp-a.icmp > 1:
		t.Fatalf("frame %d (% x): icmp6_in +%d for one packet", i, pkt, b.icmp-a.icmp)
	}
	// With keepfaith 0 nothing reaches gVisor, and every packet is
	// discarded as keepfaith, even one whose virtio-net header is unusable.
	if !h.s.link.Capture() && (len(reasons) != 1 || reasons[0] != DiscardKeepFaith) {
		t.Fatalf("frame %d (% x): keepfaith is 0 but the packet was not discarded as keepfaith (%v, delivered +%d)", i, pkt, reasons, delivered)
	}
}

// close stops the Stack and the device, as an instance does.
func (h *fuzzHarness) close(t *testing.T) {
	t.Helper()
	h.s.Close()
	h.dev.Close()
}

// fuzzFlow is the established flow's numbers.
type fuzzFlow struct {
	iss uint32 // the stack's initial sequence number
}

// establish opens a flow from fuzzClient:40000 to fuzzFaith:443 through the
// path under test and waits until the handler has accepted it.
func (h *fuzzHarness) establish(t *testing.T) *fuzzFlow {
	t.Helper()
	h.s.link.SetCapture(true)
	h.deliverPlain(fuzzTCP(40000, 443, fuzzClientISN-1, 0, header.TCPFlagSyn, mssOpt))
	deadline := time.After(hangGuard)
	var iss uint32
	for found := false; !found; {
		select {
		case p := <-h.dev.out:
			if len(p) < header.IPv6MinimumSize+header.TCPMinimumSize || p[6] != uint8(header.TCPProtocolNumber) {
				continue
			}
			tcp := header.TCP(p[header.IPv6MinimumSize:])
			if tcp.Flags() == header.TCPFlagSyn|header.TCPFlagAck && tcp.DestinationPort() == 40000 && tcp.AckNumber() == fuzzClientISN {
				iss, found = tcp.SequenceNumber(), true
			}
		case <-deadline:
			t.Fatal("no SYN-ACK for the established flow")
		}
	}
	h.deliverPlain(fuzzTCP(40000, 443, fuzzClientISN, iss+1, header.TCPFlagAck, nil))
	select {
	case <-h.accepted:
	case <-time.After(hangGuard):
		t.Fatal("the established flow was not accepted")
	}
	return &fuzzFlow{iss: iss}
}

// deliverPlain delivers a well-formed IPv6 packet through the path under
// test, behind a zero virtio-net header if the path has one.
func (h *fuzzHarness) deliverPlain(pkt []byte) {
	if h.virtio {
		h.s.link.deliverVirtio(append(make([]byte, virtioNetHdrLen), pkt...))
		return
	}
	h.s.link.deliver(pkt)
}

// relative turns the sequence numbers of ip, an IPv6 packet, from relative
// to the flow's into absolute ones (see FuzzLinkEndpoint).
func (f *fuzzFlow) relative(ip []byte) {
	const tcpAt = header.IPv6MinimumSize
	if len(ip) < tcpAt+header.TCPMinimumSize {
		return
	}
	switch ip[6] {
	case uint8(header.TCPProtocolNumber):
		tcp := header.TCP(ip[tcpAt:])
		tcp.SetSequenceNumber(tcp.SequenceNumber() + fuzzClientISN)
		tcp.SetAckNumber(tcp.AckNumber() + f.iss + 1)
	case uint8(header.ICMPv6ProtocolNumber):
		// ICMPv6 header, the quoted IPv6 header, the quoted TCP header's
		// ports and sequence number.
		at := tcpAt + header.ICMPv6ErrorHeaderSize + header.IPv6MinimumSize
		if len(ip) >= at+8 && ip[tcpAt+header.ICMPv6ErrorHeaderSize+6] == uint8(header.TCPProtocolNumber) {
			seq := binary.BigEndian.Uint32(ip[at+4:])
			binary.BigEndian.PutUint32(ip[at+4:], seq+f.iss+1)
		}
	}
}

// fixChecksums sets the TCP or ICMPv6 checksum of ip, an IPv6 packet whose
// payload length fits, to the right value.
func fixChecksums(ip []byte) {
	if len(ip) < header.IPv6MinimumSize || ip[0]>>4 != 6 {
		return
	}
	h := header.IPv6(ip)
	n := int(h.PayloadLength())
	if header.IPv6MinimumSize+n > len(ip) {
		return
	}
	l4 := ip[header.IPv6MinimumSize : header.IPv6MinimumSize+n]
	var at int
	switch tcpip.TransportProtocolNumber(h.NextHeader()) {
	case header.TCPProtocolNumber:
		at = header.TCPChecksumOffset
	case header.ICMPv6ProtocolNumber:
		at = header.ICMPv6ChecksumOffset
	default:
		return
	}
	if len(l4) < at+2 {
		return
	}
	l4[at], l4[at+1] = 0, 0
	xsum := header.PseudoHeaderChecksum(h.TransportProtocol(), h.SourceAddress(), h.DestinationAddress(), uint16(len(l4)))
	binary.BigEndian.PutUint16(l4[at:], ^checksum.Checksum(l4, xsum))
}

// countingDispatcher counts the packets the link endpoint hands to gVisor.
type countingDispatcher struct {
	inner stack.NetworkDispatcher
	n     atomic.Uint64
}

func (d *countingDispatcher) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.n.Add(1)
	d.inner.DeliverNetworkPacket(p, pkt)
}

func (d *countingDispatcher) DeliverLinkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.inner.DeliverLinkPacket(p, pkt)
}

// fuzzDevice is an in-memory tun.Device. Without virtio (batch size 1)
// gVisor's packets come through Write; with it (batch size 128, as a TUN
// with offloads) they are written to File, one end of a SOCK_SEQPACKET pair
// whose other end a goroutine reads. Either way they end up on out, without
// the virtio-net header; packets beyond out's room are dropped. The fuzzed
// packets never come through Read: they are delivered to the link endpoint
// directly.
type fuzzDevice struct {
	tun.Device // not used; calls panic
	batch      int
	out        chan []byte
	f, peer    *os.File // virtio only
	readDone   chan struct{}
}

func newFuzzDevice(virtio bool) (*fuzzDevice, error) {
	d := &fuzzDevice{batch: 1, out: make(chan []byte, 256)}
	if !virtio {
		return d, nil
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	d.batch = 128
	d.f, d.peer = os.NewFile(uintptr(fds[0]), "fuzz-tun"), os.NewFile(uintptr(fds[1]), "fuzz-tun-peer")
	d.readDone = make(chan struct{})
	go func() {
		defer close(d.readDone)
		buf := make([]byte, virtioNetHdrLen+gsoMaxSize+1024)
		for {
			n, err := d.peer.Read(buf)
			if err != nil {
				return
			}
			if n > virtioNetHdrLen {
				d.push(buf[virtioNetHdrLen:n])
			}
		}
	}()
	return d, nil
}

func (d *fuzzDevice) BatchSize() int { return d.batch }

func (d *fuzzDevice) File() *os.File { return d.f }

func (d *fuzzDevice) Write(bufs [][]byte, off int) (int, error) {
	for _, b := range bufs {
		d.push(b[off:])
	}
	return len(bufs), nil
}

func (d *fuzzDevice) push(p []byte) {
	select {
	case d.out <- append([]byte(nil), p...):
	default:
	}
}

// Close closes the virtio socket pair and waits for its reader.
func (d *fuzzDevice) Close() error {
	if d.f == nil {
		return nil
	}
	d.f.Close()
	d.peer.Close()
	<-d.readDone
	return nil
}

// Packet builders for the seeds.

var mssOpt = []byte{2, 4, 0x05, 0xa0} // MSS 1440

func fuzzIPv6(src, dst string, next uint8, payload []byte) []byte {
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = next, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], payload)
	return b
}

// fuzzTCPSeg returns a TCP header (with opts, padded to 4 bytes) and data.
func fuzzTCPSeg(src, dst uint16, seq, ack uint32, flags header.TCPFlags, opts []byte, data []byte) []byte {
	hl := header.TCPMinimumSize + (len(opts)+3)/4*4
	b := make([]byte, hl+len(data))
	header.TCP(b).Encode(&header.TCPFields{SrcPort: src, DstPort: dst, SeqNum: seq, AckNum: ack, DataOffset: uint8(hl), Flags: flags, WindowSize: 65535})
	copy(b[header.TCPMinimumSize:], opts)
	copy(b[hl:], data)
	return b
}

// fuzzTCP returns a client's TCP segment to fuzzFaith with a right checksum.
func fuzzTCP(src, dst uint16, seq, ack uint32, flags header.TCPFlags, opts []byte, data ...byte) []byte {
	p := fuzzIPv6(fuzzClient, fuzzFaith, uint8(header.TCPProtocolNumber), fuzzTCPSeg(src, dst, seq, ack, flags, opts, data))
	fixChecksums(p)
	return p
}

// fuzzICMPError returns an ICMPv6 error from src to the client quoting a
// segment the stack sent, fuzzFaith:sport -> fuzzClient:dport with sequence
// number seq; the 4 bytes after the type, code and checksum are mtu.
func fuzzICMPError(src string, typ header.ICMPv6Type, code uint8, mtu uint32, sport, dport uint16, seq uint32) []byte {
	// The quoted segment is cut short, as a router may cut it.
	quoted := fuzzIPv6(fuzzFaith, fuzzClient, uint8(header.TCPProtocolNumber), fuzzTCPSeg(sport, dport, seq, 0, header.TCPFlagAck, nil, make([]byte, 1400)))
	quoted = quoted[:header.IPv6MinimumSize+header.TCPMinimumSize+8]
	icmp := make([]byte, header.ICMPv6ErrorHeaderSize+len(quoted))
	icmp[0], icmp[1] = byte(typ), code
	binary.BigEndian.PutUint32(icmp[4:], mtu)
	copy(icmp[header.ICMPv6ErrorHeaderSize:], quoted)
	p := fuzzIPv6(src, fuzzFaith, uint8(header.ICMPv6ProtocolNumber), icmp)
	fixChecksums(p)
	return p
}

// withVirtio puts a virtio-net header in front of pkt.
func withVirtio(flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset uint16, pkt []byte) []byte {
	h := virtioNetHdr{flags: flags, gsoType: gsoType, hdrLen: hdrLen, gsoSize: gsoSize, csumStart: csumStart, csumOffset: csumOffset}
	b := make([]byte, virtioNetHdrLen, virtioNetHdrLen+len(pkt))
	h.encode(b)
	return append(b, pkt...)
}

// fuzzFramesOf joins packets into FuzzLinkEndpoint's frames.
func fuzzFramesOf(pkts ...[]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

type fuzzSeed struct {
	mode uint8
	data []byte
}

// fuzzSeeds are the malformed and hostile shapes of issue 12 and of
// test/e2e/bad_packets_test.go, on both paths.
func fuzzSeeds() []fuzzSeed {
	syn := func(port uint16) []byte { return fuzzTCP(40001, port, 5000, 0, header.TCPFlagSyn, mssOpt) }
	setLen := func(p []byte, n uint16) []byte { binary.BigEndian.PutUint16(p[4:], n); return p }
	ext := func(next uint8, inner []byte) []byte {
		// An extension header (8 bytes) in front of a TCP SYN.
		h := make([]byte, 8)
		h[0] = uint8(header.TCPProtocolNumber)
		return fuzzIPv6(fuzzClient, fuzzFaith, next, append(h, inner[header.IPv6MinimumSize:]...))
	}
	fromSrc := func(src string) []byte {
		p := fuzzIPv6(src, fuzzFaith, uint8(header.TCPProtocolNumber), fuzzTCPSeg(40001, 80, 1, 0, header.TCPFlagSyn, nil, nil))
		fixChecksums(p)
		return p
	}
	badOff := func(off uint8) []byte {
		p := syn(84)
		p[header.IPv6MinimumSize+12] = off << 4
		fixChecksums(p)
		return p
	}
	ipv4 := append([]byte{0x45, 0, 0, 40}, make([]byte, 36)...)
	udp := fuzzIPv6(fuzzClient, fuzzFaith, 17, []byte{0x30, 0x39, 0, 80, 0, 12, 0, 0, 'p', 'i', 'n', 'g'})
	echo := fuzzIPv6(fuzzClient, fuzzFaith, uint8(header.ICMPv6ProtocolNumber), []byte{128, 0, 0, 0, 0x12, 0x34, 0, 1, 'f', 'a', 'i', 't', 'h'})
	fixChecksums(echo)
	bulk := fuzzTCP(40001, 84, 5000, 1, header.TCPFlagAck, nil, make([]byte, 500*3)...)

	plain := [][]byte{
		{}, {0x60}, syn(80)[:39], syn(80)[:50],
		setLen(syn(80), 1000), setLen(syn(80), 0), setLen(syn(80), 10),
		badOff(0), badOff(4), badOff(15),
		ipv4, make([]byte, 60), udp, echo,
		ext(0, syn(80)), ext(43, syn(80)), ext(44, syn(80)), ext(60, syn(80)), fuzzIPv6(fuzzClient, fuzzFaith, 59, nil),
		fromSrc("::ffff:192.0.2.9"), fromSrc("::192.0.2.9"), fromSrc("::"), fromSrc("::1"), fromSrc("ff02::1"), fromSrc("fe80::1"),
		fuzzTCP(40001, 81, 1, 0, header.TCPFlagSyn|header.TCPFlagFin, nil),
		fuzzTCP(40001, 81, 1, 0, header.TCPFlagSyn|header.TCPFlagRst, nil),
		fuzzTCP(40001, 81, 1, 0, header.TCPFlagSyn|header.TCPFlagUrg|header.TCPFlagPsh, nil, 'x'),
		fuzzTCP(40001, 81, 1, 0, 0, nil),
		fuzzTCP(40001, 81, 1, 0, 0xff, nil),
		fuzzTCP(40001, 85, 1, 0, header.TCPFlagSyn, []byte{2, 0, 3, 1, 14}),                 // MSS option of length 0, wscale 14
		fuzzTCP(40001, 85, 1, 0, header.TCPFlagSyn, []byte{2, 4, 0, 0, 3, 3, 255, 4, 2, 8}), // MSS 0, wscale 255, SACK, truncated timestamp
		fuzzTCP(40001, 85, 1, 0, header.TCPFlagSyn, []byte{8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 5, 40}),
		bulk,
		fuzzICMPError(fuzzClient, header.ICMPv6PacketTooBig, 0, 68, 80, 40001, 1),
		fuzzICMPError(fuzzClient, header.ICMPv6DstUnreachable, 4, 0, 80, 40001, 1),
		fuzzICMPError(fuzzClient, header.ICMPv6TimeExceeded, 0, 0, 80, 40001, 1),
		fuzzICMPError(fuzzClient, header.ICMPv6ParamProblem, 0, 6, 80, 40001, 1),
	}
	seeds := []fuzzSeed{
		// Short headers, bad lengths, extension headers, flag
		// combinations, bad sources, each on its own.
		{0, fuzzFramesOf(plain...)},
		{fuzzNoCapture, fuzzFramesOf(plain...)},
		// SYNs to each decision, retransmitted, then SYN+FIN and
		// SYN+RST to the same 4-tuples (issue 12 row 10).
		{0, fuzzFramesOf(syn(80), syn(81), syn(82), syn(83), syn(84), syn(85), syn(80), syn(81), syn(83),
			fuzzTCP(40001, 80, 5000, 0, header.TCPFlagSyn|header.TCPFlagFin, nil),
			fuzzTCP(40001, 85, 5000, 0, header.TCPFlagSyn|header.TCPFlagRst, nil))},
		// A SYN then ICMPv6 errors quoting its 4-tuple.
		{0, fuzzFramesOf(syn(85),
			fuzzICMPError(fuzzClient, header.ICMPv6PacketTooBig, 0, 68, 85, 40001, 1),
			fuzzICMPError("2001:db8:1::1", header.ICMPv6DstUnreachable, 1, 0, 85, 40001, 1))},
	}
	// On the established flow (issue 12 row 1): Packet Too Big with MTU
	// 68, 1, 0 and 2^32-1 quoting the first unacknowledged byte, and out
	// of the window; forged Destination Unreachable and Time Exceeded; data,
	// a stale and a future ACK, half-close, RST, a SYN inside the flow.
	ptb := func(mtu, seq uint32) []byte {
		return fuzzICMPError(fuzzClient, header.ICMPv6PacketTooBig, 0, mtu, 443, 40000, seq)
	}
	est := func(flags header.TCPFlags, seq, ack uint32, data ...byte) []byte {
		return fuzzTCP(40000, 443, seq, ack, flags, nil, data...)
	}
	established := [][]byte{
		ptb(68, 0), ptb(1, 0), ptb(0, 10), ptb(0xffffffff, 0), ptb(1280, 2999), ptb(68, 0x80000000),
		fuzzICMPError("2001:db8:1::1", header.ICMPv6DstUnreachable, 1, 0, 443, 40000, 0),
		fuzzICMPError("2001:db8:1::1", header.ICMPv6TimeExceeded, 0, 0, 443, 40000, 0),
		est(header.TCPFlagAck|header.TCPFlagPsh, 0, 0, []byte("hello")...),
		est(header.TCPFlagAck, 5, 1000),
		est(header.TCPFlagAck, 5, 100000),
		est(header.TCPFlagSyn, 5, 0),
		est(header.TCPFlagAck|header.TCPFlagFin, 5, fuzzUnacked),
		est(header.TCPFlagRst, 6, 0),
	}
	seeds = append(seeds,
		fuzzSeed{fuzzEstablished | fuzzFixSums, fuzzFramesOf(established...)},
		fuzzSeed{fuzzEstablished | fuzzFixSums | fuzzVirtio, fuzzFramesOf(virtioAll(established)...)},
		fuzzSeed{fuzzEstablished | fuzzFixSums | fuzzNoCapture, fuzzFramesOf(established[:3]...)},
		// The client half-closes, the handler closes, and the client
		// reuses its port: once after acknowledging the stack's FIN, once
		// while the flow is still closing (the flow table's reopening).
		fuzzSeed{fuzzEstablished | fuzzFixSums | fuzzSettle, fuzzFramesOf(
			est(header.TCPFlagAck|header.TCPFlagPsh, 0, fuzzUnacked, []byte("hello")...),
			est(header.TCPFlagAck|header.TCPFlagFin, 5, fuzzUnacked),
			est(header.TCPFlagAck, 6, fuzzUnacked+1),
			est(header.TCPFlagSyn, 100000, 0, mssOpt...))},
		fuzzSeed{fuzzEstablished | fuzzFixSums | fuzzVirtio | fuzzSettle, fuzzFramesOf(virtioAll([][]byte{
			est(header.TCPFlagAck|header.TCPFlagFin, 0, fuzzUnacked),
			est(header.TCPFlagSyn, 100000, 0, mssOpt...),
			est(header.TCPFlagSyn, 100000, 0, mssOpt...)})...)},
	)

	// The virtio path: the plain shapes behind a zero header, then
	// headers with bogus checksum offsets and segmentation.
	// Seeds stay small (a few KiB per input): the fuzzer's mutation and
	// minimization cost grows with the input. GSO packets use a small
	// gso_size to stand for several segments.
	tcp := fuzzTCP(40001, 84, 5000, 1, header.TCPFlagAck, nil, make([]byte, 1200)...)
	const needs, valid = virtioNetHdrNeedsCsum, virtioNetHdrDataValid
	const gso6 = virtioNetHdrGSOTCPv6
	bad := append([]byte(nil), syn(80)...)
	bad[len(bad)-1] ^= 0xff // checksum now wrong
	virtio := [][]byte{
		{}, {1, 2, 3}, make([]byte, virtioNetHdrLen),
		withVirtio(needs, 0, 0, 0, 40, 5000, tcp),
		withVirtio(needs, 0, 0, 0, 0xffff, 0xffff, tcp),
		withVirtio(needs, 0, 0, 0, 40, 0xfffe, tcp),
		withVirtio(needs, 0, 0, 0, uint16(len(tcp)-2), 0, tcp),
		withVirtio(needs, 0, 0, 0, 0, 6, tcp),
		withVirtio(valid, 0, 0, 0, 0, 0, bad),
		withVirtio(0, 0, 0, 0, 0, 0, bad),
		withVirtio(needs, gso6, 60, 500, 40, 16, tcp[:50]),
		withVirtio(needs, gso6, 60, 500, 48, 16, tcp),
		withVirtio(needs, gso6, 60, 0, 40, 16, tcp),
		withVirtio(needs, gso6, 60, 1, 40, 16, tcp),
		withVirtio(needs, gso6, 60, 0xffff, 40, 16, tcp),
		withVirtio(needs, gso6, 0xffff, 1440, 40, 16, tcp),
		withVirtio(needs, gso6, 60, 500, 40, 16, setLen(append([]byte(nil), tcp...), 0)),
		withVirtio(needs, gso6, 60, 500, 40, 16, setLen(append([]byte(nil), tcp...), 0xffff)),
		withVirtio(needs, gso6, 60, 500, 40, 16, badOff(15)),
		withVirtio(needs, gso6, 60, 500, 40, 16, fuzzTCP(40001, 85, 1, 0, header.TCPFlagSyn, nil, make([]byte, 1200)...)),
		withVirtio(needs, gso6, 60, 500, 40, 16, echo),
		withVirtio(needs, 0x80|gso6, 60, 500, 40, 16, tcp),
		withVirtio(needs, 1, 40, 1440, 20, 16, append([]byte{0x45}, make([]byte, 1200)...)),
		withVirtio(needs, 3, 60, 1440, 40, 6, udp),
		withVirtio(needs, 5, 48, 1440, 40, 6, udp),
		withVirtio(0xff, 0xff, 0xffff, 0xffff, 0xffff, 0xffff, tcp),
		withVirtio(needs, gso6, 60, 500, 40, 16, bulk),
	}
	seeds = append(seeds,
		fuzzSeed{fuzzVirtio, fuzzFramesOf(virtioAll(plain)...)},
		fuzzSeed{fuzzVirtio, fuzzFramesOf(virtio...)},
		fuzzSeed{fuzzVirtio | fuzzNoCapture, fuzzFramesOf(virtio...)},
		fuzzSeed{fuzzVirtio, fuzzFramesOf(virtioAll([][]byte{syn(80), syn(81), syn(83), syn(84), syn(85)})...)},
	)
	return seeds
}

// virtioAll puts a zero virtio-net header in front of each packet.
func virtioAll(pkts [][]byte) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = withVirtio(0, 0, 0, 0, 0, 0, p)
	}
	return out
}
