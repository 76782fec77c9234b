package ftp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/relay"
)

var epsvPortRE = regexp.MustCompile(`\(\|\|\|(\d+)\|\)`)

// epsvData sends EPSV, checks the 229 and connects to its port on ::1.
func (ts *testSession) epsvData() *net.TCPConn {
	ts.t.Helper()
	got := ts.expect("EPSV", "229 ")
	m := epsvPortRE.FindStringSubmatch(got)
	if m == nil {
		ts.t.Fatalf("229 without (|||port|): %q", got)
	}
	port, _ := strconv.Atoi(m[1])
	dc, err := net.DialTCP("tcp6", nil, &net.TCPAddr{IP: net.IPv6loopback, Port: port})
	if err != nil {
		ts.t.Fatalf("connecting to the EPSV port %d: %v", port, err)
	}
	dc.SetDeadline(time.Now().Add(10 * time.Second))
	return dc
}

func TestPassiveDownloadUpload(t *testing.T) {
	srv := newFakeServer(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 40000)
	srv.setFile("big", want)
	ts := startSession(t, srv, Config{}, 0)
	ts.login()

	dc := ts.epsvData()
	ts.expect("RETR big", "150 ")
	got, err := io.ReadAll(dc)
	dc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("RETR through EPSV: %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
	if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
		t.Fatalf("after the transfer: %q, want 226", r)
	}

	dc = ts.epsvData()
	ts.expect("STOR up", "150 ")
	dc.Write(want[:12345])
	dc.CloseWrite()
	io.Copy(io.Discard, dc)
	dc.Close()
	if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
		t.Fatalf("after the upload: %q, want 226", r)
	}
	if got := srv.getFile("up"); !bytes.Equal(got, want[:12345]) {
		t.Fatalf("STOR through EPSV: the server got %d bytes, want 12345", len(got))
	}

	// The server saw PASV, never EPSV; the relay listened on the server's
	// passive ports of the FAITH address.
	for _, c := range srv.commands() {
		if strings.HasPrefix(c, "EPSV") {
			t.Errorf("the server got %q", c)
		}
	}
	if n := len(ts.net.listened()); n != 2 {
		t.Errorf("%d listens, want 2", n)
	}
	ts.expect("QUIT", "221 ")
	if b, err := io.ReadAll(ts.rd); err != nil || len(b) != 0 { // the server's FIN
		t.Fatalf("after 221: %q, %v; want EOF", b, err)
	}
	ts.c.CloseWrite()
	if res := ts.end(); res.end != relay.EndClosed || res.err != nil {
		t.Errorf("session ended %s, %v; want closed", res.end, res.err)
	}
	c := ts.r.Counters()
	if c.Sessions != 1 || c.Translated != 2 || c.Passive != 2 || c.Active != 0 || c.Bounces != 0 {
		t.Errorf("counters %+v, want 1 session, 2 translated, 2 passive", c)
	}
}

func TestActiveDownload(t *testing.T) {
	srv := newFakeServer(t)
	srv.setFile("f", []byte("active data"))
	ts := startSession(t, srv, Config{}, 0)
	ts.login()

	ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ts.expect(fmt.Sprintf("EPRT |2|::1|%d|", port), "200 ")
	ts.expect("RETR f", "150 ")
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	dc, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("no data connection from the relay: %v", err)
	}
	got, _ := io.ReadAll(dc)
	dc.Close()
	if string(got) != "active data" {
		t.Fatalf("RETR through EPRT: %q", got)
	}
	ts.expect("NOOP", "226 ") // the transfer's reply comes first
	if r := ts.reply(); !strings.HasPrefix(r, "200 ") {
		t.Fatalf("NOOP: %q", r)
	}
	// The server got PORT with the relay's own IPv4 address.
	var port4 string
	for _, c := range srv.commands() {
		if strings.HasPrefix(c, "PORT ") {
			port4 = c
		}
		if strings.HasPrefix(c, "EPRT") {
			t.Errorf("the server got %q", c)
		}
	}
	if !strings.HasPrefix(port4, "PORT 127,0,0,1,") {
		t.Errorf("the server got %q, want PORT 127,0,0,1,...", port4)
	}
	if d := ts.net.dialed(); len(d) != 1 || d[0] != netip.AddrPortFrom(loopback6, uint16(port)) {
		t.Errorf("dialled %v, want [::1]:%d", d, port)
	}

	// LPRT works the same way.
	ln2, _ := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
	defer ln2.Close()
	p2 := ln2.Addr().(*net.TCPAddr).Port
	ts.expect(fmt.Sprintf("LPRT 6,16,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,%d,%d", p2>>8, p2&0xff), "200 ")
	ts.expect("LIST", "150 ")
	ln2.SetDeadline(time.Now().Add(10 * time.Second))
	dc2, err := ln2.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, dc2)
	dc2.Close()
	if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
		t.Fatalf("LIST: %q", r)
	}
	if c := ts.r.Counters(); c.Active != 2 || c.Translated != 2 {
		t.Errorf("counters %+v, want 2 active, 2 translated", c)
	}
}

