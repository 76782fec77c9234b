package netlab

import (
	be "encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
)

// SendIPv6 sends whole IPv6 packets (fixed header included, as built by
// BuildIPv6) from the namespace through one raw socket (see RawIPv6): the
// kernel routes each packet by the destination in its header and sends it
// as it is, whatever its source address or payload. The kernel only
// rewrites the payload length field.
func (n *Namespace) SendIPv6(pkts ...[]byte) error {
	raw, err := n.RawIPv6()
	if err != nil {
		return err
	}
	defer raw.Close()
	for i, p := range pkts {
		if err := raw.Send(p); err != nil {
			return fmt.Errorf("netlab: send packet %d (%d bytes) from %s: %w", i, len(p), n.Name, err)
		}
	}
	return nil
}

// BuildIPv6 returns an IPv6 packet from src to dst with the given next
// header and payload, hop limit 64. If the next header is TCP (6), UDP (17)
// or ICMPv6 (58) and the payload is long enough to hold that protocol's
// checksum field, the checksum is computed over the pseudo-header (the
// field is overwritten).
func BuildIPv6(src, dst netip.Addr, nextHeader uint8, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 6 << 4
	be.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6] = nextHeader
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	l4 := p[40:]
	copy(l4, payload)
	off := -1
	switch nextHeader {
	case syscall.IPPROTO_TCP:
		off = 16
	case syscall.IPPROTO_UDP:
		off = 6
	case syscall.IPPROTO_ICMPV6:
		off = 2
	}
	if off >= 0 && len(l4) >= off+2 {
		l4[off], l4[off+1] = 0, 0
		sum := pseudoSum(s, d, nextHeader, len(l4))
		c := ^fold(sum + onesSum(l4))
		if c == 0 && nextHeader == syscall.IPPROTO_UDP {
			c = 0xffff
		}
		be.BigEndian.PutUint16(l4[off:], c)
	}
	return p
}

// TCPSyn returns a 20-byte TCP header with only SYN set.
func TCPSyn(srcPort, dstPort uint16, seq uint32) []byte {
	h := make([]byte, 20)
	be.BigEndian.PutUint16(h[0:], srcPort)
	be.BigEndian.PutUint16(h[2:], dstPort)
	be.BigEndian.PutUint32(h[4:], seq)
	h[12] = 5 << 4 // data offset: 5 words
	h[13] = 0x02   // SYN
	be.BigEndian.PutUint16(h[14:], 65535)
	return h
}

func pseudoSum(src, dst [16]byte, nh uint8, n int) uint32 {
	var s uint32
	for i := 0; i < 16; i += 2 {
		s += uint32(be.BigEndian.Uint16(src[i:]))
		s += uint32(be.BigEndian.Uint16(dst[i:]))
	}
	s += uint32(n>>16) + uint32(n&0xffff) + uint32(nh)
	return s
}

func onesSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(be.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
