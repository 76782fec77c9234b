package dns64

import (
	"net"
	"net/netip"
	"sync"
)

// clientListener closes, as soon as it is accepted, a TCP connection from
// a client address that has perClient open already.
type clientListener struct {
	net.Listener
	perClient int
	mu        sync.Mutex
	open      map[netip.Addr]int
}

func newClientListener(ln net.Listener, perClient int) *clientListener {
	return &clientListener{Listener: ln, perClient: perClient, open: make(map[netip.Addr]int)}
}

// Accept returns the next connection from a client under its limit.
func (l *clientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := addrOf(c.RemoteAddr())
		l.mu.Lock()
		ok := l.open[a] < l.perClient
		if ok {
			l.open[a]++
		}
		l.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		return &clientConn{Conn: c, l: l, addr: a}, nil
	}
}

// clientConn gives its client's slot back when closed.
type clientConn struct {
	net.Conn
	l    *clientListener
	addr netip.Addr
	once sync.Once
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.addr]--; c.l.open[c.addr] <= 0 {
			delete(c.l.open, c.addr)
		}
		c.l.mu.Unlock()
	})
	return err
}