// TestActiveRepliesWaitForTheClient: the server's 150 and 226 for an
// active transfer reach the client only once the relay's data connection
// to it is made (a server like vsftpd sends them at once, before it);
// if that connection fails, the client gets 425 and none of the server's
// replies to the transfer.
func TestActiveRepliesWaitForTheClient(t *testing.T) {
	srv := newFakeServer(t)
	srv.transferred = make(chan string, 1)
	srv.setFile("f", []byte("active data"))
	ts := startSession(t, srv, Config{}, 0)
	ts.login()
	ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	// The server has connected, sent 150, the data and 226 while the
	// relay's connection to the client is not made yet: the client has
	// none of it.
	inDial, release := make(chan struct{}), make(chan error)
	ts.net.beforeDial = func() error {
		close(inDial)
		return <-release
	}
	ts.expect(fmt.Sprintf("EPRT |2|::1|%d|", port), "200 ")
	if _, err := io.WriteString(ts.c, "RETR f\r\n"); err != nil {
		t.Fatal(err)
	}
	<-inDial
	if r := <-srv.transferred; !strings.HasPrefix(r, "226 ") {
		t.Fatalf("the server's transfer: %q", r)
	}
	ts.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if b, err := ts.rd.Peek(1); err == nil {
		t.Errorf("the client got %q before its data connection", b)
	}
	ts.c.SetDeadline(time.Now().Add(20 * time.Second))
	release <- nil
	if r := ts.reply(); !strings.HasPrefix(r, "150 ") {
		t.Fatalf("RETR: %q, want 150", r)
	}
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	dc, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("no data connection from the relay: %v", err)
	}
	got, _ := io.ReadAll(dc)
	dc.Close()
	if string(got) != "active data" {
		t.Fatalf("RETR through EPRT: %q", got)
	}
	if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
		t.Fatalf("after the data: %q, want 226", r)
	}

	// The client cannot be reached: 425, and the server's 150 and final
	// reply are not passed on.
	ts.net.beforeDial = func() error { return syscall.ECONNREFUSED }
	ts.expect(fmt.Sprintf("EPRT |2|::1|%d|", port), "200 ")
	ts.expect("RETR f", "425 ")
	ts.expect("NOOP", "200 ")
}

// TestActiveListenerOnlyFromServer: the active-mode listener resets a
// connection from another address than the server's (its port cannot be
// checked: vsftpd connects from port 20, or any port), and the server's
// own connection still gets the transfer.
func TestActiveListenerOnlyFromServer(t *testing.T) {
	srv := newFakeServer(t)
	srv.setFile("f", []byte("for the client only"))
	ts := startSession(t, srv, Config{}, 0)
	ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ts.expect(fmt.Sprintf("EPRT |2|::1|%d|", ln.Addr().(*net.TCPAddr).Port), "200 ")
	var port4 string
	for _, c := range srv.commands() {
		if strings.HasPrefix(c, "PORT ") {
			port4 = c
		}
	}
	var b [6]int
	if _, err := fmt.Sscanf(port4, "PORT %d,%d,%d,%d,%d,%d", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]); err != nil {
		t.Fatalf("the server got %q: %v", port4, err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	// The reset may come before the dial returns (loopback is quick) or
	// on the first read: either way the connection is reset.
	c, err := d.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", b[4]<<8|b[5]))
	switch {
	case errors.Is(err, syscall.ECONNRESET):
	case err != nil:
		t.Fatal(err)
	default:
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("a connection from 127.0.0.2 to the active listener: read %d, %v; want ECONNRESET", n, err)
		}
		c.Close()
	}
	ts.expect("RETR f", "150 ")
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	dc, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(dc)
	dc.Close()
	if string(got) != "for the client only" {
		t.Errorf("RETR: %q", got)
	}
	if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
		t.Fatalf("after the data: %q", r)
	}
	if c := ts.r.Counters(); c.Bounces != 1 || c.Active != 1 {
		t.Errorf("counters %+v, want 1 bounce, 1 active", c)
	}
}

