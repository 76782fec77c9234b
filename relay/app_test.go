package relay

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// lineApp is an App that passes one line from the client on in upper case,
// then hands the flow back (ErrPlain) or ends it.
type lineApp struct {
	flows chan *AppFlow
	plain bool
}

func (a *lineApp) Relay(ctx context.Context, f *AppFlow) (End, error) {
	a.flows <- f
	line, err := bufio.NewReader(f.Client).ReadString('\n') // no more is sent before the answer
	if err != nil {
		f.Client.Abort()
		f.Server.Abort()
		return EndClientReset, err
	}
	if _, err := io.WriteString(f.Server, strings.ToUpper(line)); err != nil {
		return EndServerReset, err
	}
	if a.plain {
		return EndClosed, ErrPlain
	}
	f.Client.Close()
	f.Server.Close()
	return EndClosed, nil
}

// TestAppTakesTheCopyStep: a flow to an App's port is set up as any, then
// carried by the App; ErrPlain hands the rest back to the copy loop, which
// counts on in the same flow.
func TestAppTakesTheCopyStep(t *testing.T) {
	var out syncBuffer
	var events []string
	srvLn, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srvLn.Close()
	r := testRelay(t, &out, srvLn.Addr().String(), &events)
	app := &lineApp{flows: make(chan *AppFlow, 1), plain: true}
	r.cfg.Apps = map[uint16]App{21: app}

	q := newConnRequest(t, 4000)
	q.dest = netip.MustParseAddrPort("[2001:db8:46::c000:202]:21")
	client := q.peer
	go r.Handle(q)
	srv, err := srvLn.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var f *AppFlow
	select {
	case f = <-app.flows:
	case <-time.After(10 * time.Second):
		t.Fatal("the App was not given the flow")
	}
	if f.ClientAddr != q.client || f.Dst6 != q.dest || f.Dst4.Addr() != netip.MustParseAddr("192.0.2.2") || !f.Src4.Addr().Is4() || f.Log == nil {
		t.Errorf("AppFlow %+v", f)
	}

	client.SetDeadline(time.Now().Add(10 * time.Second))
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	client.Write([]byte("auth tls\n"))
	rd := bufio.NewReader(srv)
	if line, err := rd.ReadString('\n'); err != nil || line != "AUTH TLS\n" {
		t.Fatalf("the server read %q, %v; want the App's AUTH TLS", line, err)
	}
	// Handed back: plain bytes both ways, FIN by FIN.
	client.Write([]byte("raw"))
	client.CloseWrite()
	if b, err := io.ReadAll(rd); err != nil || string(b) != "raw" {
		t.Fatalf("after ErrPlain the server read %q, %v", b, err)
	}
	fl := r.Flows()
	if len(fl) != 1 || fl[0].BytesClientToServer != 12 || fl[0].State != FlowHalfClosedByClient {
		t.Errorf("Flows %+v; want one, 12 bytes from the client, half closed by it", fl)
	}
	srv.Write([]byte("back"))
	srv.CloseWrite()
	if b, err := io.ReadAll(client); err != nil || string(b) != "back" {
		t.Fatalf("the client read %q, %v", b, err)
	}
	if line := waitLine(t, &out, "flow finished"); !strings.Contains(line, "end=closed bytes_client_to_server=12 bytes_server_to_client=4") {
		t.Errorf("log: %s", line)
	}
	if c := r.Counters(); c.BytesIn != 12 || c.BytesOut != 4 || c.FlowEnds["closed"] != 1 {
		t.Errorf("bytes %d, %d, ended %v", c.BytesIn, c.BytesOut, c.FlowEnds)
	}

	// Another port is copied without the App.
	q2 := newConnRequest(t, 4001)
	client2 := q2.peer
	go r.Handle(q2)
	srv2, err := srvLn.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	client2.Write([]byte("as is\n"))
	srv2.SetDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(srv2).ReadString('\n'); err != nil || line != "as is\n" {
		t.Fatalf("port 80: the server read %q, %v", line, err)
	}
	select {
	case <-app.flows:
		t.Error("the App was given a flow to port 80")
	default:
	}
}

// waitLine waits until out has a line containing s, and returns it.
func waitLine(t *testing.T, out *syncBuffer, s string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range out.allLines() {
			if strings.Contains(l, s) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log", s)
		}
		time.Sleep(time.Millisecond)
	}
}
