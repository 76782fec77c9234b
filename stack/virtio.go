package stack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// virtio-net header (linux/virtio_net.h) values.
const (
	virtioNetHdrLen       = 10 // sizeof(struct virtio_net_hdr)
	virtioNetHdrNeedsCsum = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
	virtioNetHdrDataValid = 2  // VIRTIO_NET_HDR_F_DATA_VALID
	virtioNetHdrGSONone   = 0  // VIRTIO_NET_HDR_GSO_NONE
	virtioNetHdrGSOTCPv6  = 4  // VIRTIO_NET_HDR_GSO_TCPV6
)

// virtioNetHdr is the virtio-net header (struct virtio_net_hdr in
// linux/virtio_net.h) that a TUN opened with IFF_VNET_HDR puts in front of
// every packet: 10 bytes, little-endian.
type virtioNetHdr struct {
	flags      uint8  // virtioNetHdrNeedsCsum, virtioNetHdrDataValid
	gsoType    uint8  // virtioNetHdrGSONone, virtioNetHdrGSOTCPv6, ...
	hdrLen     uint16 // length of the headers in front of the payload
	gsoSize    uint16 // payload bytes per segment of a GSO packet
	csumStart  uint16 // where the partial checksum's coverage starts
	csumOffset uint16 // where, from csumStart, the checksum field is
}

// decode reads the header from the front of b. It reports false if b is
// shorter than a header.
func (h *virtioNetHdr) decode(b []byte) bool {
	if len(b) < virtioNetHdrLen {
		return false
	}
	h.flags = b[0]
	h.gsoType = b[1]
	h.hdrLen = binary.LittleEndian.Uint16(b[2:])
	h.gsoSize = binary.LittleEndian.Uint16(b[4:])
	h.csumStart = binary.LittleEndian.Uint16(b[6:])
	h.csumOffset = binary.LittleEndian.Uint16(b[8:])
	return true
}

// encode writes the header into the first virtioNetHdrLen bytes of b, which
// must hold them.
func (h *virtioNetHdr) encode(b []byte) {
	_ = b[virtioNetHdrLen-1]
	b[0] = h.flags
	b[1] = h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// virtioHdrFor returns the header that pkt, an outbound gVisor packet, is
// written behind: for a TCP segment of gVisor's GSO, the header length, the
// partial checksum's place if gVisor left it to the kernel, and the
// segmentation if the payload is longer than one MSS; for anything else, all
// zeros.
func virtioHdrFor(pkt *stack.PacketBuffer) virtioNetHdr {
	var h virtioNetHdr
	if g := pkt.GSOOptions; g.Type == stack.GSOTCPv6 {
		h.hdrLen = uint16(pkt.HeaderSize())
		if g.NeedsCsum {
			h.flags = virtioNetHdrNeedsCsum
			h.csumStart = g.L3HdrLen
			h.csumOffset = g.CsumOffset
		}
		if pkt.Data().Size() > int(g.MSS) {
			h.gsoType = virtioNetHdrGSOTCPv6
			h.gsoSize = g.MSS
		}
	}
	return h
}