func TestLPSV(t *testing.T) {
	srv := newFakeServer(t)
	srv.setFile("f", []byte("long passive"))
	ts := startSession(t, srv, Config{}, 0)
	got := ts.expect("LPSV", "228 Entering Long Passive Mode (6,16,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,")
	var p1, p2 int
	if _, err := fmt.Sscanf(got[strings.LastIndex(got, ",2,")+3:], "%d,%d)", &p1, &p2); err != nil {
		t.Fatalf("228 %q: %v", got, err)
	}
	dc, err := net.DialTCP("tcp6", nil, &net.TCPAddr{IP: net.IPv6loopback, Port: p1<<8 | p2})
	if err != nil {
		t.Fatal(err)
	}
	ts.expect("RETR f", "150 ")
	b, _ := io.ReadAll(dc)
	dc.Close()
	if string(b) != "long passive" {
		t.Fatalf("RETR through LPSV: %q", b)
	}
}

func TestBounceRefused(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	ts.login()
	ts.expect("EPRT |2|2001:db8::99|40000|", "504 ")
	ts.expect("EPRT |2|::1|80|", "504 ")
	ts.expect("LPRT 6,16,32,1,13,184,0,0,0,0,0,0,0,0,0,0,0,153,2,156,64", "504 ")
	for _, c := range srv.commands() {
		if strings.HasPrefix(c, "PORT") {
			t.Errorf("the server got %q after a bounce attempt", c)
		}
	}
	if c := ts.r.Counters(); c.Bounces != 3 || c.Translated != 0 {
		t.Errorf("counters %+v, want 3 bounces, nothing translated", c)
	}
	if !strings.Contains(ts.log.String(), "FTP bounce") {
		t.Errorf("no log line names the bounce:\n%s", ts.log.String())
	}
}

// TestPASVNotTheServersOwn: a 227 naming another address (NAT,
// pasv_address) works: the relay connects to the server's own address at
// the port named, never to the address named.
func TestPASVNotTheServersOwn(t *testing.T) {
	srv := newFakeServer(t)
	srv.pasv = "192.0.2.99"
	srv.setFile("f", []byte("behind NAT"))
	ts := startSession(t, srv, Config{}, 0)
	port := epsvPort(t, ts.expect("EPSV", "229 "))
	dc, err := net.DialTCP("tcp6", nil, &net.TCPAddr{IP: net.IPv6loopback, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	ts.expect("RETR f", "150 ")
	b, _ := io.ReadAll(dc)
	dc.Close()
	if string(b) != "behind NAT" {
		t.Fatalf("RETR after a 227 naming 192.0.2.99: %q", b)
	}
	if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
		t.Fatalf("after the data: %q", r)
	}
	if c := ts.r.Counters(); c.Bounces != 0 || c.Passive != 1 {
		t.Errorf("counters %+v, want 1 passive, no bounce", c)
	}
	if !strings.Contains(ts.log.String(), "PASV reply ignored") || !strings.Contains(ts.log.String(), "192.0.2.99") {
		t.Errorf("no debug line for the ignored address:\n%s", ts.log.String())
	}
}

// epsvPort returns the port of a 229 reply.
func epsvPort(t *testing.T, r string) int {
	t.Helper()
	i := strings.Index(r, "|||")
	if i < 0 {
		t.Fatalf("229 %q", r)
	}
	port, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(r[i+3:]), "|)"))
	if err != nil {
		t.Fatalf("229 %q: %v", r, err)
	}
	return port
}

