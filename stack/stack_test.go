package stack

import (
	"bytes"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// hangGuard bounds every wait in the tests that run a Stack. It only stops a
// hung test: nothing passes or fails on timing.
const hangGuard = 10 * time.Second

// memDevice is an in-memory tun.Device without offloads (batch size 1): Read
// returns the packets queued on in, Write records what gVisor sends on out.
type memDevice struct {
	tun.Device // not used; calls panic
	in         chan []byte
	out        chan []byte
	done       chan struct{}
	closeOnce  sync.Once
}

func newMemDevice() *memDevice {
	return &memDevice{in: make(chan []byte, 64), out: make(chan []byte, 1024), done: make(chan struct{})}
}

func (d *memDevice) BatchSize() int { return 1 }

func (d *memDevice) Read(bufs [][]byte, sizes []int, off int) (int, error) {
	select {
	case p := <-d.in:
		sizes[0] = copy(bufs[0][off:], p)
		return 1, nil
	case <-d.done:
		return 0, os.ErrClosed
	}
}

func (d *memDevice) Write(bufs [][]byte, off int) (int, error) {
	for i, b := range bufs {
		select {
		case d.out <- append([]byte(nil), b[off:]...):
		case <-d.done:
			return i, os.ErrClosed
		}
	}
	return len(bufs), nil
}

func (d *memDevice) Close() error {
	d.closeOnce.Do(func() { close(d.done) })
	return nil
}

// expect returns the next packet written that match accepts, skipping
// others.
func (d *memDevice) expect(t *testing.T, what string, match func(p []byte) bool) []byte {
	t.Helper()
	timeout := time.After(hangGuard)
	for {
		select {
		case p := <-d.out:
			if match(p) {
				return p
			}
		case <-timeout:
			t.Fatalf("no %s written", what)
			return nil
		}
	}
}

// newTestStack runs a capturing Stack over a memDevice; the test's cleanup
// stops it.
func newTestStack(t *testing.T, handler flow.Handler) (*Stack, *memDevice) {
	t.Helper()
	return newTestStackWith(t, handler, Options{MTU: 1500})
}

// newTestStackWith is newTestStack with options.
func newTestStackWith(t *testing.T, handler flow.Handler, opts Options) (*Stack, *memDevice) {
	t.Helper()
	dev := newMemDevice()
	s, err := New(dev, handler, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Link().SetCapture(true)
	ran := make(chan error, 1)
	go func() { ran <- s.Run(nil) }()
	t.Cleanup(func() {
		dev.Close()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(hangGuard):
			t.Error("Run did not return after the device closed")
		}
		s.Close()
	})
	return s, dev
}

// mssOption is a TCP MSS option (1440), so that the SYN's TCP header is
// longer than the minimum.
var mssOption = []byte{2, 4, 0x05, 0xa0}

// clientSegment returns a TCP segment from client:40000 to faith:80 with a
// correct checksum.
func clientSegment(seq, ack uint32, flags header.TCPFlags, opts ...byte) []byte {
	seg := make([]byte, header.TCPMinimumSize+len(opts))
	header.TCP(seg).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: seq, AckNum: ack, DataOffset: uint8(len(seg)), Flags: flags, WindowSize: 65535})
	copy(seg[header.TCPMinimumSize:], opts)
	return withTCPChecksum(ipv6Packet(client, faith, 6, seg), false)
}

// toClient matches a TCP segment from faith:80 to client:40000 whose flags,
// of those in mask, are want.
func toClient(mask, want header.TCPFlags) func([]byte) bool {
	return func(p []byte) bool {
		if len(p) < header.IPv6MinimumSize+header.TCPMinimumSize || p[6] != uint8(header.TCPProtocolNumber) {
			return false
		}
		ip, tcp := header.IPv6(p), header.TCP(p[header.IPv6MinimumSize:])
		return addrOf(ip.SourceAddress()) == netip.MustParseAddr(faith) && addrOf(ip.DestinationAddress()) == netip.MustParseAddr(client) &&
			tcp.SourcePort() == 80 && tcp.DestinationPort() == 40000 && tcp.Flags()&mask == want
	}
}

