package netlab

import (
	be "encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Capture reads the IPv6 packets crossing one network interface of a
// namespace, in both directions, through a packet socket (AF_PACKET,
// SOCK_DGRAM: the link-layer header is removed). Open it with
// Namespace.Capture and close it when done.
type Capture struct {
	fd  int
	buf []byte
}

// Capture opens a capture of the IPv6 packets crossing dev in the
// namespace. Each packet is cut to its first snap bytes (headers are what
// a test needs; a super-packet can be 64 KiB).
func (n *Namespace) Capture(dev string, snap int) (*Capture, error) {
	const ethPIPv6 = 0x86DD
	proto := int(htons(ethPIPv6))
	var fd int
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPIPv6), Ifindex: ifi.Index}); err != nil {
			syscall.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: capture on %s in %s: %w", dev, n.Name, err)
	}
	return &Capture{fd: fd, buf: make([]byte, snap)}, nil
}

// Next returns the next IPv6 packet (at most snap bytes of it) for which
// match returns true, waiting up to timeout in all. The returned slice is
// valid until the next call.
func (c *Capture) Next(timeout time.Duration, match func(p []byte) bool) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, errors.New("netlab: capture: no matching packet before the timeout")
		}
		tv := syscall.NsecToTimeval(left.Nanoseconds())
		if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, _, err := syscall.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			return nil, fmt.Errorf("netlab: capture: %w", err)
		}
		if p := c.buf[:n]; match(p) {
			return p, nil
		}
	}
}

// Each calls fn with every IPv6 packet (at most snap bytes of it) until fn
// returns false or stop is closed; the slice is valid during the call.
// Packets the reader could not keep up with are dropped by the kernel.
func (c *Capture) Each(stop <-chan struct{}, fn func(p []byte) bool) error {
	tv := syscall.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n, _, err := syscall.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("netlab: capture: %w", err)
		}
		if !fn(c.buf[:n]) {
			return nil
		}
	}
}

// Close closes the capture.
func (c *Capture) Close() error { return syscall.Close(c.fd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TCPPayload returns the TCP payload length of the IPv6 packet p (as a
// Capture returns it) if it is a segment from src:sport to dst:dport, and
// -1 otherwise. A port below 0 matches any port.
func TCPPayload(p []byte, src, dst netip.Addr, sport, dport int) int {
	if len(p) < 60 || p[0]>>4 != 6 || p[6] != syscall.IPPROTO_TCP ||
		netip.AddrFrom16([16]byte(p[8:24])) != src || netip.AddrFrom16([16]byte(p[24:40])) != dst ||
		sport >= 0 && be.BigEndian.Uint16(p[40:]) != uint16(sport) || dport >= 0 && be.BigEndian.Uint16(p[42:]) != uint16(dport) {
		return -1
	}
	return int(be.BigEndian.Uint16(p[4:])) - int(p[52]>>4)*4
}
