package relay

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// kernelConn adapts a host-kernel TCP connection to flow.Conn and
// pooledReader.
type kernelConn struct {
	*net.TCPConn
	raw syscall.RawConn

	// The read used by ReadPooled, what it read into which buffer, and
	// its error.
	read    func(uintptr) bool
	readBuf *[]byte
	readN   int
	readErr error
}

// newKernelConn returns c as a kernelConn.
func newKernelConn(c *net.TCPConn) (*kernelConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("kernel connection: %w", err)
	}
	k := &kernelConn{TCPConn: c, raw: raw}
	k.read = k.readPooled
	return k, nil
}

// localAddrPort returns the connection's own address and port (IPv4, not
// IPv4-mapped).
func (c *kernelConn) localAddrPort() netip.AddrPort {
	a, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Abort resets the connection: SO_LINGER 0 makes close(2) send a RST.
func (c *kernelConn) Abort() error {
	c.SetLinger(0)
	return c.Close()
}

// ReadPooled waits, through Go's poller and without a buffer, until the
// socket has data, a FIN or an error, and reads it into a copy buffer it
// borrows from bufferPool only then: one system call per wake-up, and an
// idle flow holds no buffer. It returns the buffer (the caller puts it back)
// and how much it read, or io.EOF after the peer's FIN, or the error.
func (c *kernelConn) ReadPooled() (*[]byte, int, error) {
	c.readBuf, c.readN, c.readErr = nil, 0, nil
	err := c.raw.Read(c.read)
	bp, n, rerr := c.readBuf, c.readN, c.readErr
	c.readBuf = nil
	switch {
	case err == nil && rerr == nil && n > 0:
		return bp, n, nil
	case bp != nil:
		bufferPool.Put(bp)
	}
	switch {
	case err != nil:
		return nil, 0, err
	case rerr != nil:
		return nil, 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	return nil, 0, io.EOF
}

// readPooled reads from fd into a borrowed buffer, giving the buffer back
// and reporting false if the read would block.
func (c *kernelConn) readPooled(fd uintptr) bool {
	if c.readBuf == nil {
		c.readBuf = bufferPool.Get().(*[]byte)
	}
	for {
		n, err := unix.Read(int(fd), *c.readBuf)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			bufferPool.Put(c.readBuf)
			c.readBuf = nil
			return false
		case nil:
			c.readN = n
		default:
			c.readErr = err
		}
		return true
	}
}
