package ftp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/flow"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine is left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loopback6 is the client's and the "FAITH" address in these tests: the
// fake network listens and dials on it with kernel sockets.
var loopback6 = netip.MustParseAddr("::1")

// fakeNet is a flow.Network of kernel sockets on ::1: Listen listens on
// [::1]:PORT and hands over connections from the claimed address; Dial
// dials from ::1.
type fakeNet struct {
	// beforeDial, if set, runs as Dial starts; an error fails the Dial.
	beforeDial func() error

	mu      sync.Mutex
	listens []netip.AddrPort // every Listen's local address
	dials   []netip.AddrPort // every Dial's remote address
}

func (n *fakeNet) Listen(from netip.Addr, local netip.AddrPort) (flow.Listener, error) {
	n.mu.Lock()
	n.listens = append(n.listens, local)
	n.mu.Unlock()
	ln, err := net.ListenTCP("tcp6", net.TCPAddrFromAddrPort(netip.AddrPortFrom(loopback6, local.Port())))
	if err != nil {
		return nil, err
	}
	return &fakeListener{ln: ln, from: from}, nil
}

func (n *fakeNet) Dial(ctx context.Context, local, remote netip.AddrPort) (flow.Conn, error) {
	n.mu.Lock()
	n.dials = append(n.dials, remote)
	n.mu.Unlock()
	if n.beforeDial != nil {
		if err := n.beforeDial(); err != nil {
			return nil, err
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv6loopback}}
	c, err := d.DialContext(ctx, "tcp6", remote.String())
	if err != nil {
		return nil, err
	}
	return relay.NewKernelConn(c.(*net.TCPConn))
}

func (n *fakeNet) listened() []netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netip.AddrPort(nil), n.listens...)
}

func (n *fakeNet) dialed() []netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netip.AddrPort(nil), n.dials...)
}

type fakeListener struct {
	ln   *net.TCPListener
	from netip.Addr
}

func (l *fakeListener) Accept(ctx context.Context) (flow.Request, error) {
	stop := context.AfterFunc(ctx, func() { l.ln.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr() == l.from {
			return &fakeRequest{c: c}, nil
		}
		c.Close()
	}
}

func (l *fakeListener) Close() error { return l.ln.Close() }

// fakeRequest is a kernel connection already accepted, as a flow.Request.
type fakeRequest struct{ c *net.TCPConn }

func (r *fakeRequest) Client() netip.AddrPort { return r.c.RemoteAddr().(*net.TCPAddr).AddrPort() }
func (r *fakeRequest) Dest() netip.AddrPort   { return r.c.LocalAddr().(*net.TCPAddr).AddrPort() }
func (r *fakeRequest) Accept() (flow.Conn, error) {
	return relay.NewKernelConn(r.c)
}
func (r *fakeRequest) Refuse(flow.Refusal) { r.c.SetLinger(0); r.c.Close() }

// fakeServer is a small scripted IPv4 FTP server on 127.0.0.1.
type fakeServer struct {
	t    *testing.T
	ln   *net.TCPListener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cmds []string          // every command line received, in order
	conn []*net.TCPConn    // control connections, closed at the end
	pasv string            // the address its 227 names; empty: 127.0.0.1
	tls  chan []byte       // after AUTH: what came next, raw
	file map[string][]byte // RETR serves these; STOR stores here
	// transferred gets the final reply of each RETR or LIST once sent
	// (dropped if no one is waiting).
	transferred chan string
	// authClose: AUTH gets no reply, the connection is closed.
	authClose bool
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, tls: make(chan []byte, 1), file: map[string][]byte{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conn = append(s.conn, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conn {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

func (s *fakeServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func (s *fakeServer) setFile(name string, b []byte) {
	s.mu.Lock()
	s.file[name] = b
	s.mu.Unlock()
}

func (s *fakeServer) getFile(name string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.file[name]
}

func (s *fakeServer) serve(c *net.TCPConn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(format string, args ...any) { fmt.Fprintf(c, format+"\r\n", args...) }
	say("220 fake FTP ready")
	var pasv *net.TCPListener
	var port netip.AddrPort
	defer func() {
		if pasv != nil {
			pasv.Close()
		}
	}()
	// data opens the data connection the last PASV or PORT set up.
	data := func() (*net.TCPConn, error) {
		if pasv != nil {
			defer func() { pasv.Close(); pasv = nil }()
			pasv.SetDeadline(time.Now().Add(5 * time.Second))
			return pasv.AcceptTCP()
		}
		if port.IsValid() {
			d := net.Dialer{Timeout: 5 * time.Second}
			dc, err := d.Dial("tcp4", port.String())
			port = netip.AddrPort{}
			if err != nil {
				return nil, err
			}
			return dc.(*net.TCPConn), nil
		}
		return nil, errors.New("no PASV or PORT")
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, line)
		pasvAddr := s.pasv
		s.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "USER":
			say("331 Please specify the password.")
		case "PASS":
			say("230 Login successful.")
		case "NOOP":
			say("200 NOOP ok.")
		case "LONG": // one reply line of arg bytes
			n, _ := strconv.Atoi(arg)
			say("200 %s", strings.Repeat("x", n))
		case "FEAT":
			say("211-Features:\r\n EPSV\r\n PASV\r\n227 is not a code here\r\n211 End")
		case "PASV":
			if pasv != nil {
				pasv.Close()
			}
			pasv, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				say("425 listen: %v", err)
				continue
			}
			p := pasv.Addr().(*net.TCPAddr).Port
			h := "127,0,0,1"
			if pasvAddr != "" {
				h = strings.ReplaceAll(pasvAddr, ".", ",")
			}
			say("227 Entering Passive Mode (%s,%d,%d).", h, p>>8, p&0xff)
		case "PORT":
			var b [6]int
			if _, err := fmt.Sscanf(arg, "%d,%d,%d,%d,%d,%d", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]); err != nil {
				say("501 bad PORT")
				continue
			}
			port = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(b[0]), byte(b[1]), byte(b[2]), byte(b[3])}), uint16(b[4]<<8|b[5]))
			say("200 PORT command successful.")
		case "RETR", "LIST":
			dc, err := data()
			if err != nil {
				say("425 Can't open data connection.")
				continue
			}
			say("150 Here comes the data.")
			b := s.getFile(arg)
			if verb == "LIST" {
				b = []byte("-rw-r--r-- 1 ftp ftp 4 Jan 1 00:00 file\r\n")
			}
			_, werr := dc.Write(b)
			dc.Close()
			final := "226 Transfer complete."
			if werr != nil {
				final = "426 Failure writing network stream."
			}
			say("%s", final)
			select {
			case s.transferred <- final:
			default:
			}
		case "STOR":
			dc, err := data()
			if err != nil {
				say("425 Can't open data connection.")
				continue
			}
			say("150 Ok to send data.")
			b, _ := io.ReadAll(dc)
			dc.Close()
			s.setFile(arg, b)
			say("226 Transfer complete.")
		case "AUTH":
			if s.authClose {
				return // closes without a reply
			}
			say("234 Proceed with negotiation.")
			// TLS from here on: take what comes, raw.
			buf := make([]byte, 4096)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := io.ReadAtLeast(r, buf, 1)
			s.tls <- append([]byte(nil), buf[:n]...)
			c.Write([]byte("\x16\x03\x03server hello"))
			io.Copy(io.Discard, r)
			return
		case "QUIT":
			say("221 Goodbye.")
			return
		default:
			say("500 Unknown command.")
		}
	}
}

