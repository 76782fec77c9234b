package e2e

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// vsftpd is Debian's vsftpd running in the lab's server namespace with a
// private configuration.
type vsftpd struct {
	addr string // ServerAddr:port
	root string // the anonymous root; pub/ in it is writable
	log  string // the FTP protocol, as vsftpd logs it
	proc *netlab.Faithif
}

// startVsftpd runs vsftpd in the server namespace on ServerAddr:port, in
// the foreground: anonymous logins, the root a temporary directory whose
// pub/ anonymous users may write, the passive ports 50000-50099 (the
// passive address ServerAddr unless extra sets pasv_address), the FTP
// protocol logged to a file, no sandboxing that would take it out of the
// namespace. extra are more lines of vsftpd.conf. It is stopped, with its
// session processes, when the test ends.
func startVsftpd(t *testing.T, lab *netlab.Lab, port int, extra ...string) *vsftpd {
	t.Helper()
	bin, err := exec.LookPath("vsftpd")
	if err != nil {
		bin = "/usr/sbin/vsftpd"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("vsftpd not found (install it with 'make deps'): %v", err)
		}
	}
	ftpUser, err := user.Lookup("ftp")
	if err != nil {
		t.Fatalf("no user ftp (the vsftpd package makes it): %v", err)
	}
	uid, _ := strconv.Atoi(ftpUser.Uid)
	gid, _ := strconv.Atoi(ftpUser.Gid)
	dir := netlab.TempDir(t, "ftp")
	v := &vsftpd{addr: fmt.Sprintf("%s:%d", netlab.ServerAddr, port), root: filepath.Join(dir, "root"), log: filepath.Join(dir, "vsftpd.log")}
	empty := filepath.Join(dir, "empty")
	for _, d := range []string{v.root, filepath.Join(v.root, "pub"), empty} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(v.root, "pub"), uid, gid); err != nil {
		t.Fatal(err)
	}
	conf := []string{
		"listen=YES", "listen_ipv6=NO", "listen_address=" + netlab.ServerAddr, fmt.Sprintf("listen_port=%d", port),
		"background=NO", "anonymous_enable=YES", "local_enable=NO", "no_anon_password=YES",
		"anon_root=" + v.root, "write_enable=YES", "anon_upload_enable=YES", "anon_mkdir_write_enable=YES",
		"anon_other_write_enable=YES", "anon_umask=022", "ftp_username=ftp",
		"secure_chroot_dir=" + empty, "pasv_enable=YES", "pasv_min_port=50000", "pasv_max_port=50099",
		"port_enable=YES", "connect_from_port_20=YES", "seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO",
		"xferlog_enable=YES", "xferlog_std_format=NO", "log_ftp_protocol=YES", "vsftpd_log_file=" + v.log,
		"dual_log_enable=NO", "syslog_enable=NO", "tcp_wrappers=NO", "userlist_enable=NO",
		"idle_session_timeout=60", "data_connection_timeout=60", "accept_timeout=60", "connect_timeout=60",
		"max_clients=0", "max_per_ip=0", "dirmessage_enable=NO", "hide_ids=YES",
	}
	if !hasKey(extra, "pasv_address") {
		conf = append(conf, "pasv_address="+netlab.ServerAddr)
	}
	conf = append(conf, extra...)
	path := filepath.Join(dir, "vsftpd.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v.proc = lab.Start(t, netlab.StartSpec{NS: lab.Server, Env: []string{}, Argv: []string{bin, path}})
	t.Cleanup(func() {
		// Its session processes first (by pid, found through their
		// parents), then vsftpd itself.
		v.proc.ExpectExit()
		killDescendants(v.proc.Pid())
		v.proc.Stop()
	})
	// Ready once it greets.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := lab.Server.Dial(ctx, "tcp4", v.addr)
		cancel()
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "220") {
				break
			}
			err = fmt.Errorf("greeting %q, %v", line, rerr)
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(v.log)
			t.Fatalf("vsftpd on %s not ready: %v\nstderr: %s\nlog: %s", v.addr, err, v.proc.Stderr(), b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return v
}

