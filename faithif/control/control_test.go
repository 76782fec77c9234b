package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/flows"
	"github.com/faithif/faithif/faithif/status"
	"github.com/faithif/faithif/relay"
)

type fakeController struct {
	keep      atomic.Bool
	destroyed atomic.Bool
	owner     string
	// reloadedFrom is the file the last Reload was given.
	reloadedFrom atomic.Pointer[string]
	name         string                       // "": faith0
	flows        []relay.FlowInfo             // what Flows lists
	filter       atomic.Pointer[flows.Filter] // the last filter Flows was given
}

func (f *fakeController) Flows(filter flows.Filter) flows.Table {
	f.filter.Store(&filter)
	name := f.name
	if name == "" {
		name = "faith0"
	}
	return flows.Build(name, f.flows, filter)
}

func (f *fakeController) Status() status.Status {
	return status.Status{Name: "faith0", PID: 4242, Owner: f.owner, KeepFaith: f.keep.Load()}
}
func (f *fakeController) SetKeepFaith(v bool)   { f.keep.Store(v) }
func (f *fakeController) Destroy(time.Duration) { f.destroyed.Store(true) }
func (f *fakeController) Reload(file string) error {
	if file == "" {
		return errors.New("no rules file")
	}
	f.reloadedFrom.Store(&file)
	return nil
}

func TestControlSocket(t *testing.T) {
	d := faithif.RunDir(t.TempDir())
	path := d.SocketPath("faith0")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fc := &fakeController{}
	srv, err := Listen(path, fc, log)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("control socket mode = %v, %v; want a socket with 0600", fi.Mode(), err)
	}
	names, _ := d.Instances()
	if len(names) != 1 || names[0] != "faith0" {
		t.Fatalf("Instances() = %v; want [faith0]", names)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := Client{Path: path}
	if st, err := c.SetKeepFaith(ctx, true); err != nil || !st.KeepFaith || !fc.keep.Load() {
		t.Fatalf("SetKeepFaith = %+v, %v; want keepfaith on", st, err)
	}
	if _, err := c.Reload(ctx); err == nil || err.Error() != "no rules file" {
		t.Fatalf("Reload = %v; want the instance's error passed back", err)
	}
	if _, err := c.Destroy(ctx, time.Second); err != nil {
		t.Fatalf("Destroy = %v", err)
	}
	// The answer goes out first, then the instance is destroyed.
	for deadline := time.Now().Add(5 * time.Second); !fc.destroyed.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Destroy answered but the instance was not destroyed")
		}
	}

	// A second instance for the same name must not steal a live socket.
	if _, err := Listen(path, fc, log); !errors.Is(err, ErrRunning) {
		t.Fatalf("Listen on a live socket = %v; want ErrRunning", err)
	}
	srv.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still there after Close: %v", err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Status with no instance = %v; want ErrNotRunning", err)
	}
}

func TestControlSocketReplacesStale(t *testing.T) {
	path := faithif.RunDir(t.TempDir()).SocketPath("faith3")
	// A socket file nobody listens on, as a crashed instance leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	srv, err := Listen(path, &fakeController{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("Listen over a stale socket = %v; want it replaced", err)
	}
	go srv.Serve()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := (Client{Path: path}).Status(ctx); err != nil || st.Name != "faith0" {
		t.Fatalf("Status through the new socket = %+v, %v", st, err)
	}
}

// endless is a reader that never ends: what a huge request looks like to
// the server. It counts what was read from it.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.n += int64(len(p))
	return len(p), nil
}

// paddedRequest returns a valid status request of exactly size bytes.
func paddedRequest(t *testing.T, size int) []byte {
	t.Helper()
	head := `{"op":"status","pad":"`
	tail := `"}`
	b := []byte(head + strings.Repeat("x", size-len(head)-len(tail)) + tail)
	if len(b) != size {
		t.Fatalf("padded request of %d bytes, want %d", len(b), size)
	}
	return b
}

