package netlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A lab's links have a round-trip time of tens of microseconds, which
// hides whatever depends on how long a real client takes to answer (a
// handshake evicted by age, for one). DelayClient gives the client's link
// a real one.

// DelayLink is the tun device of the client that the delay line reads
// (see DelayClient).
const DelayLink = "cd0"

// DelayClient gives the client's traffic through its default route (to
// the FAITH prefix, to the router's addresses beyond the client's link) a
// round-trip time of rtt, leaving every other link (the attacker's, the
// server's) as it is. It returns how, for the test's log:
//
//   - with tc(8) and the kernel's netem qdisc: "netem delay rtt/2" on
//     ClientLink and on RouterClientLink (half each way);
//   - else, when tc(8) is missing or the kernel has no sch_netem (built
//     without it, or a module that cannot load): a delay line in this
//     process. The client's default route goes through a tun device,
//     DelayLink; the line reads each packet from it and sends it, rtt
//     later and in order, out of ClientLink to the router's MAC address
//     (a packet socket). The whole RTT is on the client's way to the
//     router, the way back is not delayed: the client's handshake is still
//     half-open at the router for one RTT, as with netem. Only packets
//     from a global source are carried (the tun's own router and
//     multicast listener solicitations are not).
//
// It fails the test, never skips, if neither works, saying why for each.
func (l *Lab) DelayClient(t testing.TB, rtt time.Duration) string {
	t.Helper()
	if rtt <= 0 {
		t.Fatalf("netlab: DelayClient: rtt %v: want > 0", rtt)
	}
	netemErr := l.netemDelay(rtt / 2)
	if netemErr == nil {
		return fmt.Sprintf("netem delay %v on %s and on %s", rtt/2, ClientLink, RouterClientLink)
	}
	if err := l.delayLine(t, rtt); err != nil {
		t.Fatalf("netlab: cannot give the client's link an RTT of %v: tc netem: %v; a delay line instead: %v", rtt, netemErr, err)
	}
	return fmt.Sprintf("a delay line of %v on the client's way to the router, through %s (no netem: %v)", rtt, DelayLink, netemErr)
}

// netemDelay adds "netem delay d" as the root qdisc of both ends of the
// client's link, or neither.
func (l *Lab) netemDelay(d time.Duration) error {
	if _, err := exec.LookPath("tc"); err != nil {
		return fmt.Errorf("tc(8) not found (iproute2 provides it): %w", err)
	}
	delay := fmt.Sprintf("%dus", d.Microseconds())
	tc := func(ns *Namespace, args ...string) error {
		out, err := exec.Command("tc", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tc -n %s %s: %w: %s", ns.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := tc(l.Client, "qdisc", "add", "dev", ClientLink, "root", "netem", "delay", delay); err != nil {
		return err
	}
	if err := tc(l.Router, "qdisc", "add", "dev", RouterClientLink, "root", "netem", "delay", delay); err != nil {
		if derr := tc(l.Client, "qdisc", "del", "dev", ClientLink, "root"); derr != nil {
			return errors.Join(err, derr)
		}
		return err
	}
	return nil
}

// delayLine sets up the delay line DelayClient describes; the test's
// cleanup stops it.
func (l *Lab) delayLine(t testing.TB, rtt time.Duration) error {
	var mac net.HardwareAddr
	if err := l.Router.Do(func() error {
		ifi, err := net.InterfaceByName(RouterClientLink)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	}); err != nil {
		return fmt.Errorf("the router's MAC address: %w", err)
	}
	if len(mac) != 6 {
		return fmt.Errorf("the router's %s has MAC address %v; want an Ethernet one", RouterClientLink, mac)
	}
	var tunFd, pktFd, ifindex int
	err := l.Client.Do(func() error {
		ifi, err := net.InterfaceByName(ClientLink)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		tunFd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(DelayLink)
		if err != nil {
			unix.Close(tunFd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(tunFd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(tunFd)
			return fmt.Errorf("create tun %s: %w", DelayLink, err)
		}
		// Protocol 0: this socket only sends.
		pktFd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			unix.Close(tunFd)
			return fmt.Errorf("packet socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("in %s: %w", l.Client.Name, err)
	}
	// os.File on the non-blocking fd: reads wait in Go's poller, and
	// Close ends a read under way.
	tun := os.NewFile(uintptr(tunFd), DelayLink)
	for _, args := range [][]string{
		{"link", "set", DelayLink, "up"},
		{"-6", "route", "replace", "default", "dev", DelayLink},
	} {
		if _, err := l.Client.IP(args...); err != nil {
			tun.Close()
			unix.Close(pktFd)
			return err
		}
	}

	type packet struct {
		due time.Time
		b   []byte
	}
	queue := make(chan packet, 4096)
	var dropped, sendErrs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the reader: stamps each packet with when it is due
		defer wg.Done()
		defer close(queue)
		buf := make([]byte, 65536)
		for {
			n, err := tun.Read(buf)
			if err != nil {
				return
			}
			p := buf[:n]
			if n < 40 || p[0]>>4 != 6 || p[8] == 0xfe && p[9]&0xc0 == 0x80 || p[8] == 0 && p[9] == 0 || p[24] == 0xff {
				continue // not IPv6, or from link-local or unspecified, or multicast
			}
			select {
			case queue <- packet{time.Now().Add(rtt), append([]byte(nil), p...)}:
			default:
				dropped.Add(1)
			}
		}
	}()
	go func() { // the writer: sends each when due, in order
		defer wg.Done()
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: ifindex, Halen: 6}
		copy(sa.Addr[:], mac)
		for p := range queue {
			if d := time.Until(p.due); d > 0 {
				time.Sleep(d)
			}
			if err := unix.Sendto(pktFd, p.b, 0, sa); err != nil {
				if sendErrs.Add(1) == 1 {
					firstErr.Store(err)
				}
			}
		}
	}()
	t.Cleanup(func() {
		tun.Close()
		wg.Wait()
		unix.Close(pktFd)
		if n, d := sendErrs.Load(), dropped.Load(); n > 0 || d > 0 {
			t.Logf("netlab: the delay line dropped %d packets (queue full) and failed to send %d (first: %v)", d, n, firstErr.Load())
		}
	})
	return nil
}