func hasKey(lines []string, key string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, key+"=") {
			return true
		}
	}
	return false
}

// killDescendants kills the processes descended from pid, by pid, deepest
// first: vsftpd's session processes outlive it otherwise.
func killDescendants(pid int) {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so after ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				children[pp] = append(children[pp], p)
			}
		}
	}
	var kill func(int)
	kill = func(p int) {
		for _, c := range children[p] {
			kill(c)
			syscall.Kill(c, syscall.SIGKILL)
		}
	}
	kill(pid)
}

// protocol returns the commands vsftpd logged ("FTP command: ...").
func (v *vsftpd) protocol(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(v.log)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, l := range strings.Split(string(b), "\n") {
		if _, c, ok := strings.Cut(l, "FTP command: "); ok {
			cmds = append(cmds, c)
		}
	}
	return strings.Join(cmds, "\n")
}

// put writes a file into the FTP root, readable by the server.
func (v *vsftpd) put(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(v.root, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ftpURL is the URL of path on the FTP server behind the FAITH address.
func ftpURL(port int, path string) string {
	return fmt.Sprintf("ftp://[%s]:%d/%s", netlab.ServerFaithAddr, port, path)
}

// runClient runs an FTP client in the client namespace, bounded by 2
// minutes (a hang guard), and returns its output; it fails the test if
// the client fails.
func runClient(t *testing.T, lab *netlab.Lab, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := lab.Client.Run(ctx, name, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// sameFile checks that got has the bytes of want, by SHA-256.
func sameFile(t *testing.T, what string, want []byte, gotPath string) {
	t.Helper()
	got, err := os.ReadFile(gotPath)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes, sha256 %x; want %d bytes, sha256 %x", what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// ftpConn is a raw control connection from the client namespace.
type ftpConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialFTP(t *testing.T, lab *netlab.Lab, port int) *ftpConn {
	t.Helper()
	return dialFTPFrom(t, lab, netlab.ClientAddr, port)
}

// dialFTPFrom opens a control connection from the client namespace's
// address from.
func dialFTPFrom(t *testing.T, lab *netlab.Lab, from string, port int) *ftpConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := lab.Client.DialFrom(ctx, "tcp6", net.JoinHostPort(from, "0"), netlab.FaithHostPort(netlab.ServerAddr, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute)) // a hang guard
	f := &ftpConn{t: t, c: c, r: bufio.NewReader(c)}
	f.expect("220")
	return f
}

// reply reads one whole reply.
func (f *ftpConn) reply() string {
	f.t.Helper()
	var all strings.Builder
	for first := ""; ; {
		line, err := f.r.ReadString('\n')
		if err != nil {
			f.t.Fatalf("reading a reply: %v (so far %q)", err, all.String())
		}
		all.WriteString(line)
		if first == "" {
			first = line
			if len(line) < 4 || line[3] != '-' {
				return all.String()
			}
			continue
		}
		if strings.HasPrefix(line, first[:3]+" ") {
			return all.String()
		}
	}
}

// expect reads a reply and checks that it starts with want.
func (f *ftpConn) expect(want string) string {
	f.t.Helper()
	r := f.reply()
	if !strings.HasPrefix(r, want) {
		f.t.Fatalf("reply %q, want %q...", r, want)
	}
	return r
}

// epsvPort returns the port of a 229 reply.
func epsvPort(t *testing.T, r string) int {
	t.Helper()
	port, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(r[strings.Index(r, "|||")+3:]), "|)"))
	if err != nil {
		t.Fatalf("229 %q: %v", r, err)
	}
	return port
}

// send writes s as it is.
func (f *ftpConn) send(s string) {
	f.t.Helper()
	if _, err := f.c.Write([]byte(s)); err != nil {
		f.t.Fatal(err)
	}
}

// TestFTP relays FTP between curl and lftp in the IPv6-only client and
// Debian's vsftpd in the IPv4-only server: passive and active transfers
// byte for byte, a listing, 20 files on one control connection, a bounce
// attempt refused, a command split over two segments, another host's
// connection to a passive port announced to the client refused, and a
// second FTP port (--ftp-ports) whose server names another passive address
// (as behind NAT), which works.
func TestFTP(t *testing.T) {
	for _, c := range []string{"curl", "lftp"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatalf("%s not found (install it with 'make deps'): %v", c, err)
		}
	}
	lab, f := startLab(t, "--keepfaith", "--ftp-ports", "21,2121")
	srv := startVsftpd(t, lab, 21)
	dir := netlab.TempDir(t, "ftpc")
	rng := rand.New(rand.NewPCG(16, 21))
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	srv.put(t, "pub/big.bin", big)

	t.Run("PassiveDownload", func(t *testing.T) {
		out := filepath.Join(dir, "down.bin")
		runClient(t, lab, "curl", "-sS", "--fail", "--max-time", "60", "-o", out, ftpURL(21, "pub/big.bin"))
		sameFile(t, "curl passive download", big, out)
	})
	t.Run("PassiveUpload", func(t *testing.T) {
		in := filepath.Join(dir, "up.bin")
		if err := os.WriteFile(in, big[:2<<20+7], 0o644); err != nil {
			t.Fatal(err)
		}
		runClient(t, lab, "curl", "-sS", "--fail", "--max-time", "60", "-T", in, ftpURL(21, "pub/up.bin"))
		sameFile(t, "curl passive upload", big[:2<<20+7], filepath.Join(srv.root, "pub/up.bin"))
	})
	t.Run("ActiveDownload", func(t *testing.T) {
		out := filepath.Join(dir, "active.bin")
		runClient(t, lab, "curl", "-sS", "--fail", "--max-time", "60", "--ftp-port", "-", "-o", out, ftpURL(21, "pub/big.bin"))
		sameFile(t, "curl active (EPRT) download", big, out)
		out = filepath.Join(dir, "active-lftp.bin")
		runClient(t, lab, "lftp", "-c", fmt.Sprintf("set ftp:passive-mode off; set net:max-retries 1; open %s; get pub/big.bin -o %s", ftpURL(21, ""), out))
		sameFile(t, "lftp active (EPRT) download", big, out)
	})
	t.Run("Listing", func(t *testing.T) {
		out := runClient(t, lab, "curl", "-sS", "--fail", "--max-time", "60", ftpURL(21, "pub/"))
		if !strings.Contains(out, "big.bin") || !strings.Contains(out, "up.bin") {
			t.Fatalf("curl's listing of pub/ does not name big.bin and up.bin:\n%s", out)
		}
		out = runClient(t, lab, "lftp", "-c", fmt.Sprintf("set net:max-retries 1; open %s; cls -1 pub/", ftpURL(21, "")))
		if !strings.Contains(out, "big.bin") {
			t.Fatalf("lftp's listing of pub/ does not name big.bin:\n%s", out)
		}
	})
	t.Run("TwentyFilesOneSession", func(t *testing.T) {
		want := map[string][]byte{}
		for i := range 20 {
			name := fmt.Sprintf("f%02d.bin", i)
			want[name] = big[i*1000 : i*1000+1+i*7919]
			srv.put(t, "pub/"+name, want[name])
		}
		before := mustShow(t, lab)
		got := filepath.Join(dir, "twenty")
		if err := os.Mkdir(got, 0o755); err != nil {
			t.Fatal(err)
		}
		runClient(t, lab, "lftp", "-c", fmt.Sprintf("set net:max-retries 1; open %s; cd pub; mget -O %s f*.bin", ftpURL(21, ""), got))
		for name, b := range want {
			sameFile(t, "lftp mget "+name, b, filepath.Join(got, name))
		}
		after := mustShow(t, lab)
		sessions := after.FTPCounters.Sessions - before.FTPCounters.Sessions
		passive := after.FTPCounters.Passive - before.FTPCounters.Passive
		if sessions != 1 || passive != 21 {
			t.Errorf("lftp mget of 20 files: %d FTP sessions, %d passive data connections; want 1, and 21 (the listing for f*.bin, then the files)", sessions, passive)
		}
	})
	t.Run("BounceRefused", func(t *testing.T) {
		before := mustShow(t, lab)
		c := dialFTP(t, lab, 21)
		c.send("USER anonymous\r\n")
		c.expect("230")
		// Another host of the client's network, and the client's own
		// privileged port.
		c.send("EPRT |2|2001:db8:1::99|40000|\r\n")
		c.expect("504 EPRT refused")
		c.send("EPRT |2|" + netlab.ClientAddr + "|25|\r\n")
		c.expect("504 EPRT refused")
		c.send("PORT 192,0,2,1,156,64\r\n")
		c.expect("502 PORT cannot carry an IPv6 address")
		c.send("QUIT\r\n")
		c.expect("221")
		after := mustShow(t, lab)
		if n := after.FTPCounters.Bounces - before.FTPCounters.Bounces; n != 2 {
			t.Errorf("ftp_bounces_refused_total grew by %d, want 2", n)
		}
		if strings.Contains(srv.protocol(t), "156,64") {
			t.Errorf("the server got a PORT for the bounce attempt:\n%s", srv.protocol(t))
		}
	})
	t.Run("SplitAndPipelined", func(t *testing.T) {
		c := dialFTP(t, lab, 21)
		// A whole command and the start of EPSV in one segment; the rest
		// only once the first command's reply is back, so certainly in a
		// segment of its own.
		c.send("USER anonymous\r\nEP")
		c.expect("230")
		c.send("SV\r\n")
		port := epsvPort(t, c.expect("229 Entering Extended Passive Mode (|||"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dc, err := lab.Client.Dial(ctx, "tcp6", netlab.FaithHostPort(netlab.ServerAddr, port))
		if err != nil {
			t.Fatalf("connecting to the EPSV port: %v", err)
		}
		c.send("RE")
		c.send("TR pub/f01.bin\r\n")
		c.expect("150")
		dc.SetDeadline(time.Now().Add(time.Minute))
		var b bytes.Buffer
		b.ReadFrom(dc)
		dc.Close()
		if !bytes.Equal(b.Bytes(), big[1000:1000+1+7919]) {
			t.Errorf("RETR after a split EPSV: %d bytes", b.Len())
		}
		c.expect("226")
		// Three commands in one segment: the relay's refusal comes in its
		// turn between the server's replies.
		c.send("NOOP\r\nPASV\r\nNOOP\r\n")
		c.expect("200")
		c.expect("502 PASV cannot carry an IPv6 address")
		c.expect("200")
		c.send("QUIT\r\n")
		c.expect("221")
		// The server saw PASV for the client's EPSV, never EPSV or EPRT.
		p := srv.protocol(t)
		if !strings.Contains(p, `"PASV"`) || !strings.Contains(p, `"PORT `) {
			t.Errorf("the server's log has no PASV or no PORT:\n%s", p)
		}
		if strings.Contains(p, "EPSV") || strings.Contains(p, "EPRT") {
			t.Errorf("the server got EPSV or EPRT:\n%s", p)
		}
	})
	t.Run("PassivePortNotForOthers", func(t *testing.T) {
		// Another host of the client's LAN connects to the port announced
		// to the client first: it is reset, and the client's download is
		// its own, whole (vsftpd's pasv_promiscuous=NO sees the relay's
		// address either way, so only the relay can tell them apart).
		thief, err := lab.AddClientAddrs(netip.MustParseAddr("2001:db8:1::16:1"), 1)
		if err != nil {
			t.Fatal(err)
		}
		before := mustShow(t, lab)
		c := dialFTP(t, lab, 21)
		c.send("USER anonymous\r\n")
		c.expect("230")
		c.send("TYPE I\r\n")
		c.expect("200")
		c.send("EPSV\r\n")
		port := epsvPort(t, c.expect("229 Entering Extended Passive Mode (|||"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		target := netlab.FaithHostPort(netlab.ServerAddr, port)
		if tc, err := lab.Client.DialFrom(ctx, "tcp6", net.JoinHostPort(thief[0].String(), "0"), target); !errors.Is(err, syscall.ECONNREFUSED) {
			if tc != nil {
				tc.Close()
			}
			t.Fatalf("another host's connection to the EPSV port: %v, want ECONNREFUSED", err)
		}
		dc, err := lab.Client.DialFrom(ctx, "tcp6", net.JoinHostPort(netlab.ClientAddr, "0"), target)
		if err != nil {
			t.Fatalf("the client's connection to the EPSV port: %v", err)
		}
		c.send("RETR pub/big.bin\r\n")
		c.expect("150")
		dc.SetDeadline(time.Now().Add(time.Minute))
		var b bytes.Buffer
		b.ReadFrom(dc)
		dc.Close()
		c.expect("226")
		if sha256.Sum256(b.Bytes()) != sha256.Sum256(big) {
			t.Errorf("the client's RETR: %d bytes, not big.bin's %d", b.Len(), len(big))
		}
		c.send("QUIT\r\n")
		c.expect("221")
		after := mustShow(t, lab)
		if n := after.ClaimedFlowsRefused - before.ClaimedFlowsRefused; n != 1 {
			t.Errorf("claimed_flows_refused_total grew by %d, want 1", n)
		}
	})
	t.Run("SecondPortForeignPASV", func(t *testing.T) {
		// As behind NAT: the 227 names another address; the relay
		// connects to the server's own at the port named.
		nat := startVsftpd(t, lab, 2121, "pasv_address=203.0.113.9")
		nat.put(t, "pub/nat.bin", big[:100000])
		out := filepath.Join(dir, "nat.bin")
		runClient(t, lab, "curl", "-sS", "--fail", "--max-time", "60", "--interface", netlab.ClientAddr, "-o", out, ftpURL(2121, "pub/nat.bin"))
		sameFile(t, "curl passive download, pasv_address=203.0.113.9", big[:100000], out)
		if !strings.Contains(nat.protocol(t), `"PASV"`) {
			t.Errorf("the server got no PASV:\n%s", nat.protocol(t))
		}
	})

	st := mustShow(t, lab)
	if fmt.Sprint(st.FTPPorts) != "[21 2121]" {
		t.Errorf("show --json ftp_ports %v, want [21 2121]", st.FTPPorts)
	}
	fc := st.FTPCounters
	t.Logf("FTP counters: %+v", fc)
	if fc.Translated == 0 || fc.Passive == 0 || fc.Active < 2 || fc.Bounces < 2 || fc.Refused < 2 || fc.TLS != 0 {
		t.Errorf("FTP counters %+v: want translations, passive and active data connections, bounces and refusals", fc)
	}
	if line, ok := findLine(f.Stderr(), "ftp: EPRT refused", "FTP bounce"); !ok {
		t.Errorf("no log line for the refused EPRT")
	} else {
		t.Log(line)
	}
}

// TestFTPActiveLatency: with a 100 ms RTT between the client and the
// router, curl's active (EPRT) downloads all work: vsftpd sends 150, the
// data and 226 as soon as it has connected to the relay, and the relay
// holds them until its data connection to the client is made, or curl,
// still waiting for that connection, would fail ("Ctrl conn has data
// while waiting for data conn").
func TestFTPActiveLatency(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl not found (install it with 'make deps'): %v", err)
	}
	lab, _ := startLab(t, "--keepfaith")
	srv := startVsftpd(t, lab, 21)
	want := []byte("active mode across a slow link\n")
	srv.put(t, "pub/small.txt", want)
	t.Logf("the client's RTT: %s", lab.DelayClient(t, 100*time.Millisecond))
	dir := netlab.TempDir(t, "ftplat")
	for i := range 10 {
		out := filepath.Join(dir, fmt.Sprintf("small%d.txt", i))
		runClient(t, lab, "curl", "-sS", "--fail", "--max-time", "60", "--ftp-port", "-", "-o", out, ftpURL(21, "pub/small.txt"))
		sameFile(t, fmt.Sprintf("curl active download %d", i), want, out)
	}
	if st := mustShow(t, lab); st.FTPCounters.Active != 10 {
		t.Errorf("ftp_data_connections_total{mode=active} = %d, want 10", st.FTPCounters.Active)
	}
}

// TestFTPAuthTLS: once a session's control connection turns to TLS (AUTH
// TLS, which vsftpd answers with 234) the relay copies it as plain bytes
// and says so once. lftp's encrypted listing still works, as vsftpd
// answers its EPSV itself with a port the client reaches as an ordinary
// flow; curl's encrypted EPRT, which the relay can no longer translate,
// gets vsftpd's error at once (curl 7.88 then fails to fall back to PORT
// with its IPv6 address and waits for a reply to a command it never sent,
// until vsftpd ends the idle session: 5 s here).
func TestFTPAuthTLS(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	dir := netlab.TempDir(t, "ftptls")
	cert, key := selfSigned(t, dir)
	srv := startVsftpd(t, lab, 21, "ssl_enable=YES", "rsa_cert_file="+cert, "rsa_private_key_file="+key,
		"allow_anon_ssl=YES", "force_anon_logins_ssl=NO", "force_anon_data_ssl=NO", "require_ssl_reuse=NO",
		"ssl_sslv2=NO", "ssl_sslv3=NO", "ssl_tlsv1=YES", "ssl_ciphers=HIGH", "idle_session_timeout=5")
	srv.put(t, "pub/secret.txt", []byte("encrypted all the way\n"))

	out := runClient(t, lab, "lftp", "-c", fmt.Sprintf("set ftp:ssl-force true; set ftp:ssl-allow-anonymous true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; set net:max-retries 1; open %s; cls -1 pub/", ftpURL(21, "")))
	if !strings.Contains(out, "secret.txt") {
		t.Fatalf("lftp's encrypted listing does not name secret.txt:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard
	defer cancel()
	out, err := lab.Client.Run(ctx, "curl", "-v", "--trace-time", "-sS", "--ssl-reqd", "-k", "--ftp-port", "-", ftpURL(21, "pub/secret.txt"))
	if err == nil || ctx.Err() != nil || !strings.Contains(out, "< 500 Bad EPRT protocol") {
		t.Fatalf("curl's encrypted active download: %v\n%s\nwant curl to fail, having read vsftpd's 500 to its EPRT", err, out)
	}

	st := waitStatus(t, lab, 10*time.Second, func(st *netlab.Status) bool { return st.FlowsOpen == 0 })
	if st.FTPCounters.TLS != 2 || st.FTPCounters.Translated != 0 {
		t.Errorf("FTP counters %+v: want 2 TLS sessions, nothing translated", st.FTPCounters)
	}
	if n := countLines(f.Stderr(), "ftp: AUTH TLS"); n != 2 {
		t.Errorf("%d AUTH TLS log lines, want one per session (2):\n%s", n, f.Stderr())
	}
	// vsftpd logs what it decrypted: the commands came as the clients
	// sent them, untranslated.
	p := srv.protocol(t)
	if !strings.Contains(p, `"EPSV"`) || !strings.Contains(p, `"EPRT |2|`+netlab.ClientAddr+`|`) || strings.Contains(p, `"PASV"`) || strings.Contains(p, `"PORT `) {
		t.Errorf("vsftpd did not get EPSV and EPRT untranslated:\n%s", p)
	}
}

// selfSigned writes a self-signed RSA certificate and its key for
// ServerAddr into dir and returns their paths.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := rsa.GenerateKey(crand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: netlab.ServerAddr},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(netlab.ServerAddr)},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}