func TestRequestCap(t *testing.T) {
	// At the cap: read.
	if req, err := readRequest(bytes.NewReader(paddedRequest(t, MaxRequest))); err != nil || req.Op != "status" {
		t.Fatalf("request of MaxRequest bytes = %+v, %v; want it read", req, err)
	}
	// Just over: refused.
	if _, err := readRequest(bytes.NewReader(paddedRequest(t, MaxRequest+1))); !errors.Is(err, errTooLarge) {
		t.Fatalf("request of MaxRequest+1 bytes: %v; want errTooLarge", err)
	}
	// Far over (it never ends): refused, having read no more than the
	// cap, so memory does not grow with the request.
	src := &endless{}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readRequest(io.MultiReader(strings.NewReader(`{"op":"status","pad":"`), src))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("endless request: %v; want errTooLarge", err)
	}
	if src.n > MaxRequest {
		t.Errorf("read %d bytes of an endless request; want at most %d", src.n, MaxRequest)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*MaxRequest {
		t.Errorf("reading an endless request allocated %d bytes; want at most %d", alloc, 4*MaxRequest)
	}
	// A small request followed by more data than the cap: the request
	// counts, not what the client sends after it.
	if req, err := readRequest(io.MultiReader(strings.NewReader(`{"op":"reload"}`), &endless{})); err != nil || req.Op != "reload" {
		t.Errorf("small request then more = %+v, %v; want the request", req, err)
	}
}

func TestControlSocketRefusesLargeRequest(t *testing.T) {
	path := faithif.RunDir(t.TempDir()).SocketPath("faith0")
	srv, err := Listen(path, &fakeController{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	for _, size := range []int{MaxRequest + 1, 64 << 20} {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second)) // hang guard
		wrote := make(chan error, 1)
		go func() {
			// Cut short by the server closing: EPIPE or ECONNRESET.
			_, err := io.Copy(conn, io.MultiReader(strings.NewReader(`{"op":"destroy","pad":"`), io.LimitReader(&endless{}, int64(size))))
			wrote <- err
		}()
		var resp response
		if err := json.NewDecoder(conn).Decode(&resp); err != nil || !strings.Contains(resp.Error, "too large") || resp.Status != nil {
			t.Errorf("answer to a %d-byte request: %+v, %v; want an error saying it is too large", size, resp, err)
		}
		if size > 1<<20 {
			// Far more than the socket buffers hold: only the server
			// closing can have ended the write.
			if err := <-wrote; err == nil {
				t.Errorf("the server read a %d-byte request to the end; want the connection closed", size)
			}
			conn.Close()
			continue
		}
		conn.Close()
		<-wrote
	}
	// The server still answers.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := (Client{Path: path}).Status(ctx); err != nil {
		t.Fatalf("Status after refused requests: %v", err)
	}
}

func TestClientRefusesUntrustedRunDir(t *testing.T) {
	dir := t.TempDir()
	path := faithif.RunDir(dir).SocketPath("faith0")
	srv, err := Listen(path, &fakeController{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	_, err = (Client{Path: path}).Destroy(ctx, time.Second)
	if err == nil || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "writable by") {
		t.Fatalf("Destroy through a run dir others can write to: %v; want it refused, naming %s", err, dir)
	}
	if _, err := Listen(faithif.RunDir(dir).SocketPath("faith1"), &fakeController{}, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "writable by") {
		t.Fatalf("Listen in a run dir others can write to: %v; want it refused", err)
	}
	os.Chmod(dir, 0o700)
	// Something that is not a socket where the socket should be.
	other := faithif.RunDir(dir).SocketPath("faith2")
	if err := os.Symlink(path, other); err != nil {
		t.Fatal(err)
	}
	if _, err := (Client{Path: other}).Status(ctx); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Status through a symlink: %v; want it refused", err)
	}
}

// plantedEnv makes TestPlantedSocketHelper the planted server.
const plantedEnv = "FAITHIF_CONTROL_TEST_PLANTED"