// logBuffer collects a logger's lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// session is one control connection relayed by an FTP Relay in a test.
type testSession struct {
	t      *testing.T
	r      *Relay
	net    *fakeNet
	srv    *fakeServer
	c      *net.TCPConn // the test's client end
	rd     *bufio.Reader
	done   chan result
	cancel context.CancelFunc
	log    *logBuffer
}

type result struct {
	end relay.End
	err error
}

// startSession relays a control connection from a client on ::1 to srv
// through a new Relay.
func startSession(t *testing.T, srv *fakeServer, cfg Config, idle time.Duration) *testSession {
	t.Helper()
	fn := &fakeNet{}
	if cfg.Network == nil {
		cfg.Network = fn
	}
	ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp6", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	relayC, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	relayS, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(srv.addr()))
	if err != nil {
		t.Fatal(err)
	}
	kc, _ := relay.NewKernelConn(relayC)
	ks, _ := relay.NewKernelConn(relayS)
	logs := &logBuffer{}
	f := &relay.AppFlow{
		Client: kc, Server: ks,
		ClientAddr:  c.LocalAddr().(*net.TCPAddr).AddrPort(),
		Dst6:        netip.AddrPortFrom(loopback6, 21),
		Dst4:        srv.addr(),
		Src4:        relayS.LocalAddr().(*net.TCPAddr).AddrPort(),
		IdleTimeout: idle, DialTimeout: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testSession{t: t, r: New(cfg), net: fn, srv: srv, c: c, rd: bufio.NewReader(c), done: make(chan result, 1), cancel: cancel, log: logs}
	go func() {
		end, err := ts.r.Relay(ctx, f)
		ts.done <- result{end, err}
	}()
	t.Cleanup(func() {
		c.Close()
		cancel()
		select {
		case <-ts.done:
		case <-time.After(10 * time.Second):
			t.Error("the session did not end")
		}
		relayC.Close()
		relayS.Close()
	})
	ts.c.SetDeadline(time.Now().Add(20 * time.Second)) // a hang guard
	if got := ts.reply(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting %q, want 220", got)
	}
	return ts
}

// reply reads one whole reply.
func (ts *testSession) reply() string {
	ts.t.Helper()
	var all strings.Builder
	first := ""
	for {
		line, err := ts.rd.ReadString('\n')
		if err != nil {
			ts.t.Fatalf("reading a reply: %v (so far %q)", err, all.String())
		}
		all.WriteString(line)
		if first == "" {
			first = line
			if len(line) >= 4 && line[3] == '-' {
				continue
			}
			return all.String()
		}
		if len(line) >= 4 && line[:3] == first[:3] && line[3] == ' ' {
			return all.String()
		}
	}
}

// cmd sends one command and returns its reply.
func (ts *testSession) cmd(line string) string {
	ts.t.Helper()
	if _, err := io.WriteString(ts.c, line+"\r\n"); err != nil {
		ts.t.Fatal(err)
	}
	return ts.reply()
}

// expect sends a command and checks that its reply starts with want.
func (ts *testSession) expect(line, want string) string {
	ts.t.Helper()
	got := ts.cmd(line)
	if !strings.HasPrefix(got, want) {
		ts.t.Fatalf("%s: got %q, want %q...", line, got, want)
	}
	return got
}

// login logs in.
func (ts *testSession) login() {
	ts.t.Helper()
	ts.expect("USER anonymous", "331 ")
	ts.expect("PASS x", "230 ")
}

// end waits for the session's end.
func (ts *testSession) end() result {
	ts.t.Helper()
	select {
	case r := <-ts.done:
		ts.done <- r // for the cleanup
		return r
	case <-time.After(10 * time.Second):
		ts.t.Fatal("the session did not end")
		return result{}
	}
}
