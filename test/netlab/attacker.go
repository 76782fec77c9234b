package netlab

import (
	"context"
	be "encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// The attacker of the attack harness and tests: a host beside the client,
// on its own link to the router, that sends forged packets through raw
// sockets.
const (
	// AttackerAddr is the attacker's own IPv6 address (on AttackerLink).
	AttackerAddr = "2001:db8:2::2"
	// RouterAttackerAddr is the router's address toward the attacker, the
	// attacker's default gateway.
	RouterAttackerAddr = "2001:db8:2::1"
	// AttackerLink is the attacker's end of the attacker-router veth pair.
	AttackerLink = "a0"
	// RouterAttackerLink is the router's end of it.
	RouterAttackerLink = "ra0"
	// SpoofPrefix is the range the attacker forges source addresses from.
	// The router routes it into a blackhole: what faithif answers to a
	// forged source is dropped without a word, as it is beyond a real
	// router for an attacker's spoofed range (an ICMPv6 unreachable would
	// end the handshakes early and weaken the attack).
	SpoofPrefix = "2001:db8:f000::/36"
)

// AddAttacker adds the attacker host to the lab: namespace ID+"a" (an
// IPv6 host), a veth pair to the router (AttackerAddr/64 on AttackerLink,
// RouterAttackerAddr/64 on RouterAttackerLink), the attacker's default
// route through the router, and a blackhole route for SpoofPrefix in the
// router. It fails the test if any step fails.
func (l *Lab) AddAttacker(t testing.TB) *Namespace {
	t.Helper()
	a, err := l.AddNamespace("a")
	if err != nil {
		t.Fatalf("netlab: attacker: %v", err)
	}
	for _, kv := range [][2]string{
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	} {
		if err := a.Sysctl(kv[0], kv[1]); err != nil {
			t.Fatalf("netlab: attacker: sysctl %s: %v", kv[0], err)
		}
	}
	r := l.Router
	for _, args := range [][]string{
		{"-n", r.Name, "link", "add", RouterAttackerLink, "type", "veth", "peer", "name", AttackerLink, "netns", a.Name},
		{"-n", a.Name, "addr", "add", AttackerAddr + "/64", "dev", AttackerLink, "nodad"},
		{"-n", r.Name, "addr", "add", RouterAttackerAddr + "/64", "dev", RouterAttackerLink, "nodad"},
		{"-n", a.Name, "link", "set", AttackerLink, "up"},
		{"-n", r.Name, "link", "set", RouterAttackerLink, "up"},
		{"-n", a.Name, "-6", "route", "add", "default", "via", RouterAttackerAddr, "dev", AttackerLink},
		{"-n", r.Name, "-6", "route", "add", "blackhole", SpoofPrefix},
	} {
		if _, err := ipCmd(args...); err != nil {
			t.Fatalf("netlab: attacker: %v", err)
		}
	}
	for _, end := range []struct {
		ns  *Namespace
		dev string
	}{{a, AttackerLink}, {r, RouterAttackerLink}} {
		if err := end.ns.WaitLinkUp(end.dev, 5*time.Second); err != nil {
			t.Fatalf("netlab: attacker: %v", err)
		}
	}
	return a
}

// TCP header flags, for TCPHeader.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
)

// TCPHeader returns a TCP header with the given ports, numbers, flags,
// window and options (padded with zeros to a multiple of 4 bytes). The
// checksum is left zero: BuildIPv6 fills it in.
func TCPHeader(srcPort, dstPort uint16, seq, ack uint32, flags uint8, window uint16, options []byte) []byte {
	optLen := (len(options) + 3) &^ 3
	h := make([]byte, 20+optLen)
	be.BigEndian.PutUint16(h[0:], srcPort)
	be.BigEndian.PutUint16(h[2:], dstPort)
	be.BigEndian.PutUint32(h[4:], seq)
	be.BigEndian.PutUint32(h[8:], ack)
	h[12] = byte(len(h)/4) << 4
	h[13] = flags
	be.BigEndian.PutUint16(h[14:], window)
	copy(h[20:], options)
	return h
}

// MSSOption is the TCP option announcing mss, for a SYN.
func MSSOption(mss uint16) []byte {
	return []byte{2, 4, byte(mss >> 8), byte(mss)}
}

// PacketTooBig returns the body of an ICMPv6 Packet Too Big message (type
// 2, code 0; RFC 4443 3.2) announcing mtu and quoting as much of the
// invoking packet as fits in the minimum MTU. The checksum is left zero:
// BuildIPv6 fills it in.
func PacketTooBig(mtu uint32, invoking []byte) []byte {
	const max = 1280 - 40 - 8
	if len(invoking) > max {
		invoking = invoking[:max]
	}
	b := make([]byte, 8+len(invoking))
	b[0] = 2 // Packet Too Big
	be.BigEndian.PutUint32(b[4:], mtu)
	copy(b[8:], invoking)
	return b
}