// TestPlantedSocketHelper is not a test: run by TestClientRefusesPlantedSocket
// as another user, it listens on the socket it is given as fd 3 and answers
// every request as an instance would, printing it on stdout.
func TestPlantedSocketHelper(t *testing.T) {
	if os.Getenv(plantedEnv) == "" {
		t.Skip("run by TestClientRefusesPlantedSocket")
	}
	if err := syscall.Listen(3, 8); err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(os.NewFile(3, "planted"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if req, err := readRequest(c); err == nil {
			fmt.Println("request", req.Op)
			json.NewEncoder(c).Encode(response{Status: &status.Status{Name: "faith0"}})
		}
		c.Close()
	}
}

// TestClientRefusesPlantedSocket: a socket in a trusted run dir, owned by
// root and mode 0600, but answered by a process of another user (who
// listened on it) is not believed: the client sends it nothing.
func TestClientRefusesPlantedSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a server as another user")
	}
	dir, err := os.MkdirTemp("", "fi-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // nobody runs the copy below
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	path := faithif.RunDir(dir).SocketPath("faith0")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(fd), "planted")
	defer sock.Close()
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestPlantedSocketHelper$")
	cmd.Env = append(os.Environ(), plantedEnv+"=1")
	cmd.ExtraFiles = []*os.File{sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	r := bufio.NewReader(stdout)
	if line, err := r.ReadString('\n'); line != "ready\n" {
		t.Fatalf("planted server: %q, %v; stderr:\n%s", line, err, out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = (Client{Path: path}).Destroy(ctx, time.Second)
	if err == nil || !strings.Contains(err.Error(), "uid 65534") || !strings.Contains(err.Error(), "not trusting") {
		t.Fatalf("Destroy through a socket served by uid 65534: %v; want it refused", err)
	}
	t.Logf("refused: %v", err)
	cmd.Process.Kill()
	rest, _ := io.ReadAll(r)
	if strings.Contains(string(rest), "request") {
		t.Errorf("the planted server got a request: %s", rest)
	}
}

// handlers counts the goroutines serving a control connection.
func handlers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "control.(*Server).handle(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitHandlers waits until want goroutines serve a connection.
func waitHandlers(t *testing.T, want int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); handlers() != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines serve a connection; want %d", handlers(), want)
		}
	}
}

// TestControlSocketConnCap: MaxConns slow connections (that never send
// their request) each get a goroutine; the next one does not (it is not
// accepted, so it has no answer either), nor does a normal request behind
// it; once the slow ones end, or once they time out, the normal request is
// answered.
func TestControlSocketConnCap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration // the server's per-connection timeout
		end     bool          // the slow clients hang up; else they time out
	}{
		{"slow ones end", connTimeout, true},
		{"slow ones time out", 500 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := faithif.RunDir(t.TempDir()).SocketPath("faith0")
			srv, err := Listen(path, &fakeController{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			srv.timeout = tc.timeout
			served := make(chan struct{})
			go func() { srv.Serve(); close(served) }()
			defer func() { srv.Close(); <-served; waitHandlers(t, 0) }()

			var slow []net.Conn
			defer func() {
				for _, c := range slow {
					c.Close()
				}
			}()
			dial := func() net.Conn {
				t.Helper()
				c, err := net.Dial("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				slow = append(slow, c)
				return c
			}
			for range MaxConns {
				dial()
			}
			waitHandlers(t, MaxConns)
			extra := dial() // the 17th: waits in the listen queue

			start := time.Now()
			answered := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := (Client{Path: path}).Status(ctx)
				answered <- err
			}()
			time.Sleep(200 * time.Millisecond)
			if n := handlers(); n != MaxConns {
				t.Fatalf("%d goroutines serve a connection with %d slow ones, one more and a request waiting; want %d", n, MaxConns, MaxConns)
			}
			extra.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := extra.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the connection over the cap got an answer (%d bytes, %v); want it not accepted yet", n, err)
			}
			select {
			case err := <-answered:
				t.Fatalf("a request over the cap was answered (%v) while %d slow ones are served", err, MaxConns)
			default:
			}

			if tc.end {
				for _, c := range slow[:MaxConns] {
					c.Close()
				}
			}
			select {
			case err := <-answered:
				if err != nil {
					t.Fatalf("Status once the slow connections %s: %v", map[bool]string{true: "ended", false: "timed out"}[tc.end], err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Status not answered once the slow connections were gone")
			}
			took := time.Since(start)
			if tc.end && took >= connTimeout {
				t.Errorf("Status answered after %v; want it served as soon as the slow ones end, before they would time out (%v)", took, connTimeout)
			}
			if !tc.end {
				// The server dropped the slow ones (the answer's write
				// falls under the same deadline, so they read just EOF).
				slow[0].SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := slow[0].Read(make([]byte, 512)); !errors.Is(err, io.EOF) {
					t.Errorf("a slow connection after its timeout: %d bytes, %v; want it closed", n, err)
				}
			}
			// The 17th slow connection is served now, in its turn.
			if tc.end {
				waitHandlers(t, 1)
			}
			t.Logf("answered after %v", took)
		})
	}
}

// TestDestroyRefusedForAppliance checks that the control socket refuses to
// destroy an interface of 'faithif run', says whose it is and what to do,
// and leaves it running.
func TestDestroyRefusedForAppliance(t *testing.T) {
	path := faithif.RunDir(t.TempDir()).SocketPath("faith0")
	fc := &fakeController{owner: status.OwnerRun}
	srv, err := Listen(path, fc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := Client{Path: path}
	_, err = c.Destroy(ctx, time.Second)
	want := "faith0 belongs to 'faithif run' (pid 4242): stop that, or remove the interface from its configuration and restart it"
	if err == nil || err.Error() != want {
		t.Fatalf("Destroy of an appliance's interface = %v; want %q", err, want)
	}
	// The refusal is the whole answer: the next request is served and
	// nothing was destroyed.
	if st, err := c.Status(ctx); err != nil || st.Owner != status.OwnerRun {
		t.Fatalf("Status after the refused destroy = %+v, %v", st, err)
	}
	if fc.destroyed.Load() {
		t.Fatal("Destroy was refused, but the instance was destroyed")
	}
}

// TestRemoved checks that Removed's channel is closed once the socket's
// path no longer names the socket Listen made (removed, or replaced by
// another socket or file), and never because Close removed it.
func TestRemoved(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	listen := func(t *testing.T) (*Server, string) {
		t.Helper()
		path := faithif.RunDir(t.TempDir()).SocketPath("faith0")
		srv, err := Listen(path, &fakeController{}, log)
		if err != nil {
			t.Fatal(err)
		}
		srv.every = time.Millisecond
		go srv.Serve()
		t.Cleanup(func() { srv.Close() })
		return srv, path
	}
	waitClosed := func(t *testing.T, ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second): // a hang guard
			t.Fatalf("%s: Removed not closed", what)
		}
	}
	for _, tc := range []struct {
		name    string
		replace func(t *testing.T, path string)
	}{
		{"Removed", func(t *testing.T, path string) {}},
		{"ReplacedBySocket", func(t *testing.T, path string) {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}},
		{"ReplacedByFile", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, path := listen(t)
			if srv.gone() {
				t.Fatal("gone() with the socket in place")
			}
			ch := srv.Removed()
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			tc.replace(t, path)
			if !srv.gone() {
				t.Fatal("gone() = false after the socket was removed")
			}
			waitClosed(t, ch, tc.name)
			// What took its place is not the server's to remove.
			before, _ := os.Lstat(path)
			srv.Close()
			after, err := os.Lstat(path)
			if (before == nil) != (after == nil) || (before != nil && !os.SameFile(before, after)) {
				t.Errorf("Close changed what is at the socket's path: %v before, %v (%v) after", before, after, err)
			}
		})
	}
	t.Run("RunDirRemoved", func(t *testing.T) {
		srv, path := listen(t)
		ch := srv.Removed()
		if err := os.RemoveAll(filepath.Dir(path)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, ch, "run directory removed")
	})
	t.Run("Close", func(t *testing.T) {
		srv, path := listen(t)
		ch := srv.Removed()
		srv.Close() // removes the socket itself
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket still there after Close: %v", err)
		}
		// Many ticks later, still not closed (the goroutine has ended,
		// as goleak checks at the end).
		time.Sleep(50 * time.Millisecond)
		select {
		case <-ch:
			t.Fatal("Removed closed by Close")
		default:
		}
	})
}

