package relay

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelConn adapts a host-kernel TCP connection to flow.Conn and readWaiter.
type kernelConn struct {
	*net.TCPConn
	raw syscall.RawConn

	// The peek used by WaitRead, and the error it found: Linux hands a
	// pending socket error (a RST) to one reader only, peeking or not.
	peek    func(uintptr) bool
	peekErr error
}

// newKernelConn returns c as a kernelConn.
func newKernelConn(c *net.TCPConn) (*kernelConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("kernel connection: %w", err)
	}
	k := &kernelConn{TCPConn: c, raw: raw}
	k.peek = k.peekReadable
	return k, nil
}

// Abort resets the connection: SO_LINGER 0 makes close(2) send a RST.
func (c *kernelConn) Abort() error {
	c.SetLinger(0)
	return c.Close()
}

// WaitRead waits, through Go's poller and without a buffer, until the
// socket has data, a FIN or an error to read. An error (a RST) is returned
// here, since the peek that found it has taken it from the socket.
func (c *kernelConn) WaitRead() error {
	c.peekErr = nil
	if err := c.raw.Read(c.peek); err != nil {
		return err
	}
	if c.peekErr != nil {
		return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: c.peekErr}
	}
	return nil
}

// peekReadable reports whether a read on fd would not block, keeping the
// error it finds.
func (c *kernelConn) peekReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	switch err {
	case unix.EAGAIN:
		return false
	case nil:
	case unix.EINTR:
		return c.peekReadable(fd)
	default:
		c.peekErr = os.NewSyscallError("recvfrom", err)
	}
	return true
}