func TestRefusedCommands(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	for _, c := range []struct{ cmd, want string }{
		{"PORT 127,0,0,1,4,1", "502 PORT cannot carry an IPv6 address"},
		{"PASV", "502 PASV cannot carry an IPv6 address"},
		{"pasv", "502 "},
		{"EPSV 1", "522 "},
		{"EPSV 3", "501 "},
		{"EPRT |1|192.0.2.1|4000|", "522 "},
		{"EPRT |3|x|4000|", "522 "},
		{"EPRT |2|::1|0|", "501 "},
		{"EPRT |2|::1|", "501 "},
		{"EPRT ||||", "501 "},
		{"EPRT |x|::1|4000|", "501 "},
		{"EPRT 2,::1,4000", "501 "},
		{"LPRT 4,4,127,0,0,1,2,15,160", "521 "},
		{"LPRT 6,16,1,2", "501 "},
		{"NOOP " + strings.Repeat("x", maxLine), "500 Command line too long"},
	} {
		ts.expect(c.cmd, c.want)
	}
	for _, c := range srv.commands() {
		if v := strings.ToUpper(strings.Fields(c + " x")[0]); v != "NOOP" || len(c) > maxLine {
			t.Errorf("the server got %.40q", c)
		}
	}
	if c := ts.r.Counters(); c.Refused != 15 || c.Bounces != 0 {
		t.Errorf("counters %+v, want 15 refused", c)
	}
	ts.expect("NOOP", "200 ")
}

func TestEPSVAll(t *testing.T) {
	srv := newFakeServer(t)
	srv.setFile("f", []byte("x"))
	ts := startSession(t, srv, Config{}, 0)
	ts.expect("EPSV ALL", "200 ")
	ts.expect("EPRT |2|::1|40000|", "503 ")
	ts.expect("LPRT 6,16,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,156,64", "503 ")
	ts.expect("LPSV", "503 ")
	dc := ts.epsvData()
	ts.expect("RETR f", "150 ")
	io.Copy(io.Discard, dc)
	dc.Close()
	for _, c := range srv.commands() {
		if strings.HasPrefix(c, "EPSV") || strings.HasPrefix(c, "PORT") {
			t.Errorf("the server got %q", c)
		}
	}
}

// A command split over segments is one command; several in one segment
// are answered in order, the relay's own answers among the server's.
func TestSplitAndPipelined(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	ts.c.Write([]byte("NO"))
	time.Sleep(20 * time.Millisecond) // two segments (not a pass/fail timing)
	ts.c.Write([]byte("OP\r\n"))
	if r := ts.reply(); !strings.HasPrefix(r, "200 NOOP") {
		t.Fatalf("split NOOP: %q", r)
	}
	ts.c.Write([]byte("NOOP\r\nPASV\r\nUSER a\r\nPORT 1,2,3,4,5,6\r\nEPSV 1\r\nNOOP\r\n"))
	for _, want := range []string{"200 ", "502 ", "331 ", "502 ", "522 ", "200 "} {
		if r := ts.reply(); !strings.HasPrefix(r, want) {
			t.Fatalf("pipelined: got %q, want %q...", r, want)
		}
	}
}

func TestMultiLineReply(t *testing.T) {
	srv := newFakeServer(t)
	srv.setFile("f", []byte("after FEAT"))
	ts := startSession(t, srv, Config{}, 0)
	got := ts.cmd("FEAT")
	if got != "211-Features:\r\n EPSV\r\n PASV\r\n227 is not a code here\r\n211 End\r\n" {
		t.Fatalf("FEAT: %q", got)
	}
	dc := ts.epsvData() // the replies still match their commands
	ts.expect("RETR f", "150 ")
	b, _ := io.ReadAll(dc)
	dc.Close()
	if string(b) != "after FEAT" {
		t.Fatalf("RETR: %q", b)
	}
}