// TestReloadFrom: a reload may name another access file (absolute); a
// relative one is refused, and so is a new file for an appliance's
// interface, whose files its configuration names.
func TestReloadFrom(t *testing.T) {
	for _, owner := range []string{status.OwnerCreate, status.OwnerRun} {
		path := faithif.RunDir(t.TempDir()).SocketPath("faith0")
		fc := &fakeController{owner: owner}
		srv, err := Listen(path, fc, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c := Client{Path: path}
		if _, err := c.ReloadFrom(ctx, "faithd.conf"); err == nil || !strings.Contains(err.Error(), `access file "faithd.conf": not an absolute path`) {
			t.Errorf("%s: ReloadFrom a relative path = %v", owner, err)
		}
		_, err = c.ReloadFrom(ctx, "/etc/faithif/other.conf")
		switch got := fc.reloadedFrom.Load(); owner {
		case status.OwnerCreate:
			if err != nil || got == nil || *got != "/etc/faithif/other.conf" {
				t.Errorf("create: ReloadFrom = %v, the instance was given %v; want /etc/faithif/other.conf", err, got)
			}
		case status.OwnerRun:
			if err == nil || !strings.Contains(err.Error(), "belongs to 'faithif run'") || got != nil {
				t.Errorf("run: ReloadFrom = %v, the instance was given %v; want a refusal and nothing reloaded", err, got)
			}
		}
		cancel()
		srv.Close()
	}
}
