package stack

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/faithif/faithif/relay/flow"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Conn is an accepted flow's gVisor TCP endpoint, read and written directly
// (not through gonet) so that a FIN reads as io.EOF and a RST as
// syscall.ECONNRESET, and so that blocking needs no allocation. It is the
// flow.Conn that Accept returns.
type Conn struct {
	id stack.TransportEndpointID
	ep tcpip.Endpoint

	// wq is the endpoint's waiter queue. It stays valid for the Conn's
	// life, after Close too: the flow table waits on it to reopen the
	// 4-tuple.
	wq         waiter.Queue
	readEntry  waiter.Entry
	readCh     chan struct{}
	writeEntry waiter.Entry
	writeCh    chan struct{}
	payload    bytes.Reader

	closeOnce sync.Once
}

var _ flow.Conn = (*Conn)(nil)

// newConn returns a Conn for the flow id, waiting for its endpoint.
func newConn(id stack.TransportEndpointID) *Conn {
	c := &Conn{id: id}
	c.readEntry, c.readCh = waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	c.writeEntry, c.writeCh = waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	c.wq.EventRegister(&c.readEntry)
	c.wq.EventRegister(&c.writeEntry)
	return c
}

// setEndpoint gives c its endpoint, created on c.wq.
func (c *Conn) setEndpoint(ep tcpip.Endpoint) {
	c.ep = ep
	// The relay writes what it has just read: never hold it back.
	ep.SocketOptions().SetDelayOption(false)
}

// unregister removes c's own entries from its waiter queue.
func (c *Conn) unregister() {
	c.wq.EventUnregister(&c.readEntry)
	c.wq.EventUnregister(&c.writeEntry)
}

// state returns the TCP state of c's endpoint.
func (c *Conn) state() tcp.EndpointState { return tcp.EndpointState(c.ep.State()) }

// Read reads data sent by the IPv6 client. It returns io.EOF after the
// client's FIN and an error matching syscall.ECONNRESET after its RST.
func (c *Conn) Read(b []byte) (int, error) {
	for {
		w := tcpip.SliceWriter(b)
		res, err := c.ep.Read(&w, tcpip.ReadOptions{})
		switch err.(type) {
		case nil:
			c.ep.ModerateRecvBuf(res.Count)
			return res.Count, nil
		case *tcpip.ErrWouldBlock:
			<-c.readCh
		case *tcpip.ErrClosedForReceive:
			return 0, io.EOF
		default:
			return 0, c.opError("read", err)
		}
	}
}

// WaitRead waits until data, a FIN or an error is there to read, without a
// buffer (the relay waits so before borrowing a copy buffer).
func (c *Conn) WaitRead() error {
	for c.ep.Readiness(waiter.ReadableEvents)&waiter.ReadableEvents == 0 {
		<-c.readCh
	}
	return nil
}

// Write sends b to the IPv6 client, blocking until all of it is queued.
func (c *Conn) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		c.payload.Reset(b)
		n, err := c.ep.Write(&c.payload, tcpip.WriteOptions{})
		total += int(n)
		b = b[n:]
		switch err.(type) {
		case nil:
		case *tcpip.ErrWouldBlock:
			<-c.writeCh
		default:
			return total, c.opError("write", err)
		}
	}
	return total, nil
}

// CloseWrite sends a FIN to the client; reading goes on.
func (c *Conn) CloseWrite() error {
	if err := c.ep.Shutdown(tcpip.ShutdownWrite); err != nil {
		return c.opError("shutdown", err)
	}
	return nil
}

// Close releases the endpoint after an orderly shutdown. If the relay closed
// first, the endpoint stays in TIME_WAIT, where a new SYN from the same client
// port reopens it (see flowTable).
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.ep.Close()
		c.unregister()
	})
	return nil
}

// Abort resets the flow: the client gets a RST.
func (c *Conn) Abort() error {
	c.closeOnce.Do(func() {
		c.ep.Abort()
		c.ep.Close()
		c.unregister()
	})
	return nil
}

// opError turns a gVisor error into a Go error; a reset matches
// syscall.ECONNRESET and a write after close syscall.EPIPE.
func (c *Conn) opError(op string, err tcpip.Error) error {
	var errno error
	switch err.(type) {
	case *tcpip.ErrConnectionReset, *tcpip.ErrConnectionAborted:
		errno = syscall.ECONNRESET
	case *tcpip.ErrClosedForSend:
		errno = syscall.EPIPE
	case *tcpip.ErrTimeout:
		errno = syscall.ETIMEDOUT
	default:
		return fmt.Errorf("%s [%s]:%d: %s", op, c.id.RemoteAddress, c.id.RemotePort, err)
	}
	return fmt.Errorf("%s [%s]:%d: %w", op, c.id.RemoteAddress, c.id.RemotePort, errno)
}
