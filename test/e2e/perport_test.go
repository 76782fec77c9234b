package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/faithif/faithif/test/netlab"
)

// Per-port options (issue 16): reserved source ports (faithd -p), urgent
// data, and the PROXY protocol v2 header.

// peerPortServer answers each connection with the server's view of it,
// "PORT reserved" or "PORT unreserved": the peer's source port, and whether
// it is a reserved one (600-1023) as rlogind and rshd require.
func peerPortServer(t *testing.T, lab *netlab.Lab) int {
	t.Helper()
	l, port := listenServer(t, lab)
	serve(t, l, func(c *net.TCPConn) {
		p := c.RemoteAddr().(*net.TCPAddr).Port
		what := "unreserved"
		if p >= 600 && p <= 1023 {
			what = "reserved"
		}
		fmt.Fprintf(c, "%d %s\n", p, what)
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	return port
}

// askPeerPort connects through faithif to port and returns the server's
// answer.
func askPeerPort(t *testing.T, ctx context.Context, lab *netlab.Lab, port int) string {
	t.Helper()
	c := mustDialServer(t, ctx, lab, port)
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(20 * time.Second)) // hang guard
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from port %d: %v", port, err)
	}
	return strings.TrimSpace(string(b))
}

// TestPrivilegedPorts: with --privileged-ports naming a destination port,
// its IPv4 connections come from a reserved source port (600-1023), each a
// different one while they are open, as rresvport binds them; a port not
// named gets an ordinary ephemeral one.
func TestPrivilegedPorts(t *testing.T) {
	lab := netlab.New(t)
	priv := peerPortServer(t, lab)
	plain := peerPortServer(t, lab)
	f := lab.StartFaithif(t, "--keepfaith", "--log-level", "debug", "--privileged-ports", strconv.Itoa(priv))
	ctx := testCtx(t, 60*time.Second)

	// Three at once: each needs a port of its own.
	var conns []*net.TCPConn
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		c := mustDialServer(t, ctx, lab, priv)
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		ans := strings.TrimSpace(string(b))
		if !strings.HasSuffix(ans, " reserved") {
			t.Errorf("privileged port %d: the server saw %q; want a reserved source port (600-1023)", priv, ans)
		}
		if seen[ans] {
			t.Errorf("two open flows from the same source port: %s", ans)
		}
		seen[ans] = true
	}
	if ans := askPeerPort(t, ctx, lab, plain); !strings.HasSuffix(ans, " unreserved") {
		t.Errorf("port %d, not listed: the server saw %q; want an ephemeral source port", plain, ans)
	}
	if _, ok := findLine(f.Stderr(), "msg=ready", fmt.Sprintf("privileged_ports=[%d]", priv)); !ok {
		t.Errorf("the ready line does not say privileged_ports=[%d]:\n%s", priv, f.Stderr())
	}
	if st, err := lab.Show(); err != nil || !slices.Equal(st.PrivilegedPorts, []int{priv}) || len(st.ProxyProtocolPorts) != 0 {
		t.Errorf("show: privileged_ports %v, proxy_protocol_ports %v (%v); want [%d], []", st.PrivilegedPorts, st.ProxyProtocolPorts, err, priv)
	}
	if _, ok := f.WaitLog(10*time.Second, func(l string) bool {
		return hasAll(l, `msg="dial started"`, "reserved_port=true")
	}); !ok {
		t.Errorf("no debug line 'dial started ... reserved_port=true'")
	}
}

// TestPrivilegedPortsBadFlag: a bad --privileged-ports exits 2 naming the
// flag, and creates nothing.
func TestPrivilegedPortsBadFlag(t *testing.T) {
	lab := netlab.New(t)
	for _, tc := range []struct{ flag, value, want string }{
		{"--privileged-ports", "513,rsh", `--privileged-ports: "rsh" is not a port number`},
		{"--proxy-protocol-ports", "0", "--proxy-protocol-ports: port 0: must be between 1 and 65535"},
	} {
		r := lab.Faithif("create", "faith0", "--prefix", netlab.FaithPrefix, "-f", tc.flag, tc.value)
		if r.ExitCode != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("create %s %s: exit %d, stderr %q; want 2 and %q", tc.flag, tc.value, r.ExitCode, r.Stderr, tc.want)
		}
	}
	if hasLink(t, lab, "faith0") {
		t.Errorf("faith0 exists after a refused create")
	}
}