// A long reply line goes on whole, and in its turn; one over maxReply
// ends the session.
func TestLongReplyLine(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	ts.c.Write([]byte("LONG 20000\r\nPASV\r\n"))
	if r := ts.reply(); r != "200 "+strings.Repeat("x", 20000)+"\r\n" {
		t.Fatalf("a 20000-byte reply line came as %d bytes", len(r))
	}
	ts.expect("NOOP", "502 ") // PASV's refusal, after the long line
	if r := ts.reply(); !strings.HasPrefix(r, "200 NOOP") {
		t.Fatalf("NOOP: %q", r)
	}
	ts.c.Write([]byte("LONG 70000\r\n"))
	if res := ts.end(); res.end != relay.EndServerReset || res.err == nil {
		t.Errorf("session ended %s, %v; want reset_by_server with the line's error", res.end, res.err)
	}
}

func TestManyTransfers(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	ts.login()
	for i := range 20 {
		name := fmt.Sprintf("f%d", i)
		srv.setFile(name, bytes.Repeat([]byte{byte(i)}, 1000*i+1))
		var dc *net.TCPConn
		if i%2 == 0 {
			dc = ts.epsvData()
			ts.expect("RETR "+name, "150 ")
		} else {
			ln, _ := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
			ts.expect(fmt.Sprintf("EPRT |2|::1|%d|", ln.Addr().(*net.TCPAddr).Port), "200 ")
			ts.expect("RETR "+name, "150 ")
			ln.SetDeadline(time.Now().Add(10 * time.Second))
			var err error
			dc, err = ln.AcceptTCP()
			ln.Close()
			if err != nil {
				t.Fatalf("transfer %d: %v", i, err)
			}
		}
		b, _ := io.ReadAll(dc)
		dc.Close()
		if len(b) != 1000*i+1 {
			t.Fatalf("transfer %d: %d bytes, want %d", i, len(b), 1000*i+1)
		}
		if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
			t.Fatalf("transfer %d: %q", i, r)
		}
	}
	if c := ts.r.Counters(); c.Passive != 10 || c.Active != 10 {
		t.Errorf("counters %+v, want 10 passive, 10 active", c)
	}
}

func TestAuthTLSHandsBack(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	ts.expect("AUTH TLS", "234 ")
	hello := []byte("\x16\x03\x01client hello\xff\xfe\r\nEPSV\r\n")
	ts.c.Write(hello)
	res := ts.end()
	if !errors.Is(res.err, relay.ErrPlain) {
		t.Fatalf("session ended %s, %v; want relay.ErrPlain", res.end, res.err)
	}
	// What the client sent after AUTH was not read as commands: the relay
	// handed the flow back with it unread (here no copy loop follows, so
	// the server sees nothing more) or passed on as it came.
	select {
	case got := <-srv.tls:
		if !bytes.Equal(got, hello[:len(got)]) {
			t.Errorf("after AUTH the server got %q, want the client's bytes", got)
		}
	case <-time.After(200 * time.Millisecond):
	}
	if c := ts.r.Counters(); c.TLS != 1 || c.Translated != 0 {
		t.Errorf("counters %+v, want 1 TLS session, nothing translated", c)
	}
	if n := strings.Count(ts.log.String(), "AUTH TLS"); n != 1 {
		t.Errorf("AUTH TLS logged %d times, want once:\n%s", n, ts.log.String())
	}
}

// TestAuthServerCloses: a server that closes instead of answering AUTH
// ends the session: its FIN reaches the client, and the client's FIN is
// read and ends it (the relay does not wait for the reply for ever).
func TestAuthServerCloses(t *testing.T) {
	srv := newFakeServer(t)
	srv.authClose = true
	ts := startSession(t, srv, Config{}, 0)
	if _, err := io.WriteString(ts.c, "AUTH TLS\r\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := ts.rd.ReadByte(); err != io.EOF {
		t.Fatalf("after AUTH and the server's close: %q, %v; want EOF", b, err)
	}
	ts.c.CloseWrite()
	if r := ts.end(); r.end != relay.EndClosed || r.err != nil {
		t.Errorf("session ended %v, %v; want closed", r.end, r.err)
	}
}

