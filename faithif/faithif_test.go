package faithif

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"faith0", "faith1", "faith42", "faith1234567890"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v; want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "faith", "eth0", "faithX", "faith-1", "faith01", "Faith0", "faith0 ", "xfaith0", "faith12345678901"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) = nil; want an error", bad)
		}
	}
}

func TestValidateMTU(t *testing.T) {
	for _, ok := range []int{1280, 1500, 9000, 65535} {
		if err := ValidateMTU(ok); err != nil {
			t.Errorf("ValidateMTU(%d) = %v", ok, err)
		}
	}
	for _, bad := range []int{0, -1, 1279, 65536} {
		if err := ValidateMTU(bad); err == nil {
			t.Errorf("ValidateMTU(%d) = nil; want an error", bad)
		}
	}
}

func TestKeepFaithPersists(t *testing.T) {
	d := RunDir(filepath.Join(t.TempDir(), "run"))
	if on, err := d.KeepFaith(); err != nil || on {
		t.Fatalf("fresh KeepFaith = %v, %v; want 0 (the BSD default)", on, err)
	}
	for _, v := range []bool{true, false, true} {
		if err := d.SetKeepFaith(v); err != nil {
			t.Fatal(err)
		}
		if on, err := d.KeepFaith(); err != nil || on != v {
			t.Fatalf("KeepFaith = %v, %v; want %v", on, err, v)
		}
	}
	os.WriteFile(d.keepFaithPath(), []byte("maybe\n"), 0o644)
	if _, err := d.KeepFaith(); err == nil || !strings.Contains(err.Error(), "want 0 or 1") {
		t.Fatalf("KeepFaith with a corrupt file = %v; want an error naming the problem", err)
	}
}

type fakeController struct {
	keep      atomic.Bool
	destroyed atomic.Bool
}

func (f *fakeController) Status() Status        { return Status{Name: "faith0", KeepFaith: f.keep.Load()} }
func (f *fakeController) SetKeepFaith(v bool)   { f.keep.Store(v) }
func (f *fakeController) Destroy(time.Duration) { f.destroyed.Store(true) }
func (f *fakeController) Reload() error         { return errors.New("no rules file") }

func TestControlSocket(t *testing.T) {
	d := RunDir(t.TempDir())
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
	path := RunDir(t.TempDir()).SocketPath("faith3")
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
