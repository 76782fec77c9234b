package relay

import (
	"io"
	"testing"
)

// benchConn is a flow.Conn that reads n segments of 1500 bytes, then EOF,
// and takes every write.
type benchConn struct{ n int }

func (c *benchConn) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	c.n--
	return min(len(p), 1500), nil
}
func (c *benchConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *benchConn) CloseWrite() error           { return nil }
func (c *benchConn) Close() error                { return nil }
func (c *benchConn) Abort() error                { return nil }

// BenchmarkCopy: one turn of the copy loop per 1500-byte segment, with
// what `faithif flows` reads of it kept up to date (bytes, last activity,
// the FIN): no allocation, no lock.
func BenchmarkCopy(b *testing.B) {
	src, dst := &benchConn{n: b.N}, &benchConn{}
	p := newPipe(src, dst, pipeStats{}, func(pipeResult) {})
	b.ReportAllocs()
	b.SetBytes(1500)
	b.ResetTimer()
	p.copy(dst, src, &p.c2s, nil, finClient, EndClientReset, EndServerReset)
	b.StopTimer()
	if got := p.c2s.Load(); got != uint64(b.N)*1500 || p.fins.Load() != finClient {
		b.Fatalf("copied %d bytes, fins %b; want %d, the client's FIN", got, p.fins.Load(), b.N*1500)
	}
}
