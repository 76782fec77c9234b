package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// readLoop reads packets from the device and delivers them until the device
// fails or is closed. ready, if not nil, is called once before the first
// read. A closed device ends the loop with a nil error.
func (e *LinkEndpoint) readLoop(ready func()) error {
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
				e.stats.Discarded[e.unusable()].Add(1)
				continue
			}
			if err := e.readError(err); err != nil {
				return err
			}
			return nil
		}
	}
}

// readError turns a read error into readLoop's result: nil for a closed
// device, a removed interface (or a closed endpoint), else the error.
func (e *LinkEndpoint) readError(err error) error {
	if errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EBADFD) || e.detached() {
		return nil
	}
	select {
	case <-e.done:
		return nil
	default:
	}
	return fmt.Errorf("read from TUN: %w", err)
}

// detached reports whether the TUN device has lost its interface (`ip link
// del`). A read then fails with EBADFD, or, when the poller saw the device's
// EPOLLERR first, with Go's "not pollable", which has no exported error to
// match; TUNGETIFF tells both apart from a real read error, through the
// file's raw descriptor without the poller.
func (e *LinkEndpoint) detached() bool {
	f := e.dev.File()
	if f == nil {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ifr, _ := unix.NewIfreq("")
		ioErr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
	}); err != nil {
		return false
	}
	return errors.Is(ioErr, unix.EBADFD)
}

// readVirtio is readLoop for a TUN with the virtio-net header: it reads the
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

// unusable is the discard reason of a packet the read path cannot even
// parse (a bad virtio-net header, too many segments): malformed, or
// keepfaith while capture is off, when every packet is discarded as
// keepfaith whatever it holds.
func (e *LinkEndpoint) unusable() DiscardReason {
	if !e.capture.Load() {
		return DiscardKeepFaith
	}
	return DiscardMalformed
}

// deliverVirtio filters and delivers one packet read with its virtio-net
// header.
//
// A TCPv6 GSO packet goes to gVisor whole, with its IPv6 payload length set
// to the whole payload; its checksum is partial (the kernel would fill it in
// per segment), so it is delivered as validated, and so is a packet the
// kernel marks DATA_VALID. A plain packet with a partial checksum has it
// completed here first. The counters count the packets the super-packet
// stands for, as if it had been split.
func (e *LinkEndpoint) deliverVirtio(b []byte) {
	var h virtioNetHdr
	if !h.decode(b) {
		e.stats.PacketsIn.Add(1)
		e.stats.Discarded[e.unusable()].Add(1)
		return
	}
	gsoSize, csumStart, csumOffset := int(h.gsoSize), int(h.csumStart), int(h.csumOffset)
	pkt := b[virtioNetHdrLen:]
	switch h.gsoType {
	case virtioNetHdrGSONone:
		validated := h.flags&virtioNetHdrDataValid != 0
		if h.flags&virtioNetHdrNeedsCsum != 0 {
			at := csumStart + csumOffset
			if at+2 > len(pkt) || csumStart > at {
				e.stats.PacketsIn.Add(1)
				e.stats.Discarded[e.unusable()].Add(1)
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
			e.stats.Discarded[e.unusable()].Add(segs)
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