func TestDataListenerExpires(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{DataTimeout: 50 * time.Millisecond}, 0)
	got := ts.expect("EPSV", "229 ")
	port, _ := strconv.Atoi(epsvPortRE.FindStringSubmatch(got)[1])
	deadline := time.Now().Add(10 * time.Second)
	for ts.r.Counters().Expired == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the data listener did not expire")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := net.DialTCP("tcp6", nil, &net.TCPAddr{IP: net.IPv6loopback, Port: port}); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connecting to the expired listener: %v, want ECONNREFUSED", err)
	}
	ln, _ := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback})
	defer ln.Close()
	ts.expect(fmt.Sprintf("EPRT |2|::1|%d|", ln.Addr().(*net.TCPAddr).Port), "200 ")
	for ts.r.Counters().Expired < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the active data listener did not expire")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ts.expect("RETR x", "425 ") // the server finds nobody to connect to
}

func TestHalfCloseAfterQuit(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	ts.c.Write([]byte("QUIT\r\n"))
	ts.c.CloseWrite()
	if r := ts.reply(); !strings.HasPrefix(r, "221 ") {
		t.Fatalf("QUIT after the client's FIN: %q", r)
	}
	if b, err := io.ReadAll(ts.rd); err != nil || len(b) != 0 {
		t.Fatalf("after 221: %q, %v; want EOF", b, err)
	}
	if res := ts.end(); res.end != relay.EndClosed || res.err != nil {
		t.Errorf("session ended %s, %v; want closed", res.end, res.err)
	}
}

func TestClientReset(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	dc := ts.epsvData()
	ts.c.SetLinger(0)
	ts.c.Close()
	if res := ts.end(); res.end != relay.EndClientReset {
		t.Errorf("session ended %s, %v; want reset_by_client", res.end, res.err)
	}
	// The data connection waiting for its transfer is reset with it.
	if _, err := dc.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Errorf("data connection after the control's reset: %v", err)
	}
	dc.Close()
}

func TestShutdownAndIdle(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 0)
	ts.cancel()
	if res := ts.end(); res.end != relay.EndShutdown {
		t.Errorf("session ended %s, %v; want shutdown", res.end, res.err)
	}
	ts = startSession(t, srv, Config{}, 30*time.Millisecond)
	if res := ts.end(); res.end != relay.EndIdleTimeout {
		t.Errorf("session ended %s, %v; want idle_timeout", res.end, res.err)
	}
}

