package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/status"
)

type fakeController struct {
	keep      atomic.Bool
	destroyed atomic.Bool
}

func (f *fakeController) Status() status.Status {
	return status.Status{Name: "faith0", KeepFaith: f.keep.Load()}
}
func (f *fakeController) SetKeepFaith(v bool)   { f.keep.Store(v) }
func (f *fakeController) Destroy(time.Duration) { f.destroyed.Store(true) }
func (f *fakeController) Reload() error         { return errors.New("no rules file") }

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