// settles waits (bounded by hangGuard) until cond holds; gVisor counts a
// packet only once its write returned.
func settles(cond func() bool) bool {
	for deadline := time.Now().Add(hangGuard); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func TestRefuseProhibitedQuotesSYN(t *testing.T) {
	s, dev := newTestStack(t, func(r flow.Request) {
		if r.Client() != netip.MustParseAddrPort("["+client+"]:40000") || r.Dest() != netip.MustParseAddrPort("["+faith+"]:80") {
			t.Errorf("request %s -> %s", r.Client(), r.Dest())
		}
		r.Refuse(flow.RefuseProhibited)
	})
	syn := clientSegment(1000, 0, header.TCPFlagSyn, mssOption...)
	dev.in <- syn
	p := dev.expect(t, "ICMPv6 error", func(p []byte) bool {
		return len(p) > header.IPv6MinimumSize && p[6] == uint8(header.ICMPv6ProtocolNumber)
	})
	ip := header.IPv6(p)
	if src, dst := addrOf(ip.SourceAddress()), addrOf(ip.DestinationAddress()); src != netip.MustParseAddr(faith) || dst != netip.MustParseAddr(client) {
		t.Errorf("ICMPv6 error %s -> %s; want %s -> %s", src, dst, faith, client)
	}
	icmp := header.ICMPv6(p[header.IPv6MinimumSize:])
	if icmp.Type() != header.ICMPv6DstUnreachable || icmp.Code() != header.ICMPv6Prohibited {
		t.Errorf("ICMPv6 type %d code %d; want Destination Unreachable (1), administratively prohibited (1)", icmp.Type(), icmp.Code())
	}
	quoted := p[header.IPv6MinimumSize+header.ICMPv6ErrorHeaderSize:]
	hdrs := header.IPv6MinimumSize + header.TCPMinimumSize + len(mssOption)
	if len(quoted) < hdrs || !bytes.Equal(quoted[:hdrs], syn[:hdrs]) {
		t.Errorf("quoted\n% x\nwant the SYN's IPv6 and TCP headers\n% x", quoted, syn[:hdrs])
	}
	if !settles(func() bool { c := s.Counters(); return c.ICMPErrorsSent == 1 && c.HandshakesInFlight == 0 }) {
		c := s.Counters()
		t.Errorf("icmp6 errors sent = %d, handshakes in flight = %d; want 1, 0", c.ICMPErrorsSent, c.HandshakesInFlight)
	}
}

func TestRefuseWithRST(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler flow.Handler
	}{
		{"RefuseReset", func(r flow.Request) { r.Refuse(flow.RefuseReset) }},
		{"handler returns without deciding", func(flow.Request) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dev := newTestStack(t, tc.handler)
			dev.in <- clientSegment(1000, 0, header.TCPFlagSyn, mssOption...)
			p := dev.expect(t, "RST", toClient(header.TCPFlagRst, header.TCPFlagRst))
			if ack := header.TCP(p[header.IPv6MinimumSize:]).AckNumber(); ack != 1001 {
				t.Errorf("RST acks %d; want 1001", ack)
			}
			if !settles(func() bool { return s.Counters().HandshakesInFlight == 0 }) {
				t.Errorf("handshakes in flight = %d; want 0", s.Counters().HandshakesInFlight)
			}
			if n := s.Counters().ICMPErrorsSent; n != 0 {
				t.Errorf("icmp6 errors sent = %d; want 0", n)
			}
		})
	}
}

// TestReopenTimeWait closes an accepted flow from the stack's side, has the
// client finish the close and connect again from the same port, and checks
// that the new SYN reaches the forwarder (a SYN-ACK for it comes out)
// instead of being swallowed by the old endpoint's TIME_WAIT.
func TestReopenTimeWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		// waitTimeWait: send the new SYN only once the old endpoint has
		// acknowledged the client's FIN (it is in TIME_WAIT); else right
		// behind the FIN, while it may still be in FIN_WAIT1.
		waitTimeWait bool
	}{{"SYN right behind the FIN", false}, {"SYN in TIME_WAIT", true}} {
		t.Run(tc.name, func(t *testing.T) {
			accepted := make(chan flow.Conn, 2)
			s, dev := newTestStack(t, func(r flow.Request) {
				c, err := r.Accept()
				if err != nil {
					t.Errorf("accept: %v", err)
					return
				}
				accepted <- c
			})
			handshake := func(isn uint32) flow.Conn {
				t.Helper()
				dev.in <- clientSegment(isn, 0, header.TCPFlagSyn, mssOption...)
				start := time.Now()
				p := dev.expect(t, "SYN-ACK", func(p []byte) bool {
					return toClient(header.TCPFlagSyn|header.TCPFlagAck, header.TCPFlagSyn|header.TCPFlagAck)(p) &&
						header.TCP(p[header.IPv6MinimumSize:]).AckNumber() == isn+1
				})
				t.Logf("SYN-ACK for ISN %d after %v", isn, time.Since(start))
				iss := header.TCP(p[header.IPv6MinimumSize:]).SequenceNumber()
				dev.in <- clientSegment(isn+1, iss+1, header.TCPFlagAck)
				select {
				case c := <-accepted:
					return c
				case <-time.After(hangGuard):
					t.Fatal("handshake did not complete")
					return nil
				}
			}

			c := handshake(1000)
			if err := c.Close(); err != nil { // the relay closes first
				t.Fatal(err)
			}
			fin := dev.expect(t, "FIN", toClient(header.TCPFlagFin, header.TCPFlagFin))
			finSeq := header.TCP(fin[header.IPv6MinimumSize:]).SequenceNumber()
			dev.in <- clientSegment(1001, finSeq+1, header.TCPFlagFin|header.TCPFlagAck)
			if tc.waitTimeWait {
				dev.expect(t, "ACK of the client's FIN", func(p []byte) bool {
					return toClient(header.TCPFlagAck|header.TCPFlagFin|header.TCPFlagSyn|header.TCPFlagRst, header.TCPFlagAck)(p) &&
						header.TCP(p[header.IPv6MinimumSize:]).AckNumber() == 1002
				})
			}
			c2 := handshake(5_000_000)
			c2.Abort()
			if !settles(func() bool { return s.Counters().HandshakesInFlight == 0 }) {
				t.Errorf("handshakes in flight = %d; want 0", s.Counters().HandshakesInFlight)
			}
		})
	}
}
