package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

const bulkSize = 100 << 20 // 100 MiB each way

// TestBulkTransfer sends 100 MiB of random data each way through faithif and
// compares SHA-256 sums on both ends.
func TestBulkTransfer(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, 5*time.Minute)
	l, port := listenServer(t, lab)

	t.Run("ClientToServer", func(t *testing.T) {
		got := make(chan hashResult, 1)
		go func() {
			c, err := l.AcceptTCP()
			if err != nil {
				got <- hashResult{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			got <- recvHashed(c)
		}()
		c := mustDialServer(t, ctx, lab, port)
		c.SetDeadline(time.Now().Add(time.Minute))
		start := time.Now()
		sent := sendHashed(c, 1, bulkSize)
		if sent.err != nil {
			t.Fatalf("client write after %d bytes: %v", sent.n, sent.err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatalf("client CloseWrite: %v", err)
		}
		var r hashResult
		select {
		case r = <-got:
		case <-time.After(time.Minute):
			t.Fatal("server did not reach EOF within a minute")
		}
		if r.err != nil {
			t.Fatalf("server read after %d bytes: %v", r.n, r.err)
		}
		if r.n != bulkSize || r.sum != sent.sum {
			t.Fatalf("server received %d bytes sha256 %x, client sent %d bytes sha256 %x", r.n, r.sum, sent.n, sent.sum)
		}
		d := r.at.Sub(start)
		t.Logf("client->server: %d MiB in %v = %.1f MiB/s (%.0f Mbit/s)", bulkSize>>20, d.Round(time.Millisecond), mibps(bulkSize, d), mibps(bulkSize, d)*8*1.048576)
		// The server closed after EOF: the client sees EOF too.
		if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
			t.Fatalf("client read after server close: %d bytes, %v (want clean EOF)", n, err)
		}
	})

	t.Run("ServerToClient", func(t *testing.T) {
		sent := make(chan hashResult, 1)
		go func() {
			c, err := l.AcceptTCP()
			if err != nil {
				sent <- hashResult{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			r := sendHashed(c, 2, bulkSize)
			if r.err == nil {
				r.err = c.CloseWrite()
			}
			sent <- r
			io.Copy(io.Discard, c) // wait for the client to close
		}()
		c := mustDialServer(t, ctx, lab, port)
		c.SetDeadline(time.Now().Add(time.Minute))
		start := time.Now()
		r := recvHashed(c)
		if r.err != nil {
			t.Fatalf("client read after %d bytes: %v", r.n, r.err)
		}
		c.Close()
		s := <-sent
		if s.err != nil {
			t.Fatalf("server write after %d bytes: %v", s.n, s.err)
		}
		if r.n != bulkSize || r.sum != s.sum {
			t.Fatalf("client received %d bytes sha256 %x, server sent %d bytes sha256 %x", r.n, r.sum, s.n, s.sum)
		}
		d := r.at.Sub(start)
		t.Logf("server->client: %d MiB in %v = %.1f MiB/s (%.0f Mbit/s)", bulkSize>>20, d.Round(time.Millisecond), mibps(bulkSize, d), mibps(bulkSize, d)*8*1.048576)
	})
}

// TestHalfClose checks that a FIN is relayed as a half-close: the other
// direction keeps flowing.
func TestHalfClose(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, time.Minute)
	request := randBytes(10, 200<<10)
	reply := randBytes(11, 300<<10)

	t.Run("ClientClosesFirst", func(t *testing.T) {
		l, port := listenServer(t, lab)
		srvErr := make(chan error, 1)
		serve(t, l, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(c) // to the client's FIN
			if err != nil {
				srvErr <- fmt.Errorf("server read request: %w", err)
				return
			}
			if !bytes.Equal(got, request) {
				srvErr <- fmt.Errorf("server got %d request bytes, want %d (content equal: false)", len(got), len(request))
				return
			}
			// Only now, after the client's FIN, does the server answer.
			if _, err := c.Write(reply); err != nil {
				srvErr <- fmt.Errorf("server write reply after client FIN: %w", err)
				return
			}
			srvErr <- nil
		})
		c := mustDialServer(t, ctx, lab, port)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(request); err != nil {
			t.Fatalf("client write: %v", err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatalf("client CloseWrite: %v", err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("client read reply after its own FIN: %v (got %d bytes)", err, len(got))
		}
		if err := <-srvErr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, reply) {
			t.Fatalf("client got %d reply bytes, want %d (content equal: false)", len(got), len(reply))
		}
	})

	t.Run("ServerClosesFirst", func(t *testing.T) {
		l, port := listenServer(t, lab)
		srvErr := make(chan error, 1)
		serve(t, l, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(reply); err != nil {
				srvErr <- fmt.Errorf("server write: %w", err)
				return
			}
			if err := c.CloseWrite(); err != nil {
				srvErr <- fmt.Errorf("server CloseWrite: %w", err)
				return
			}
			got, err := io.ReadAll(c) // the client still sends after our FIN
			if err != nil {
				srvErr <- fmt.Errorf("server read after its own FIN: %w (got %d bytes)", err, len(got))
				return
			}
			if !bytes.Equal(got, request) {
				srvErr <- fmt.Errorf("server got %d bytes after its FIN, want %d (content equal: false)", len(got), len(request))
				return
			}
			srvErr <- nil
		})
		c := mustDialServer(t, ctx, lab, port)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c) // to the server's FIN
		if err != nil {
			t.Fatalf("client read: %v (got %d bytes)", err, len(got))
		}
		if !bytes.Equal(got, reply) {
			t.Fatalf("client got %d bytes, want %d (content equal: false)", len(got), len(reply))
		}
		if _, err := c.Write(request); err != nil {
			t.Fatalf("client write after server FIN: %v", err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatalf("client CloseWrite: %v", err)
		}
		select {
		case err := <-srvErr:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("server did not finish within 30 s")
		}
	})
}

// TestServerReset checks that an RST from the server reaches the client as
// ECONNRESET.
func TestServerReset(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, time.Minute)
	l, port := listenServer(t, lab)
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// Wait for one byte, so the client's handshake is surely complete.
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		c.SetLinger(0) // close sends RST
		c.Close()
	})
	c := mustDialServer(t, ctx, lab, port)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("client write: %v", err)
	}
	start := time.Now()
	n, err := c.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after server RST: n=%d err=%v, want ECONNRESET", n, err)
	}
	t.Logf("client got %v after %v", err, time.Since(start).Round(time.Millisecond))
}