// RandomAddr returns a random address inside p (host bits random).
func RandomAddr(p netip.Prefix, r *rand.Rand) netip.Addr {
	a := p.Masked().Addr().As16()
	var rnd [16]byte
	be.BigEndian.PutUint64(rnd[:8], r.Uint64())
	be.BigEndian.PutUint64(rnd[8:], r.Uint64())
	bits := p.Bits()
	for i := range a {
		keep := 0 // bits of byte i that belong to the prefix
		switch {
		case bits >= 8*(i+1):
			keep = 8
		case bits > 8*i:
			keep = bits - 8*i
		}
		mask := byte(0xff) << (8 - keep)
		if keep == 0 {
			mask = 0
		}
		a[i] = a[i]&mask | rnd[i]&^mask
	}
	return netip.AddrFrom16(a)
}

// FloodStats is what a flood achieved.
type FloodStats struct {
	// Sent is how many packets the kernel took; Failed how many sendto
	// calls failed (FirstErr is the first failure).
	Sent, Failed int
	FirstErr     error
	// Elapsed is the time from the first packet to the last.
	Elapsed time.Duration
	// Stopped says why the flood ended before count: "" (it did not),
	// "context" or "time bound".
	Stopped string
}

// Rate is the achieved rate in packets per second.
func (s FloodStats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// RawIPv6 is a raw IPv6 socket of a namespace (AF_INET6, SOCK_RAW,
// IPPROTO_RAW, which implies IPV6_HDRINCL): it sends whole IPv6 packets
// as they are, routed by their destination, whatever their source. Open
// it once with Namespace.RawIPv6 to send packets without delay; SendIPv6
// and Flood open one for their packets. It is the only place netlab opens
// a raw IPv6 socket.
type RawIPv6 struct {
	fd int
	sa syscall.SockaddrInet6
}

// RawIPv6 opens a raw IPv6 socket in the namespace.
func (n *Namespace) RawIPv6() (*RawIPv6, error) {
	var fd int
	err := n.Do(func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.IPPROTO_RAW)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: raw IPv6 socket in %s: %w", n.Name, err)
	}
	// A deep send buffer, so that a fast flood is not cut short by ENOBUFS.
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
	return &RawIPv6{fd: fd}, nil
}

// Send sends one whole IPv6 packet (as BuildIPv6 returns it) to the
// destination in its header.
func (r *RawIPv6) Send(p []byte) error {
	if len(p) < 40 || p[0]>>4 != 6 {
		return fmt.Errorf("netlab: not an IPv6 packet (%d bytes)", len(p))
	}
	copy(r.sa.Addr[:], p[24:40])
	if err := syscall.Sendto(r.fd, p, 0, &r.sa); err != nil {
		return fmt.Errorf("netlab: send to %s: %w", netip.AddrFrom16(r.sa.Addr), err)
	}
	return nil
}

// Close closes the socket.
func (r *RawIPv6) Close() error { return syscall.Close(r.fd) }

// Flood sends count IPv6 packets, packet i being build(i) (a whole packet
// as BuildIPv6 returns it; build may reuse one buffer), from the namespace
// through one raw socket, paced at rate packets per second (0: as fast as
// the kernel takes them). It stops early when ctx ends or after maxTime
// (0: no bound besides ctx), and returns what it achieved. Only failing
// to open the socket is an error; failed sends are counted.
func (n *Namespace) Flood(ctx context.Context, count int, rate float64, maxTime time.Duration, build func(i int) []byte) (FloodStats, error) {
	raw, err := n.RawIPv6()
	if err != nil {
		return FloodStats{}, err
	}
	defer raw.Close()
	var st FloodStats
	start := time.Now()
	for i := 0; i < count; i++ {
		if i%64 == 0 {
			if ctx.Err() != nil {
				st.Stopped = "context"
				break
			}
			if maxTime > 0 && time.Since(start) > maxTime {
				st.Stopped = "time bound"
				break
			}
		}
		if rate > 0 {
			// Ahead of schedule: wait until packet i is due.
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		if err := raw.Send(build(i)); err != nil {
			if st.FirstErr == nil {
				st.FirstErr = err
			}
			st.Failed++
			continue
		}
		st.Sent++
	}
	st.Elapsed = time.Since(start)
	return st, nil
}
