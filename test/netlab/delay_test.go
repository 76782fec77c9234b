package netlab

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestDelayClient gives the client's link an RTT of 150 ms: a connect from
// the client to the router (beyond its link: through its default route) takes one RTT and an echo works, while the
// attacker's link keeps its own (sub-millisecond) RTT.
func TestDelayClient(t *testing.T) {
	const rtt = 150 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lab := New(t)
	atk := lab.AddAttacker(t)
	t.Logf("delay: %s", lab.DelayClient(t, rtt))
	l := lab.Router.ListenTCP(t, "tcp6", "[::]:0")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 4)
				c.Read(b)
				c.Write(b)
			}()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	connect := func(ns *Namespace, dst string) time.Duration {
		t.Helper()
		start := time.Now()
		c, err := ns.Dial(ctx, "tcp6", net.JoinHostPort(dst, strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("connect from %s: %v", ns.Name, err)
		}
		d := time.Since(start)
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := c.Read(b); err != nil || string(b) != "ping" {
			t.Fatalf("echo from %s: %q, %v", ns.Name, b, err)
		}
		return d
	}
	for range 3 {
		if d := connect(lab.Client, RouterAttackerAddr); d < rtt || d > rtt+100*time.Millisecond {
			t.Errorf("connect from the client took %v; want one RTT, %v (+100 ms at most)", d, rtt)
		}
		if d := connect(atk, RouterAttackerAddr); d > 50*time.Millisecond {
			t.Errorf("connect from the attacker took %v; want its link undelayed", d)
		}
	}
}