// TestConcurrentConnections runs 200 echo connections of 64 KiB at once.
func TestConcurrentConnections(t *testing.T) {
	const (
		conns = 200
		size  = 64 << 10
	)
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, 2*time.Minute)
	l, port := listenServer(t, lab)
	serve(t, l, echoHandler)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				c, err := dialServer(ctx, lab, port)
				if err != nil {
					return fmt.Errorf("conn %d: connect: %w", i, err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				msg := randBytes(uint64(1000+i), size)
				werr := make(chan error, 1)
				go func() {
					_, err := c.Write(msg)
					if err == nil {
						err = c.CloseWrite()
					}
					werr <- err
				}()
				got, err := io.ReadAll(c)
				if e := <-werr; e != nil {
					return fmt.Errorf("conn %d: write: %w", i, e)
				}
				if err != nil {
					return fmt.Errorf("conn %d: read echo: %w (got %d bytes)", i, err, len(got))
				}
				if !bytes.Equal(got, msg) {
					return fmt.Errorf("conn %d: echo is %d bytes, want %d (content equal: false)", i, len(got), len(msg))
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	var failed []string
	for err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	d := time.Since(start)
	if nf := len(failed); nf > 0 {
		sort.Strings(failed)
		if nf > 10 {
			failed = append(failed[:10], fmt.Sprintf("... and %d more", nf-10))
		}
		t.Fatalf("%d of %d connections failed:\n%s", nf, conns, strings.Join(failed, "\n"))
	}
	t.Logf("%d concurrent connections x %d KiB echoed in %v", conns, size>>10, d.Round(time.Millisecond))
}

// TestSourcePortReuse makes 2,000 short connections in a row from the same
// client port. The server closes first, so the relay's side of each IPv6
// connection ends in TIME_WAIT; a new SYN for the same 4-tuple must still be
// accepted at once: the client's kernel must count no SYN retransmission
// (a SYN dropped for the reused 4-tuple costs one). How long the run takes
// decides nothing (guard is a hang guard).
func TestSourcePortReuse(t *testing.T) {
	const (
		n         = 2000
		guard     = 90 * time.Second
		localPort = 40000
	)
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, guard+30*time.Second)
	l, port := listenServer(t, lab)
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		io.WriteString(c, "OK "+req)
		// Close first.
	})
	cnt0, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	laddr := fmt.Sprintf("[%s]:%d", netlab.ClientAddr, localPort)
	raddr := serverAddr(port)

	var (
		retries     int
		slow        int
		maxLat      time.Duration
		lats        []time.Duration
		start       = time.Now()
		done        int
		failure     error
		portMatches = true
	)
	for i := range n {
		if time.Since(start) > guard {
			failure = fmt.Errorf("hang guard %v reached", guard)
			break
		}
		t0 := time.Now()
		err := func() error {
			var c net.Conn
			var err error
			for attempt := 0; ; attempt++ {
				c, err = lab.Client.DialFrom(ctx, "tcp6", laddr, raddr)
				// The previous connection on this port may still be in
				// LAST_ACK for a few microseconds: retry briefly.
				if errors.Is(err, syscall.EADDRNOTAVAIL) && attempt < 200 {
					retries++
					time.Sleep(time.Millisecond)
					continue
				}
				break
			}
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			defer c.Close()
			if c.LocalAddr().(*net.TCPAddr).Port != localPort {
				portMatches = false
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			req := fmt.Sprintf("req %d\n", i)
			if _, err := io.WriteString(c, req); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if string(got) != "OK "+req {
				return fmt.Errorf("reply %q, want %q", got, "OK "+req)
			}
			return nil
		}()
		lat := time.Since(t0)
		lats = append(lats, lat)
		if lat > maxLat {
			maxLat = lat
		}
		if lat > 200*time.Millisecond {
			slow++
		}
		if err != nil {
			failure = fmt.Errorf("connection %d: %w", i, err)
			break
		}
		done++
	}
	d := time.Since(start)
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	p := func(q float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[int(q*float64(len(lats)-1))].Round(time.Microsecond)
	}
	t.Logf("%d connections from port %d in %v = %.0f conn/s; latency p50 %v p99 %v max %v; %d over 200 ms; %d EADDRNOTAVAIL retries",
		done, localPort, d.Round(time.Millisecond), float64(done)/d.Seconds(), p(0.5), p(0.99), maxLat.Round(time.Microsecond), slow, retries)
	cnt1, err := lab.Client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// What the client's kernel saw: SYN retransmissions mean SYNs that
	// got no SYN-ACK; RSTs received mean refused or reset attempts.
	var parts []string
	for _, k := range []string{"TcpActiveOpens", "TcpAttemptFails", "TcpExtTCPSynRetrans", "TcpRetransSegs", "TcpInErrs", "TcpOutRsts", "TcpExtTCPChallengeACK", "TcpExtPAWSActive"} {
		parts = append(parts, fmt.Sprintf("%s=%d", k, cnt1[k]-cnt0[k]))
	}
	t.Logf("client kernel counters during the run: %s", strings.Join(parts, " "))
	if !portMatches {
		t.Errorf("some connections did not use local port %d", localPort)
	}
	if failure != nil {
		t.Fatalf("after %d of %d connections: %v", done, n, failure)
	}
	if r := cnt1["TcpExtTCPSynRetrans"] - cnt0["TcpExtTCPSynRetrans"]; r != 0 {
		t.Errorf("the client retransmitted its SYN %d times in %d connections (%d took over 200 ms): SYNs for the reused 4-tuple were dropped; want 0", r, n, slow)
	}
}