// The control connection is not idle while its data connection moves.
func TestNotIdleDuringTransfer(t *testing.T) {
	srv := newFakeServer(t)
	ts := startSession(t, srv, Config{}, 100*time.Millisecond)
	dc := ts.epsvData()
	ts.expect("STOR slow", "150 ")
	for range 6 { // 300 ms of upload, none on the control connection
		dc.Write([]byte("chunk"))
		time.Sleep(50 * time.Millisecond)
	}
	dc.CloseWrite()
	io.Copy(io.Discard, dc)
	dc.Close()
	if r := ts.reply(); !strings.HasPrefix(r, "226 ") {
		t.Fatalf("after a slow upload: %q", r)
	}
	if got := srv.getFile("slow"); len(got) != 30 {
		t.Errorf("uploaded %d bytes, want 30", len(got))
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want string
		err  error
	}{
		{"|2|2001:db8::1|4000|", "[2001:db8::1]:4000", nil},
		{"!2!2001:db8::1!4000!", "[2001:db8::1]:4000", nil},
		{"|1|192.0.2.1|4000|", "", errProtocol},
		{"|2|192.0.2.1|4000|", "", errSyntax},
		{"|1|2001:db8::1|4000|", "", errSyntax},
		{"|2|fe80::1%eth0|4000|", "", errSyntax},
		{"|2|2001:db8::1|70000|", "", errSyntax},
		{"|2|2001:db8::1|4000", "", errSyntax},
		{" 2 2001:db8::1 4000 ", "", errSyntax},
		{"", "", errSyntax},
	} {
		got, err := parseEPRT(c.arg)
		if !errors.Is(err, c.err) || (err == nil && got.String() != c.want) {
			t.Errorf("parseEPRT(%q) = %v, %v; want %s, %v", c.arg, got, err, c.want, c.err)
		}
	}
	if got, err := parsePASV("227 Entering Passive Mode (192,0,2,2,195,80)."); err != nil || got.String() != "192.0.2.2:50000" {
		t.Errorf("parsePASV: %v, %v", got, err)
	}
	if got, err := parsePASV("227 =192,0,2,2,0,21"); err != nil || got.String() != "192.0.2.2:21" {
		t.Errorf("parsePASV without parentheses: %v, %v", got, err)
	}
	for _, bad := range []string{"227 Entering Passive Mode.", "227 (192,0,2,256,1,1)"} {
		if _, err := parsePASV(bad); err == nil {
			t.Errorf("parsePASV(%q) succeeded", bad)
		}
	}
	a := netip.MustParseAddrPort("[2001:db8::c000:202]:50000")
	if got := lpsvReply(a); got != "228 Entering Long Passive Mode (6,16,32,1,13,184,0,0,0,0,0,0,0,0,192,0,2,2,2,195,80)\r\n" {
		t.Errorf("lpsvReply: %q", got)
	}
	if got, err := parseLPRT("6,16,32,1,13,184,0,0,0,0,0,0,0,0,192,0,2,2,2,195,80"); err != nil || got != a {
		t.Errorf("parseLPRT: %v, %v", got, err)
	}
	if got := portCommand(netip.MustParseAddrPort("192.0.2.1:50001")); got != "PORT 192,0,2,1,195,81\r\n" {
		t.Errorf("portCommand: %q", got)
	}
	if c := parseCommand([]byte("\xff\xf4\xff\xf2abor\r\n")); c.verb != "ABOR" || c.arg != "" {
		t.Errorf("parseCommand of a Synch and ABOR: %+v", c)
	}
	if c := parseCommand([]byte("eprt |2|::1|5|\n")); c.verb != "EPRT" || c.arg != "|2|::1|5|" {
		t.Errorf("parseCommand: %+v", c)
	}
	for line, want := range map[string][3]int{"227 x": {227, 0, 1}, "211-x": {211, 1, 1}, "200\r\n": {200, 0, 1}, "20x": {0, 0, 0}, "2000": {0, 0, 0}} {
		code, more, ok := replyCode([]byte(line))
		if code != want[0] || more != (want[1] == 1) || ok != (want[2] == 1) {
			t.Errorf("replyCode(%q) = %d, %v, %v", line, code, more, ok)
		}
	}
}

// Counters of a nil Relay (no FTP ports) are zero.
func TestNilCounters(t *testing.T) {
	var r *Relay
	if c := r.Counters(); c != (Counters{}) {
		t.Errorf("%+v", c)
	}
}

// FuzzParse: the parsers of client commands and server replies take any
// bytes without panicking, and what they accept is well formed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"|2|2001:db8::1|4000|", "6,16,32,1,13,184,0,0,0,0,0,0,0,0,192,0,2,2,2,195,80",
		"227 Entering Passive Mode (192,0,2,2,195,80).", "211-x\r\n", "\xff\xf4\xff\xf2ABOR\r\n", "6,255", "4,4,1,2,3,4,2,0,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := parseEPRT(s); err == nil && (!a.Addr().Is6() || a.Port() == 0) {
			t.Errorf("parseEPRT(%q) = %v", s, a)
		}
		if a, err := parseLPRT(s); err == nil && (!a.Addr().Is6() || a.Port() == 0) {
			t.Errorf("parseLPRT(%q) = %v", s, a)
		}
		if a, err := parsePASV(s); err == nil && !a.Addr().Is4() {
			t.Errorf("parsePASV(%q) = %v", s, a)
		}
		line := s // as the session reads it: one line
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line = s[:i+1]
		}
		c := parseCommand([]byte(line))
		if strings.Contains(c.verb, " ") || strings.ToUpper(c.verb) != c.verb || strings.HasSuffix(c.arg, "\n") {
			t.Errorf("parseCommand(%q) verb %q", s, c.verb)
		}
		if code, _, ok := replyCode([]byte(s)); ok && (code < 0 || code > 999) {
			t.Errorf("replyCode(%q) = %d", s, code)
		}
	})
}
