package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); a.Close() })
	return d, a
}

// relayed sets up client <-> [pipe] <-> server over loopback and returns the
// outer ends and a channel with Pipe's result.
func relayed(t *testing.T, ctx context.Context, idle time.Duration) (client, server *net.TCPConn, done <-chan pipeResult) {
	t.Helper()
	client, relayClientSide := tcpPair(t)
	relayServerSide, server := tcpPair(t)
	ch := make(chan pipeResult, 1)
	kc, err := newKernelConn(relayClientSide)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := newKernelConn(relayServerSide)
	if err != nil {
		t.Fatal(err)
	}
	startPipe(ctx, kc, ks, idle, pipeStats{}, func(r pipeResult) { ch <- r })
	return client, server, ch
}

func result(t *testing.T, done <-chan pipeResult) pipeResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the pipe did not end")
		return pipeResult{}
	}
}

func TestPipeHalfCloseKeepsOtherDirection(t *testing.T) {
	client, server, done := relayed(t, context.Background(), 0)

	request := []byte("request, then FIN")
	client.Write(request)
	client.CloseWrite()

	got, err := io.ReadAll(server) // must see EOF: the FIN was relayed
	if err != nil || !bytes.Equal(got, request) {
		t.Fatalf("server read %q, %v; want %q, EOF", got, err, request)
	}
	// The other direction still flows after the client's half-close.
	reply := bytes.Repeat([]byte("reply "), 100000)
	go func() { server.Write(reply); server.CloseWrite() }()
	got, err = io.ReadAll(client)
	if err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("client read %d bytes, %v; want %d bytes and EOF", len(got), err, len(reply))
	}
	r := result(t, done)
	if r.End != EndClosed || r.ClientToServer != uint64(len(request)) || r.ServerToClient != uint64(len(reply)) {
		t.Fatalf("result = %+v; want closed, %d/%d bytes", r, len(request), len(reply))
	}
}

func TestPipeServerResetReachesClient(t *testing.T) {
	client, server, done := relayed(t, context.Background(), 0)
	client.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	server.SetLinger(0)
	server.Close() // RST

	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := client.Read(buf)
	if !isReset(err) {
		t.Fatalf("client read error = %v; want ECONNRESET", err)
	}
	if r := result(t, done); r.End != EndServerReset {
		t.Fatalf("end = %s; want %s", r.End, EndServerReset)
	}
}

func TestPipeClientResetReachesServer(t *testing.T) {
	client, server, done := relayed(t, context.Background(), 0)
	client.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	client.SetLinger(0)
	client.Close()

	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := server.Read(buf)
	if !isReset(err) {
		t.Fatalf("server read error = %v; want ECONNRESET", err)
	}
	if r := result(t, done); r.End != EndClientReset {
		t.Fatalf("end = %s; want %s", r.End, EndClientReset)
	}
}

// TestPipeIdleTimeoutResetsBoth: a byte every 100 ms keeps a flow with a
// 1 s idle timeout alive for 2.5 s (a margin of ten, for -race on a loaded
// machine); once nothing moves, the idle timeout resets both sides.
func TestPipeIdleTimeoutResetsBoth(t *testing.T) {
	const idle = time.Second
	client, server, done := relayed(t, context.Background(), idle)
	// Activity keeps the flow alive past the timeout.
	for i := 0; i < 25; i++ {
		client.Write([]byte("k"))
		io.ReadFull(server, make([]byte, 1))
		time.Sleep(idle / 10)
	}
	select {
	case r := <-done:
		t.Fatalf("flow ended while active: %+v", r)
	default:
	}
	r := result(t, done)
	if r.End != EndIdleTimeout {
		t.Fatalf("end = %s; want %s", r.End, EndIdleTimeout)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !isReset(err) {
		t.Fatalf("client read after idle timeout = %v; want ECONNRESET", err)
	}
}

func TestPipeShutdownOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client, _, done := relayed(t, ctx, 0)
	cancel()
	if r := result(t, done); r.End != EndShutdown {
		t.Fatalf("end = %s; want %s", r.End, EndShutdown)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !isReset(err) {
		t.Fatalf("client read after shutdown = %v; want ECONNRESET", err)
	}
}

// isReset reports whether err is a connection reset.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}

// blockingConn is a flow.Conn for the idle tests: Read returns its data
// once and then waits until the flow is aborted; Write signals that it
// started and waits for release (a peer that takes bytes slowly).
type blockingConn struct {
	data     []byte
	started  chan struct{}
	release  chan struct{}
	aborted  chan struct{}
	abortOne sync.Once
}

func newBlockingConn(data []byte) *blockingConn {
	return &blockingConn{data: data, started: make(chan struct{}, 1), release: make(chan struct{}), aborted: make(chan struct{})}
}

func (c *blockingConn) Read(b []byte) (int, error) {
	if len(c.data) > 0 {
		n := copy(b, c.data)
		c.data = c.data[n:]
		return n, nil
	}
	<-c.aborted
	return 0, syscall.ECONNRESET
}

func (c *blockingConn) Write(b []byte) (int, error) {
	c.started <- struct{}{}
	select {
	case <-c.release:
		return len(b), nil
	case <-c.aborted:
		return 0, syscall.ECONNRESET
	}
}

func (c *blockingConn) CloseWrite() error { return nil }
func (c *blockingConn) Close() error      { return nil }
func (c *blockingConn) Abort() error {
	c.abortOne.Do(func() { close(c.aborted) })
	return nil
}

// TestPipeSlowPeerIsNotIdle: bytes waiting for a slow peer keep the flow
// alive past the idle timeout (a download to a slow client is not idle);
// once they are taken and nothing moves, the idle timeout ends the flow.
func TestPipeSlowPeerIsNotIdle(t *testing.T) {
	const idle = 50 * time.Millisecond
	server := newBlockingConn([]byte("a download"))
	client := newBlockingConn(nil)
	done := make(chan pipeResult, 1)
	p := startPipe(context.Background(), client, server, idle, pipeStats{}, func(r pipeResult) { done <- r })
	<-client.started // the write to the client is waiting
	time.Sleep(6 * idle)
	select {
	case r := <-done:
		t.Fatalf("the flow ended while a write to the client was waiting: %+v", r)
	default:
	}
	if _, _, quiet, _ := p.progress(time.Now()); quiet != 0 {
		t.Errorf("idle %v while a write waits; want 0", quiet)
	}
	close(client.release)
	if r := result(t, done); r.End != EndIdleTimeout || r.ServerToClient != uint64(len("a download")) {
		t.Fatalf("after the write: %+v; want idle_timeout with every byte delivered", r)
	}
}
