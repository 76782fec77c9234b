package relay

import "net"

// KernelConn adapts a host-kernel TCP connection to Conn.
type KernelConn struct {
	*net.TCPConn
}

// Abort resets the connection: SO_LINGER 0 makes close(2) send a RST.
func (c KernelConn) Abort() error {
	c.SetLinger(0)
	return c.Close()
}