// sendOOB sends b on c, its last byte as urgent data (send(2) with
// MSG_OOB).
func sendOOB(c *net.TCPConn, b []byte) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_OOB, nil)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

// urgentPending reports whether c has urgent data waiting out of line:
// recv(MSG_OOB) returns it, or EWOULDBLOCK if it is announced but not yet
// there; EINVAL says there is none.
func urgentPending(c *net.TCPConn) (bool, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return false, err
	}
	var rerr error
	var n int
	raw.Control(func(fd uintptr) {
		b := make([]byte, 1)
		n, _, rerr = unix.Recvfrom(int(fd), b, unix.MSG_OOB|unix.MSG_DONTWAIT)
	})
	switch {
	case rerr == nil && n > 0, errors.Is(rerr, unix.EAGAIN):
		return true, nil
	case errors.Is(rerr, unix.EINVAL):
		return false, nil
	}
	return false, rerr
}

// sendWithUrgent sends before, then one urgent byte (MSG_OOB), then
// after, then half-closes.
func sendWithUrgent(c *net.TCPConn, before string, urgent byte, after string) error {
	if _, err := c.Write([]byte(before)); err != nil {
		return err
	}
	if err := sendOOB(c, []byte{urgent}); err != nil {
		return fmt.Errorf("send MSG_OOB: %w", err)
	}
	if _, err := c.Write([]byte(after)); err != nil {
		return err
	}
	return c.CloseWrite()
}

// TestUrgentData: urgent data (MSG_OOB) sent by either side arrives in
// line, in its place, with every byte, at a receiver that reads with plain
// read(2) and has SO_OOBINLINE off, and no urgent mark is left for it:
// gVisor's TCP neither sends urgent data nor reports what it receives, so
// the relay cannot pass the mark on in either direction (README, "Urgent
// data").
func TestUrgentData(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, 60*time.Second)
	const before, after = "before the urgent byte|", "|after it"
	want := before + "!" + after

	type got struct {
		data    []byte
		urgent  bool
		err     error
		urgErr  error
		srvSend error
	}
	res := make(chan got, 1)
	l, port := listenServer(t, lab)
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
		var g got
		// Client to server first: read it all, then ask for urgent data.
		g.data, g.err = io.ReadAll(c)
		g.urgent, g.urgErr = urgentPending(c)
		// Then server to client.
		g.srvSend = sendWithUrgent(c, before, '!', after)
		res <- g
		io.Copy(io.Discard, c)
	})

	c := mustDialServer(t, ctx, lab, port)
	c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
	if err := sendWithUrgent(c, before, '!', after); err != nil {
		t.Fatalf("client: %v", err)
	}
	back, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("client: read: %v", err)
	}
	urgent, urgErr := urgentPending(c)
	g := <-res

	if g.err != nil || g.srvSend != nil || g.urgErr != nil || urgErr != nil {
		t.Fatalf("server: read %v, send %v, recv MSG_OOB %v; client: recv MSG_OOB %v", g.err, g.srvSend, g.urgErr, urgErr)
	}
	if !bytes.Equal(g.data, []byte(want)) {
		t.Errorf("client to server: the server read %q; want %q (the urgent byte in line)", g.data, want)
	}
	if !bytes.Equal(back, []byte(want)) {
		t.Errorf("server to client: the client read %q; want %q (the urgent byte in line)", back, want)
	}
	if g.urgent || urgent {
		t.Errorf("urgent data left out of line: at the server %v, at the client %v; want none (delivered in line)", g.urgent, urgent)
	}
}

// nginxProxyConf is an nginx configuration for the server namespace:
// PORT with proxy_protocol, PLAIN without; the access log has what the
// PROXY header said and who connected.
const nginxProxyConf = `
pid DIR/nginx.pid;
worker_processes 1;
events { worker_connections 64; }
http {
	log_format pp 'pp=$proxy_protocol_addr pp_port=$proxy_protocol_port pp_dst=$proxy_protocol_server_addr pp_dst_port=$proxy_protocol_server_port remote=$remote_addr port=$server_port status=$status';
	access_log DIR/access.log pp;
	client_body_temp_path DIR/body;
	proxy_temp_path DIR/proxy;
	fastcgi_temp_path DIR/fastcgi;
	uwsgi_temp_path DIR/uwsgi;
	scgi_temp_path DIR/scgi;
	server {
		listen 192.0.2.2:80 proxy_protocol;
		listen 192.0.2.2:8080;
		location / { return 200 "hello from nginx\n"; }
	}
}
`

// TestProxyProtocol: with --proxy-protocol-ports 80, Debian's nginx,
// listening with proxy_protocol in the IPv4-only namespace, logs the IPv6
// client's address and port and the FAITH address and port it connected to
// ($proxy_protocol_addr and friends) for a curl from the client; on 8080,
// not listed, nginx (listening without proxy_protocol) gets no header and
// serves the page as usual.
func TestProxyProtocol(t *testing.T) {
	lab := netlab.New(t)
	dir := netlab.TempDir(t, "nginx")
	conf := filepath.Join(dir, "nginx.conf")
	writeFile(t, conf, strings.ReplaceAll(nginxProxyConf, "DIR", dir))
	nginx := lab.Start(t, netlab.StartSpec{NS: lab.Server, Env: []string{},
		Argv: []string{"nginx", "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}})
	ctx := testCtx(t, 60*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; { // hang guard
		c, err := lab.Server.Dial(ctx, "tcp4", netlab.ServerAddr+":80")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx not listening: %v\n%s\n%s", err, b, nginx.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	f := lab.StartFaithif(t, "--keepfaith", "--proxy-protocol-ports", "80")
	if _, ok := findLine(f.Stderr(), "msg=ready", "proxy_protocol_ports=[80]"); !ok {
		t.Errorf("the ready line does not say proxy_protocol_ports=[80]:\n%s", f.Stderr())
	}
	if st, err := lab.Show(); err != nil || !slices.Equal(st.ProxyProtocolPorts, []int{80}) {
		t.Errorf("show: proxy_protocol_ports %v (%v); want [80]", st.ProxyProtocolPorts, err)
	}

	curl := func(port, lport int) string {
		t.Helper()
		out, err := lab.Client.Run(ctx, "curl", "-sS", "--max-time", "20", "--local-port", strconv.Itoa(lport),
			fmt.Sprintf("http://%s/", serverAddr(port)))
		if err != nil {
			t.Fatalf("curl port %d: %v", port, err)
		}
		return out
	}
	p80, p8080 := clientPort(), clientPort()
	if out := curl(80, p80); out != "hello from nginx\n" {
		t.Errorf("port 80: %q", out)
	}
	if out := curl(8080, p8080); out != "hello from nginx\n" {
		t.Errorf("port 8080: %q", out)
	}

	var log string
	for deadline := time.Now().Add(10 * time.Second); ; { // nginx writes the line after the answer
		b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		log = string(b)
		if strings.Count(log, "\n") >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	want80 := fmt.Sprintf("pp=%s pp_port=%d pp_dst=%s pp_dst_port=80 remote=%s port=80 status=200",
		netlab.ClientAddr, p80, netlab.ServerFaithAddr, netlab.RouterAddr4)
	if !strings.Contains(log, want80) {
		t.Errorf("nginx's access log:\n%s\nwant a line %q: the IPv6 client's address and port from the PROXY header", log, want80)
	}
	want8080 := fmt.Sprintf("pp=- pp_port=- pp_dst=- pp_dst_port=- remote=%s port=8080 status=200", netlab.RouterAddr4)
	if !strings.Contains(log, want8080) {
		t.Errorf("nginx's access log:\n%s\nwant a line %q: no PROXY header on a port not listed", log, want8080)
	}
}
